//! The worker: an optional stateless front component (world `wdo:object/worker`) that receives
//! every HTTP request when the manifest names one, and reaches objects through `objects`.
//!
//! By default it keeps no state: each request gets a fresh instance, so nothing of one request
//! reaches the next. A Rust worker instantiates in tens of microseconds with the pooling
//! allocator; a JavaScript or Python one carries a 12-19 MB memory image and dozens of core
//! modules, 0.1-1 ms. So the worker keeps up to [`SPARES`] fresh instances made ahead of need,
//! on the spares' idle-priority thread (`object/spares.rs`), after the request that took one has
//! answered: a request takes a spare that has run nothing, and only instantiates itself when
//! none is ready (a burst). It runs under the same CPU and memory limits as objects, and a trap
//! fails only its request.
//!
//! # Reused instances (`reuse_instances = true`)
//!
//! A fresh JavaScript instance starts its engine cold for every request (functions compiled
//! again, caches empty, each page of its image it writes copied): ~0.5-1 ms more than the same
//! request in an instance that ran one before. Cloudflare runs many requests in one isolate, and
//! code written for it may keep module state between requests (and must not rely on it). With
//! `reuse_instances` (the default for wrangler projects) an instance that answered goes back to
//! an idle list and serves a later request, one request at a time; it is dropped instead
//! - when its request failed (a trap, a limit, the deadline: its state may be half-changed),
//! - after [`MAX_REQUESTS`] requests, once its memories grew [`MAX_GROWTH`] past their size
//!   at its start, or while it holds an outbound connection open (a leak must not live on),
//! - when the idle list holds [`MAX_IDLE`] already, or it waited there `idle_timeout` (the
//!   objects' `--idle-timeout`) with no request.
//!
//! Every request still gets the whole CPU limit, a deadline and a memory limit of its own.
//!
//! # Places
//!
//! A request holds a place under `--max-instances` while it runs (one per linear memory of
//! the worker's component), and the worker's requests together hold at most half the places:
//! past that, a request waits for one up to its deadline, then gets 503
//! (`object/residency.rs`).
use crate::bindings::worker::{Worker as WorkerBindings, WorkerPre};
use crate::engine::{ComponentCache, WORKER};
use crate::error::{Error, Result};
use crate::message::{Request, Response};
use crate::object::{Directory, Failure, HostState, ObjectInfo, WorkerUpgrade, describe_failure, new_store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::Store;
use wasmtime::component::Linker;

pub struct Worker {
    pre: WorkerPre<HostState>,
    /// Who the worker is to `context`: class `worker`, no name, id 0.
    info: Arc<ObjectInfo>,
    pub hash: String,
    /// Whether preparing it compiled code (false: from the cache).
    pub compiled: bool,
    profile: Arc<crate::env::Profile>,
    /// Linear memories an instance has: the places a request takes under `--max-instances`.
    memories: usize,
    /// Fresh instances, none of which has run a request.
    spares: Mutex<Vec<Ready>>,
    /// A refill is queued or running.
    filling: AtomicBool,
    /// With `reuse_instances`: instances that answered and wait for another request, the most
    /// recently used last.
    idle: Option<Mutex<Vec<Ready>>>,
    /// A task drops instances that waited too long in `idle`.
    sweeping: AtomicBool,
}

/// Fresh instances the worker keeps ready (of one memory; fewer of several).
pub const SPARES: usize = 4;

/// Most instances waiting for a request with `reuse_instances` (of one memory; fewer of several).
pub const MAX_IDLE: usize = 32;

/// Most requests one instance serves with `reuse_instances`.
pub const MAX_REQUESTS: u32 = 10_000;

/// How far an instance's memories may grow past their size at its start and it still be reused.
pub const MAX_GROWTH: usize = 32 << 20;

/// An instantiated worker, ready for a request.
struct Ready {
    store: Store<HostState>,
    bindings: WorkerBindings,
    /// Requests it has served.
    served: u32,
    /// Its memories' size when it started.
    started_with: usize,
    /// When it last answered.
    answered: std::time::Instant,
}

impl Ready {
    fn new(store: Store<HostState>, bindings: WorkerBindings) -> Ready {
        let started_with = store.data().memory_held();
        Ready { store, bindings, served: 0, started_with, answered: std::time::Instant::now() }
    }
}

impl Worker {
    pub fn prepare(
        cache: &ComponentCache,
        linker: &Linker<HostState>,
        bytes: &[u8],
        settings: &crate::manifest::Settings,
    ) -> Result<Worker> {
        let profile = Arc::new(crate::env::Profile::new(crate::env::WORKER_SECRETS, settings)?);
        let linked = crate::registry::link(cache, linker, "worker", bytes, WORKER, WorkerPre::new)?;
        let info = Arc::new(ObjectInfo::nobody("worker".into()));
        Ok(Worker {
            pre: linked.pre,
            info,
            hash: linked.hash,
            compiled: linked.compiled,
            profile,
            memories: linked.memories,
            spares: Mutex::default(),
            filling: AtomicBool::new(false),
            idle: settings.reuse_instances.then(Mutex::default),
            sweeping: AtomicBool::new(false),
        })
    }

    /// How many instances fit in `memories` linear memories (at least one): the pool has slots
    /// for [`SPARES`] and [`MAX_IDLE`] memories past `--max-instances` (`engine::EXTRA_SLOTS`).
    fn most(&self, memories: usize) -> usize {
        (memories / self.memories).max(1)
    }

    /// Instances waiting for their next request (`reuse_instances`).
    pub fn idle_instances(&self) -> usize {
        self.idle.as_ref().map_or(0, |idle| idle.lock().unwrap().len())
    }

    /// An instance for a request: one that answered before (with `reuse_instances`), else a
    /// spare if one is ready, else one made now.
    async fn take(&self, directory: &Arc<Directory>) -> std::result::Result<Ready, Failure> {
        let reused = self.idle.as_ref().and_then(|idle| idle.lock().unwrap().pop());
        if let Some(ready) = reused.or_else(|| self.spares.lock().unwrap().pop()) {
            return Ok(ready);
        }
        let mut store = new_store(self.pre.engine(), self.info.clone(), directory, self.profile.clone());
        match self.pre.instantiate_async(&mut store).await {
            Ok(bindings) => Ok(Ready::new(store, bindings)),
            Err(e) => Err(describe_failure(&mut store, "failed to start", e)),
        }
    }

    /// Puts an instance that answered back for a later request, if it may serve one.
    fn give_back(self: &Arc<Self>, mut ready: Ready, idle_timeout: std::time::Duration) {
        let Some(idle) = &self.idle else { return };
        ready.served += 1;
        let state = ready.store.data();
        let grown = state.memory_held().saturating_sub(ready.started_with);
        // A connection still open (a response body the request left unread) would hold one of
        // the instance's few outbound connections into later requests, and its descriptor.
        if ready.served >= MAX_REQUESTS || grown > MAX_GROWTH || state.outbound_connections_open() > 0 {
            return;
        }
        ready.answered = std::time::Instant::now();
        let kept = {
            let mut idle = idle.lock().unwrap();
            let room = idle.len() < self.most(MAX_IDLE);
            if room {
                idle.push(ready);
            }
            room
        };
        // One not kept is dropped on return, outside the lock.
        if kept {
            self.sweep_later(idle_timeout);
        }
    }

    /// Has a task drop, every `idle_timeout`, the instances that waited that long, until none
    /// waits. Dropping one returns its memory to the pool, so it happens off the requests' path.
    fn sweep_later(self: &Arc<Self>, idle_timeout: std::time::Duration) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let worker = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(idle_timeout).await;
                let Some(worker) = worker.upgrade() else { return };
                let Some(idle) = &worker.idle else { return };
                let (expired, done): (Vec<Ready>, bool) = {
                    let mut idle = idle.lock().unwrap();
                    // The least recently used come first.
                    let expired = idle.iter().take_while(|ready| ready.answered.elapsed() >= idle_timeout).count();
                    let expired = idle.drain(..expired).collect();
                    // Cleared under the lock: an instance given back after it starts a sweep.
                    if idle.is_empty() {
                        worker.sweeping.store(false, Ordering::Release);
                    }
                    (expired, idle.is_empty())
                };
                drop(expired);
                if done {
                    return;
                }
            }
        });
    }

    /// Has spares made until there are [`SPARES`], in the background.
    fn refill(self: &Arc<Self>, directory: &Arc<Directory>) {
        if self.spares.lock().unwrap().len() >= self.most(SPARES) || self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let (worker, weak) = (Arc::downgrade(self), Arc::downgrade(directory));
        let job = Box::pin(async move {
            let (Some(worker), Some(directory)) = (worker.upgrade(), weak.upgrade()) else { return };
            while worker.spares.lock().unwrap().len() < worker.most(SPARES) {
                let mut store = new_store(worker.pre.engine(), worker.info.clone(), &directory, worker.profile.clone());
                match worker.pre.instantiate_async(&mut store).await {
                    Ok(bindings) => worker.spares.lock().unwrap().push(Ready::new(store, bindings)),
                    Err(e) => {
                        tracing::warn!(
                            "could not make a spare worker instance: {}",
                            describe_failure(&mut store, "failed to start", e).reason
                        );
                        break;
                    }
                }
            }
            worker.filling.store(false, Ordering::Release);
        });
        if !crate::object::in_background(directory, job) {
            self.filling.store(false, Ordering::Release);
        }
    }

    /// Runs the worker for `request`. With `upgrade` (the client asked for a WebSocket), the
    /// worker may hand the upgrade on to an object through `objects.fetch`: the socket that
    /// object accepted (or the connection to its host) comes back with the response.
    pub async fn fetch(
        self: &Arc<Self>,
        directory: &Arc<Directory>,
        request: Request,
        upgrade: bool,
    ) -> Result<(Response, WorkerUpgrade)> {
        use crate::observe::{Context, Kind, Outcome, TailRecord, metrics::WORKER, tail::Lines};
        let observe = &directory.limits.observe;
        let lines = observe.tail.watched().then(Lines::default);
        let request_id = crate::observe::current_request_id();
        let context =
            Context { request_id: request_id.clone(), object: None, kind: Some(Kind::Fetch), lines: lines.clone() };
        let started = std::time::Instant::now();
        let result = context.scope(std::pin::pin!(self.run(directory, request, upgrade))).await;
        let took = started.elapsed();
        let (outcome, status) = match &result {
            Ok((response, _)) => (Outcome::of_status(response.status), Some(response.status)),
            Err(e) => (Outcome::of_error(e), Some(e.status())),
        };
        observe.metrics.worker().event(Kind::Fetch, outcome, took);
        if observe.tail.watched() {
            let mut record = TailRecord::new(Kind::Fetch, outcome, took);
            record.request_id = request_id.as_deref().map(str::to_string);
            record.class = WORKER.to_string();
            record.status = status;
            record.logs = lines.map(|lines| lines.take()).unwrap_or_default();
            record.error = match &result {
                Err(e) => Some(e.to_string()),
                Ok(_) if outcome.is_error() => status.map(|status| format!("answered {status}")),
                Ok(_) => None,
            };
            observe.tail.publish(record);
        }
        result
    }

    async fn run(
        self: &Arc<Self>,
        directory: &Arc<Directory>,
        request: Request,
        upgrade: bool,
    ) -> Result<(Response, WorkerUpgrade)> {
        let fail = |failure: Failure| failure.into_error("worker");
        // The deadline counts from the request's arrival: waiting for a place is part of it.
        let deadline = tokio::time::Instant::now() + directory.config.event_timeout;
        // Declared before the instance, so the pool slot is free before the place is.
        let _place = tokio::time::timeout_at(deadline, directory.worker_place(self.memories)).await.map_err(|_| {
            Error::Busy(format!(
                "the worker's requests hold their share of --max-instances ({} places) and this one waited \
                 {:?} for a place; try again later",
                directory.worker_share_size(),
                directory.config.event_timeout
            ))
        })?;
        let mut ready = self.take(directory).await.map_err(fail)?;
        let (store, bindings) = (&mut ready.store, &ready.bindings);
        store.data_mut().begin_event();
        store.set_epoch_deadline(1);
        // Like an object's event: the calls it makes inherit its deadline.
        store.data_mut().deadline = Some(deadline);
        if upgrade {
            store.data_mut().worker_upgrade = WorkerUpgrade::Offered;
        }
        let accepted = |store: &mut wasmtime::Store<HostState>| {
            std::mem::replace(&mut store.data_mut().worker_upgrade, WorkerUpgrade::None)
        };
        let reused = ready.served > 0;
        let result = bindings.wdo_object_worker_handler().call_fetch(&mut *store, &request.into()).await;
        // Only now: a spare made while the request runs would slow it (see `object/spares.rs`).
        // An instance reused is no spare taken.
        if !reused {
            self.refill(directory);
        }
        match result {
            Ok(response) => {
                let upgrade = accepted(store);
                self.give_back(ready, directory.config.idle_timeout);
                Ok((response.into(), upgrade))
            }
            Err(e) => {
                // A socket an object accepted is abandoned as the store drops: nobody will
                // connect it (one on another host sees its connection close).
                // The instance is dropped: a failure may have left its state half-changed.
                Err(fail(describe_failure(store, "failed", e)))
            }
        }
    }
}
