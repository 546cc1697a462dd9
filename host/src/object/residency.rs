//! Residency: the bounds on how many objects hold their database open and how many hold an
//! instance, and the resident-memory budget that lowers the second.
//!
//! # Design
//!
//! Each bound is a semaphore of permits, an LRU of the holders and a way to ask a holder to
//! give its permits up ([`Residency::admit`]): a newcomer that finds too few free asks the least
//! recently used holders and waits for the permits they return.
//!
//! **Weights.** An open database takes one permit. An instance takes one per linear memory of
//! its component (at least one): what runs out first in a host with many instances is not
//! their count but their memories' slots in wasmtime's pool (each reserves ~4 GiB of address
//! space and comes to take 4 memory mappings of the kernel's `vm.max_map_count`). Every
//! language toolchain here makes components of one memory, so `--max-instances` is how many of
//! those may live; a hand-made component of two memories counts twice, and can never take a
//! slot the pool does not have.
//!
//! **The worker.** A worker's request holds an instance while it runs, so it takes places
//! too ([`Residency::take`]: it asks the least recently used objects for room and is never in
//! the LRU itself, since it gives its places back when it answers). The worker's requests hold
//! at most half the places at once (`Directory::worker_place`; past that they wait, up to the
//! request's deadline, then get 503): the objects they call always have the other half, and a
//! flood of slow worker requests can neither take every instance slot of the pool nor hold
//! memory past `--max-resident`. The worker's idle and spare instances take no place: they
//! are few (`worker::MAX_IDLE`, `worker::SPARES`) and the pool has slots for them past the
//! bound (`engine::EXTRA_SLOTS`).
//!
//! **Memory.** A count bounds instances, not their memory: an idle Rust counter holds ~45 KiB,
//! a JavaScript object ~2-4 MiB and a Python one ~8 MiB, so a bound high enough for ten thousand
//! small objects would let a few thousand Python ones take the machine. [`hold_resident_memory`]
//! reads the process's resident size every 25 ms; past `--max-resident` it lowers the bound on
//! instances to 7/8 of those live (never under [`MIN_INSTANCES`]), taking the permits out of the
//! semaphore (free ones at once, the rest as the holders it asks give them back), so newcomers
//! then take the place of the least recently used instead of adding to them. Back under 7/8 of
//! the budget it gives permits back, 1/16 of `--max-instances` a tick. What is not instances
//! (open databases, sockets, queued bytes) has its own bounds; if they alone pass the budget the
//! instances stay at the minimum and the log says so.

use super::ObjectKey;
use super::directory::ActorControl;
use lru::LruCache;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The bound on instances never goes below this under memory pressure.
pub const MIN_INSTANCES: usize = 16;

/// How often the resident size is read.
const WATCH_INTERVAL: Duration = Duration::from_millis(25);

/// Permits to hold something (a database open, an instance), the order in which their
/// holders were last used, and how to ask a holder to give it up.
pub struct Residency {
    /// The configured bound.
    pub(super) max: usize,
    permits: Arc<Semaphore>,
    /// Holders with permits now (an instance of several memories holds several permits).
    holders: Arc<AtomicUsize>,
    /// Permits taken out of the semaphore to hold the bound under `max` (memory pressure).
    withheld: AtomicUsize,
    pub(super) lru: Mutex<LruCache<ObjectKey, Arc<ActorControl>>>,
    ask: fn(&ActorControl) -> &Notify,
}

impl Residency {
    pub(super) fn new(max: usize, ask: fn(&ActorControl) -> &Notify) -> Self {
        Residency {
            max,
            permits: Arc::new(Semaphore::new(max)),
            holders: Arc::new(AtomicUsize::new(0)),
            withheld: AtomicUsize::new(0),
            lru: Mutex::new(LruCache::unbounded()),
            ask,
        }
    }

    /// Waits for `weight` permits (at least one; never more than the bound can fall to) for
    /// `key`, asking the least recently used holders for theirs. A callee (`called`: an object
    /// waits on this event) that finds no room soon goes over the bound and gets none: its
    /// callers may be the ones holding every permit, waiting on it.
    pub(super) async fn admit(
        &self,
        key: &ObjectKey,
        control: &Arc<ActorControl>,
        called: bool,
        weight: usize,
    ) -> Option<Permit> {
        let permit = self.acquire(weight, called.then_some(key)).await;
        self.lru.lock().unwrap().put(key.clone(), control.clone());
        permit
    }

    /// Waits for `weight` permits for a holder that is not in the LRU (a worker's request,
    /// which gives them back when it answers): it asks the least recently used for room and
    /// is never asked itself.
    pub(super) async fn take(&self, weight: usize) -> Permit {
        self.acquire(weight, None).await.expect("only a callee goes without")
    }

    async fn acquire(&self, weight: usize, callee: Option<&ObjectKey>) -> Option<Permit> {
        let weight = weight.min(MIN_INSTANCES.min(self.max)).max(1) as u32;
        let permit = loop {
            if let Ok(permit) = self.permits.clone().try_acquire_many_owned(weight) {
                break permit;
            }
            // Full: ask the least recently used holders to give up what is missing, and wait
            // for it. If it does not come soon (others are waiting too), ask the next ones:
            // progress never depends on an object closing by itself.
            self.ask_least_recent((weight as usize).saturating_sub(self.permits.available_permits()).max(1));
            let wait = self.permits.clone().acquire_many_owned(weight);
            if let Ok(permit) = tokio::time::timeout(Duration::from_millis(20), wait).await {
                break permit.expect("the semaphore is never closed");
            }
            if let Some(key) = callee {
                tracing::debug!(object = ?key, "a called object goes over a bound (open databases or instances)");
                return None;
            }
        };
        self.holders.fetch_add(1, Ordering::Relaxed);
        Some(Permit { _permit: permit, holders: self.holders.clone() })
    }

    /// Asks the `n` least recently used holders to give up their permits.
    fn ask_least_recent(&self, n: usize) {
        let mut lru = self.lru.lock().unwrap();
        for _ in 0..n {
            let Some((_, holder)) = lru.pop_lru() else { return };
            (self.ask)(&holder).notify_one();
        }
    }

    /// The bound now: `max`, or less under memory pressure.
    pub(super) fn limit(&self) -> usize {
        self.max - self.withheld.load(Ordering::Relaxed)
    }

    /// Permits held now (holders over the bound hold none).
    pub(super) fn held(&self) -> usize {
        self.limit().saturating_sub(self.permits.available_permits())
    }

    /// Holders of permits now: no more than [`Residency::held`], fewer where some hold several.
    pub(super) fn holders(&self) -> usize {
        self.holders.load(Ordering::Relaxed)
    }

    /// Lowers the bound to `target` (not under [`MIN_INSTANCES`]): free permits are taken at
    /// once, and the least recently used holders are asked for the rest, which are taken as they
    /// come back, waiting up to `patience` (what is still missing is asked for again next time).
    pub(super) async fn lower_to(&self, target: usize, patience: Duration) {
        let target = target.clamp(MIN_INSTANCES.min(self.max), self.max);
        let mut missing = self.limit().saturating_sub(target);
        let taken = self.permits.forget_permits(missing);
        self.withheld.fetch_add(taken, Ordering::Relaxed);
        missing -= taken;
        if missing == 0 {
            return;
        }
        self.ask_least_recent(missing);
        // Waiting in line with the newcomers, so the permits the asked holders return come here
        // in turn rather than going straight to a newcomer.
        let deadline = tokio::time::Instant::now() + patience;
        while missing > 0 {
            match tokio::time::timeout_at(deadline, self.permits.acquire()).await {
                Ok(Ok(permit)) => {
                    permit.forget();
                    self.withheld.fetch_add(1, Ordering::Relaxed);
                    missing -= 1;
                }
                _ => return,
            }
        }
    }

    /// Raises the bound to `target` (at most `max`).
    pub(super) fn raise_to(&self, target: usize) {
        let back = target.min(self.max).saturating_sub(self.limit());
        if back > 0 {
            self.withheld.fetch_sub(back, Ordering::Relaxed);
            self.permits.add_permits(back);
        }
    }
}

/// A holder's place under a bound: its permits go back when it is dropped.
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    holders: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.holders.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process's resident memory in bytes (Linux: `/proc/self/statm`); `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    Some(pages * page_size)
}

/// Holds the process's resident memory under `budget` by lowering the bound on `instances`
/// (see the design note). Ends when the residency is dropped or the size cannot be read.
pub async fn hold_resident_memory(instances: Weak<Residency>, budget: u64) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut over, mut at_minimum) = (false, false);
    loop {
        tick.tick().await;
        let Some(instances) = instances.upgrade() else { return };
        let Some(resident) = resident_bytes() else { return };
        let limit = instances.limit();
        if resident > budget {
            if !over {
                over = true;
                tracing::warn!(
                    resident_mib = resident >> 20,
                    budget_mib = budget >> 20,
                    live_instances = instances.holders(),
                    "resident memory is over --max-resident: dropping the least recently used idle instances"
                );
            }
            if limit <= MIN_INSTANCES {
                if !at_minimum {
                    at_minimum = true;
                    tracing::warn!(
                        resident_mib = resident >> 20,
                        "the instances are down to their minimum and resident memory is still over \
                         --max-resident: the rest is open databases, sockets and buffers"
                    );
                }
                continue;
            }
            instances.lower_to(instances.held().min(limit) * 7 / 8, WATCH_INTERVAL).await;
        } else if resident < budget / 8 * 7 && limit < instances.max {
            if over {
                (over, at_minimum) = (false, false);
                tracing::info!(resident_mib = resident >> 20, "resident memory is back under --max-resident");
            }
            instances.raise_to(limit + instances.max.div_ceil(16));
        }
    }
}

#[cfg(test)]
#[path = "residency_tests.rs"]
mod tests;
