//! The worker: an optional stateless front component (world `wdo:object/worker`) that receives
//! every HTTP request when the manifest names one, and reaches objects through `objects`.
//!
//! It keeps no state: each request gets a fresh instance, so nothing of one request reaches the
//! next. A Rust worker instantiates in tens of microseconds with the pooling allocator; a
//! JavaScript or Python one carries a 12-19 MB memory image and dozens of core modules, 0.1-1
//! ms. So the worker keeps up to [`SPARES`] fresh instances made ahead of need, on the spares'
//! idle-priority thread (`object/spares.rs`), after the request that took one has answered:
//! a request takes a spare that has run nothing, and only instantiates itself when none is
//! ready (a burst). It runs under the same CPU and memory limits as objects, and a trap fails
//! only its request.

use crate::bindings::worker::{Worker as WorkerBindings, WorkerPre};
use crate::engine::{ComponentCache, WORKER};
use crate::error::Result;
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
    /// Fresh instances, none of which has run a request.
    spares: Mutex<Vec<Fresh>>,
    /// A refill is queued or running.
    filling: AtomicBool,
}

/// Fresh instances the worker keeps ready.
pub const SPARES: usize = 4;

/// An instantiated worker that has run nothing yet.
struct Fresh {
    store: Store<HostState>,
    bindings: WorkerBindings,
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
            spares: Mutex::default(),
            filling: AtomicBool::new(false),
        })
    }

    /// A fresh instance: a spare if one is ready, else one made now.
    async fn fresh(&self, directory: &Arc<Directory>) -> std::result::Result<Fresh, Failure> {
        if let Some(fresh) = self.spares.lock().unwrap().pop() {
            // Made a while ago: the CPU it took to start is not this request's.
            fresh.store.data().reset_cpu();
            return Ok(fresh);
        }
        let mut store = new_store(self.pre.engine(), self.info.clone(), directory, self.profile.clone());
        match self.pre.instantiate_async(&mut store).await {
            Ok(bindings) => Ok(Fresh { store, bindings }),
            Err(e) => Err(describe_failure(&mut store, "failed to start", e)),
        }
    }

    /// Has spares made until there are [`SPARES`], in the background.
    fn refill(self: &Arc<Self>, directory: &Arc<Directory>) {
        if self.spares.lock().unwrap().len() >= SPARES || self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let (worker, weak) = (Arc::downgrade(self), Arc::downgrade(directory));
        let job = Box::pin(async move {
            let (Some(worker), Some(directory)) = (worker.upgrade(), weak.upgrade()) else { return };
            while worker.spares.lock().unwrap().len() < SPARES {
                let mut store = new_store(worker.pre.engine(), worker.info.clone(), &directory, worker.profile.clone());
                match worker.pre.instantiate_async(&mut store).await {
                    Ok(bindings) => worker.spares.lock().unwrap().push(Fresh { store, bindings }),
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
        let Fresh { mut store, bindings } = self.fresh(directory).await.map_err(fail)?;
        // Like an object's event: the calls it makes inherit its deadline.
        store.data_mut().deadline = Some(tokio::time::Instant::now() + directory.config.event_timeout);
        if upgrade {
            store.data_mut().worker_upgrade = WorkerUpgrade::Offered;
        }
        let accepted = |store: &mut wasmtime::Store<HostState>| {
            std::mem::replace(&mut store.data_mut().worker_upgrade, WorkerUpgrade::None)
        };
        let result = bindings.wdo_object_worker_handler().call_fetch(&mut store, &request.into()).await;
        // Only now: a spare made while the request runs would slow it (see `object/spares.rs`).
        self.refill(directory);
        match result {
            Ok(response) => Ok((response.into(), accepted(&mut store))),
            Err(e) => {
                // An object accepted the socket, but the worker failed: nobody will connect it
                // (one on another host sees its connection close).
                if let WorkerUpgrade::Accepted(key, socket) = accepted(&mut store) {
                    directory.limits.sockets.abandon(key, socket);
                }
                Err(fail(describe_failure(&mut store, "failed", e)))
            }
        }
    }
}
