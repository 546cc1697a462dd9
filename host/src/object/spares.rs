//! Spare instances, made ahead of need for classes that are slow to start.
//!
//! A Rust object instantiates in ~20 µs, but the JavaScript and Python components carry 12-19 MB
//! memory images and dozens of core modules: 0.1-1 ms each. Their first event is slow too: it
//! writes to 50-100 pages of the memory image, and each first write copies the page (a fault of
//! a few µs). So for a class whose last instantiation took longer than [`SLOW`], or whose
//! component exports `warm-up`, the directory keeps up to [`PER_CLASS`] fresh instances of its
//! current version. A spare has had `warm-up` called, if the component has it: the SDK runs its
//! own request path there (no object's code, no storage), which copies most of those pages
//! ahead of time. An object that wakes takes a spare and pays only for the rest of its first
//! event.
//!
//! Spares are background work, and are made so that they never delay an event:
//! - on one thread of their own at idle priority (`SCHED_IDLE` on Linux), not on the runtime's
//!   workers: the OS runs it when a core has nothing else to do, so under load the host makes
//!   fewer spares rather than serving slower;
//! - only after the event that took a spare has answered ([`refill`] is the actor's to call):
//!   a spare made meanwhile faults on the same process's memory at the same time, and on a
//!   2-core machine that doubled the event's time.
//!
//! A spare has run no event and holds no object's data: it gets its identity (`context`, log
//! label) when an object adopts it, and a deploy makes the old version's spares go.
//!
//! Spares take no place under `--max-instances` (an object that adopts one has taken its
//! place first): the pool keeps slots for them past the bound, so all spares together hold at
//! most [`MAX_PLACES`] linear memories, however many classes keep them; a class past that
//! starts its objects' instances itself.

use super::Directory;
use super::instance::{Failure, Instance, ObjectInfo};
use crate::registry::Version;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Instantiation slower than this makes the directory keep spares of the class.
pub const SLOW: Duration = Duration::from_micros(100);
/// Spares kept per class.
pub const PER_CLASS: usize = 2;
/// Linear memories of all spares together, whatever the number of classes: spares take no
/// place under `--max-instances`, so the pool keeps slots for them past it (`engine::EXTRA_SLOTS`).
pub const MAX_PLACES: usize = 32;

#[derive(Default)]
pub struct Spares {
    pools: Mutex<HashMap<Arc<str>, Pool>>,
    /// Where refills go: the maker thread, started by the first one.
    maker: OnceLock<mpsc::Sender<Job>>,
}

/// Background work for the maker thread: making spares (of objects, or of the worker).
pub type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

#[derive(Default)]
struct Pool {
    instances: Vec<Instance>,
    /// A refill of this class is queued or running.
    filling: bool,
}

impl Spares {
    /// Spare instances ready, of every class.
    pub fn count(&self) -> usize {
        self.pools.lock().unwrap().values().map(|pool| pool.instances.len()).sum()
    }

    /// A spare of `version` of `class`, if one is ready. Spares of another version are dropped.
    pub fn take(&self, class: &Arc<str>, version: &Arc<Version>) -> Option<Instance> {
        let mut pools = self.pools.lock().unwrap();
        let pool = pools.get_mut(class)?;
        pool.instances.retain(|i| Arc::ptr_eq(&i.version, version));
        pool.instances.pop()
    }

    /// Whether one more spare of `memories` linear memories fits beside those ready, of every
    /// class, in [`MAX_PLACES`].
    fn fits(pools: &HashMap<Arc<str>, Pool>, memories: usize) -> bool {
        let held: usize = pools.values().flat_map(|pool| &pool.instances).map(|i| i.version.memories).sum();
        held + memories <= MAX_PLACES
    }

    /// Forgets every spare (at shutdown: spares hold the directory through their stores).
    pub fn clear(&self) {
        self.pools.lock().unwrap().clear();
    }

    /// Forgets the spares of a class that stops (deleted or renamed).
    pub fn forget(&self, class: &str) {
        self.pools.lock().unwrap().remove(class);
    }
}

/// Has spares of `version` made until `class` has [`PER_CLASS`], in the background. Call it
/// from the runtime (the maker runs what the spares spawn there).
pub fn refill(directory: &Arc<Directory>, class: Arc<str>, version: Arc<Version>) {
    let spares = &directory.spares;
    {
        let mut pools = spares.pools.lock().unwrap();
        if !Spares::fits(&pools, version.memories) {
            return;
        }
        let pool = pools.entry(class.clone()).or_default();
        if pool.filling || pool.instances.len() >= PER_CLASS {
            return;
        }
        pool.filling = true;
    }
    let weak = Arc::downgrade(directory);
    let made = class.clone();
    let job = Box::pin(async move {
        if let Some(directory) = weak.upgrade() {
            fill(&directory, made, version).await;
        }
    });
    if !in_background(directory, job) {
        // The maker thread is gone (it could not start): no spares, objects start their own.
        if let Some(pool) = spares.pools.lock().unwrap().get_mut(&class) {
            pool.filling = false;
        }
    }
}

/// Runs `job` on the maker thread (at idle priority, after what is queued before it). Call it
/// from the runtime. False when there is no maker thread (it could not start).
pub fn in_background(directory: &Directory, job: Job) -> bool {
    let maker = directory.spares.maker.get_or_init(|| start_maker(tokio::runtime::Handle::current()));
    maker.send(job).is_ok()
}

/// The thread that makes spares, one job after another, at idle priority. It runs each job
/// with `runtime`'s handle, so whatever an instance spawns lands on the runtime.
fn start_maker(runtime: tokio::runtime::Handle) -> mpsc::Sender<Job> {
    let (sender, jobs) = mpsc::channel::<Job>();
    let started = std::thread::Builder::new().name("wdo-spares".into()).spawn(move || {
        lower_priority();
        while let Ok(job) = jobs.recv() {
            runtime.block_on(job);
        }
    });
    if let Err(e) = started {
        tracing::warn!("cannot start the thread that makes spare instances: {e}");
    }
    sender
}

/// Asks the OS to run the calling thread only when a core would otherwise idle.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter block.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::debug!("spare instances are made at normal priority: {}", std::io::Error::last_os_error());
        }
    }
}

async fn fill(directory: &Arc<Directory>, class: Arc<str>, version: Arc<Version>) {
    let placeholder = Arc::new(ObjectInfo::nobody(class.clone()));
    loop {
        {
            let mut pools = directory.spares.pools.lock().unwrap();
            let fits = Spares::fits(&pools, version.memories);
            let Some(pool) = pools.get_mut(&class) else { return }; // forgotten meanwhile
            if !fits || pool.instances.len() >= PER_CLASS {
                pool.filling = false;
                return;
            }
        }
        let made = make(&version, &placeholder, directory).await;
        let mut pools = directory.spares.pools.lock().unwrap();
        let Some(pool) = pools.get_mut(&class) else { return };
        match made {
            Ok(instance) => pool.instances.push(instance),
            Err(e) => {
                tracing::warn!(class = %class, "could not make a spare instance: {}", e.reason);
                pool.filling = false;
                return;
            }
        }
    }
}

/// A fresh instance of `version`, warmed up if the component can be. A failed warm-up leaves
/// the instance unusable (it may have trapped), and is not tried again for this version.
async fn make(
    version: &Arc<Version>,
    placeholder: &Arc<ObjectInfo>,
    directory: &Arc<Directory>,
) -> Result<Instance, Failure> {
    let mut instance = Instance::new(version.clone(), placeholder.clone(), directory).await?;
    if version.warms_up()
        && let Err(e) = instance.warm_up().await
    {
        version.warm_up_failed.store(true, Ordering::Relaxed);
        return Err(Failure {
            reason: format!("stopped warming up this version's spares: {}", e.reason),
            outcome: e.outcome,
        });
    }
    Ok(instance)
}
