//! The object directory: at most one actor per object, spawned on demand, and the bounds on
//! how many objects hold their database open and how many hold an instance at once.

use super::actor::Actor;
use super::instance::{Failure, Instance, ObjectInfo};
use super::residency::{MIN_INSTANCES, Permit, Residency};
use super::spares::{self, Spares};
use super::{Envelope, InstanceLimits, ObjectKey};
use crate::alarms::AlarmIndex;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::registry::Version;
use crate::registry::{Class, Registry};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

const SHARDS: usize = 16;

/// What the directory keeps of a running actor.
struct Entry {
    mailbox: mpsc::Sender<Envelope>,
    control: Arc<ActorControl>,
}

/// How the directory reaches an actor outside its mailbox.
#[derive(Default)]
pub struct ActorControl {
    /// Asks the actor to close its database (it finishes its current batch first).
    pub retire: Notify,
    /// Asks the actor to drop its instance, keeping its database open.
    pub shed: Notify,
    /// Events it ran (for the busiest objects, `busiest`).
    pub events: std::sync::atomic::AtomicU64,
}

/// A worker's request's place under the bound on live instances ([`Directory::worker_place`]).
pub struct WorkerPlace {
    _place: Permit,
    _share: OwnedSemaphorePermit,
}

/// An instance's place under the bound on live instances: released (and the object forgotten
/// by the instances' LRU) when the instance is dropped.
pub struct InstanceSlot {
    _permit: Option<Permit>,
    key: ObjectKey,
    instances: Arc<Residency>,
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.instances.lru.lock().unwrap().pop(&self.key);
    }
}

pub struct Directory {
    shards: Box<[Mutex<HashMap<ObjectKey, Entry>>]>,
    hasher: RandomState,
    open: Residency,
    instances: Arc<Residency>,
    /// The places under `instances` that the worker's requests may hold at once: half.
    worker_share: Arc<Semaphore>,
    pub config: Config,
    pub limits: InstanceLimits,
    pub alarms: Arc<AlarmIndex>,
    pub registry: Arc<Registry>,
    pub spares: Spares,
    /// Where commits are shipped, when the host has a backup store.
    pub backup: Option<Arc<crate::backup::Backup>>,
    /// The cluster this host is part of, if any: it decides which objects run here.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Directory {
    /// Tells the backup store that a deploy renamed a class (`to`) or deleted it (`None`): a
    /// restore moves (or removes) its objects' folder at that point of the history.
    pub fn backup_class_moved(&self, from: &str, to: Option<&str>) {
        if let Some(backup) = &self.backup {
            let entry = crate::backup::format::Entry::ClassMoved {
                time_ms: backup.commit_time(),
                from: from.to_string(),
                to: to.map(str::to_string),
            };
            let _always_fits = backup.enqueue(entry);
        }
    }
    pub fn new(
        config: Config,
        limits: InstanceLimits,
        max_open: usize,
        max_instances: usize,
        alarms: Arc<AlarmIndex>,
        registry: Arc<Registry>,
        backup: Option<Arc<crate::backup::Backup>>,
    ) -> Self {
        Directory {
            registry,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            open: Residency::new(max_open, |control| &control.retire),
            instances: Arc::new(Residency::new(max_instances, |control| &control.shed)),
            worker_share: Arc::new(Semaphore::new(worker_share(max_instances))),
            config,
            limits,
            alarms,
            spares: Spares::default(),
            backup,
            cluster: std::sync::OnceLock::new(),
        }
    }

    fn shard(&self, key: &ObjectKey) -> &Mutex<HashMap<ObjectKey, Entry>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Queues an event for an object, starting its actor if it has none. In a cluster, an
    /// object held by another host gets the event forwarded there (`cluster/`).
    pub fn send(self: &Arc<Self>, class: &Arc<Class>, key: ObjectKey, envelope: Envelope) -> Result<()> {
        self.send_as(class, key, envelope, false)
    }

    /// Like [`Directory::send`], for an event another host of the cluster forwarded here: it
    /// runs here or is answered with [`Error::Misdirected`], never forwarded again.
    pub fn send_forwarded(self: &Arc<Self>, class: &Arc<Class>, key: ObjectKey, envelope: Envelope) -> Result<()> {
        self.send_as(class, key, envelope, true)
    }

    fn send_as(
        self: &Arc<Self>,
        class: &Arc<Class>,
        key: ObjectKey,
        envelope: Envelope,
        forwarded: bool,
    ) -> Result<()> {
        let envelope = match self.cluster.get() {
            Some(cluster) => match cluster.admit(self, key.clone(), envelope, forwarded)? {
                Some(envelope) => envelope,
                None => return Ok(()),
            },
            None => envelope,
        };
        self.start_or_queue(class, key, envelope).map_err(|failed| failed.0)
    }

    /// Queues an event the cluster let through after a claim; an error goes to its sender.
    pub(crate) fn send_here(self: &Arc<Self>, key: &ObjectKey, envelope: Envelope) {
        let class = match self.registry.get(&key.class) {
            Ok(class) => class,
            Err(e) => {
                let _ = envelope.reply.send(Err(e));
                return;
            }
        };
        if let Err(failed) = self.start_or_queue(&class, key.clone(), envelope) {
            let (error, envelope) = *failed;
            let _ = envelope.reply.send(Err(error));
        }
    }

    /// Whether the object has an actor here (running, or closing).
    pub fn has_actor(&self, key: &ObjectKey) -> bool {
        self.shard(key).lock().unwrap().contains_key(key)
    }

    /// Asks the object's actor, if any, to close its database and leave.
    pub fn retire(&self, key: &ObjectKey) {
        if let Some(entry) = self.shard(key).lock().unwrap().get(key) {
            entry.control.retire.notify_one();
        }
    }

    fn start_or_queue(
        self: &Arc<Self>,
        class: &Arc<Class>,
        key: ObjectKey,
        envelope: Envelope,
    ) -> std::result::Result<(), Box<(Error, Envelope)>> {
        let mut shard = self.shard(&key).lock().unwrap();
        let entry = shard.entry(key.clone()).or_insert_with(|| {
            let (mailbox, inbox) = mpsc::channel(self.config.mailbox_capacity);
            let control = Arc::new(ActorControl::default());
            let actor = Actor::new(self.clone(), class.clone(), key, envelope.name.clone(), inbox, control.clone());
            tokio::spawn(actor.run());
            Entry { mailbox, control }
        });
        // Sending under the shard lock is what lets an actor leave safely (see `leave`).
        entry.mailbox.try_send(envelope).map_err(|e| match e {
            mpsc::error::TrySendError::Full(envelope) => {
                let metrics = self.limits.observe.metrics.class(&class.name);
                let refused = crate::observe::Outcome::Overloaded;
                metrics.event(envelope.event.kind(), refused, std::time::Duration::ZERO);
                Box::new((
                    Error::Overloaded { object: label(&envelope, &class.name), queued: self.config.mailbox_capacity },
                    envelope,
                ))
            }
            mpsc::error::TrySendError::Closed(envelope) => {
                Box::new((Error::Internal("an object's mailbox closed while listed".into()), envelope))
            }
        })
    }

    /// Removes an actor from the directory if nothing waits in its mailbox. Returns false when
    /// the actor must go on (an event arrived).
    pub fn leave(&self, key: &ObjectKey, control: &Arc<ActorControl>, inbox: &mut mpsc::Receiver<Envelope>) -> bool {
        let mut shard = self.shard(key).lock().unwrap();
        if !inbox.is_empty() {
            return false;
        }
        if shard.get(key).is_some_and(|e| Arc::ptr_eq(&e.control, control)) {
            shard.remove(key);
        }
        inbox.close();
        true
    }

    /// Waits for room to open one more database. A callee (`called`: an object waits on this
    /// event) that finds no room soon opens over the bound and gets no permit: its callers may
    /// be the ones holding every permit, waiting on it.
    pub async fn admit(&self, key: &ObjectKey, control: &Arc<ActorControl>, called: bool) -> Option<Permit> {
        self.open.admit(key, control, called, 1).await
    }

    /// Marks an object as just used, so it is the last to be asked to close.
    pub fn touch(&self, key: &ObjectKey) {
        self.open.lru.lock().unwrap().promote(key);
        self.instances.lru.lock().unwrap().promote(key);
    }

    /// Forgets an object that closed its database.
    pub fn closed(&self, key: &ObjectKey) {
        self.open.lru.lock().unwrap().pop(key);
    }

    /// A fresh instance of `version` for an object: a spare if one is ready, else a new one.
    /// The flag says the class keeps spares and one should be made in place of this: the
    /// caller calls [`spares::refill`] once its event has answered.
    /// Waits for room under the bound on live instances first (as [`Directory::admit`] does for
    /// databases, asking the least recently used holder to drop its instance).
    pub async fn instance(
        self: &Arc<Self>,
        key: &ObjectKey,
        control: &Arc<ActorControl>,
        called: bool,
        version: Arc<Version>,
        object: Arc<ObjectInfo>,
    ) -> Result<(Instance, bool), Failure> {
        let permit = self.instances.admit(key, control, called, version.memories).await;
        let slot = InstanceSlot { _permit: permit, key: key.clone(), instances: self.instances.clone() };
        if let Some(mut spare) = self.spares.take(&object.class, &version) {
            spare.adopt(object);
            spare.hold(slot);
            return Ok((spare, true));
        }
        let started = std::time::Instant::now();
        let mut instance = Instance::new(version.clone(), object, self).await?;
        instance.hold(slot);
        let keep_spares = version.warms_up() || started.elapsed() > spares::SLOW;
        Ok((instance, keep_spares))
    }

    /// A place under the bound on live instances for one of the worker's requests, for an
    /// instance of `memories` linear memories, held until it answers (`residency.rs`). The
    /// worker's requests hold at most half the places at once, so the objects they call always
    /// have the other half; past that share they wait their turn.
    pub async fn worker_place(&self, memories: usize) -> WorkerPlace {
        let share = memories.clamp(1, MIN_INSTANCES.min(self.worker_share_size())) as u32;
        let share = self.worker_share.clone().acquire_many_owned(share).await.expect("never closed");
        WorkerPlace { _place: self.instances.take(memories).await, _share: share }
    }

    /// The places the worker's requests may hold at once.
    pub fn worker_share_size(&self) -> usize {
        worker_share(self.instances.max)
    }

    /// Closes every mailbox: each actor finishes what is queued, closes its database and ends.
    pub fn shut_down(&self) {
        self.spares.clear();
        for shard in self.shards.iter() {
            shard.lock().unwrap().clear();
        }
    }

    /// Asks every actor of `class` (already removed from the registry) to leave, and waits
    /// until none is left, so the class's files can be moved or deleted. Blocking: actors run
    /// on the runtime's threads, not this one.
    pub fn evict_class(&self, class: &str) {
        loop {
            let controls: Vec<Arc<ActorControl>> = self
                .shards
                .iter()
                .flat_map(|shard| {
                    let shard = shard.lock().unwrap();
                    shard
                        .iter()
                        .filter(|(key, _)| &*key.class == class)
                        .map(|(_, e)| e.control.clone())
                        .collect::<Vec<_>>()
                })
                .collect();
            if controls.is_empty() {
                return;
            }
            for control in controls {
                control.retire.notify_one();
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// The `count` objects with an actor that ran the most events since it started, with those
    /// events and what waits in their mailboxes.
    pub fn busiest(&self, count: usize) -> Vec<(ObjectKey, u64, usize)> {
        let mut all: Vec<(ObjectKey, u64, usize)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap();
            all.extend(shard.iter().map(|(key, entry)| {
                let events = entry.control.events.load(std::sync::atomic::Ordering::Relaxed);
                (key.clone(), events, entry.mailbox.max_capacity() - entry.mailbox.capacity())
            }));
        }
        let count = count.min(all.len());
        if count > 0 {
            all.select_nth_unstable_by(count - 1, |a, b| b.1.cmp(&a.1));
            all.truncate(count);
            all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.class.cmp(&b.0.class)));
        }
        all
    }

    /// Events waiting in mailboxes, all objects together.
    pub fn queued_events(&self) -> usize {
        let queued = |entry: &Entry| entry.mailbox.max_capacity() - entry.mailbox.capacity();
        self.shards.iter().map(|s| s.lock().unwrap().values().map(queued).sum::<usize>()).sum()
    }

    /// How many objects have an actor.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }

    /// The bound on open databases.
    pub fn max_open(&self) -> usize {
        self.open.max
    }

    /// The bound on live instances (`--max-instances`).
    pub fn max_instances(&self) -> usize {
        self.instances.max
    }

    /// The bound on live instances now: lower than [`Directory::max_instances`] while the
    /// resident-memory budget holds it down.
    pub fn instance_limit(&self) -> usize {
        self.instances.limit()
    }

    /// Instances holding places now: objects' and the worker's requests running.
    pub fn live_instances(&self) -> usize {
        self.instances.holders()
    }

    /// Places under the bound that live instances take (one per linear memory).
    pub fn instance_places(&self) -> usize {
        self.instances.held()
    }

    /// Starts holding the process's resident memory under `budget` (bytes) by lowering the
    /// bound on live instances (`residency.rs`).
    pub fn hold_resident_memory(&self, budget: u64) {
        tokio::spawn(super::residency::hold_resident_memory(Arc::downgrade(&self.instances), budget));
    }
}

/// The places of `max_instances` the worker's requests may hold at once.
fn worker_share(max_instances: usize) -> usize {
    (max_instances / 2).max(1)
}

fn label(envelope: &Envelope, class: &str) -> String {
    match &envelope.name {
        Some(name) => format!("{class}/{name}"),
        None => class.to_string(),
    }
}
