//! SQL time is the event's time: SQLite's progress handler on every object connection.
//!
//! # Design
//!
//! The CPU limit is counted in epoch ticks, which only guest code sees. Without more, a host
//! call that runs for minutes (a recursive CTE with no end, a sort of millions of rows) counts
//! as one tick, and holds a tokio worker thread all along: two such objects on a 2-core machine
//! left no thread for anything else. So SQLite calls the handler below every [`PROGRESS_OPS`]
//! virtual-machine instructions, and while a guest call runs on the connection it:
//!
//! - charges the time since its last run to the event's [`CpuMeter`], the meter the epoch
//!   callback charges guest code to, and interrupts the statement once the event is out of time
//!   (the storage call then traps with the CPU-limit message: see `wit.rs`);
//! - once a call has run for [`OFFLOAD_AFTER`], hands the tokio worker it runs on to a fresh
//!   thread (`block_in_place`), so the other objects and the host's own routes keep a worker
//!   while this call grinds. It tries again after twice as long each time (up to
//!   [`OFFLOAD_AT_MOST_EVERY`]), in case the worker was taken back.
//!
//! Outside guest calls (the actor's commit, savepoints) the handler does nothing: the meter is
//! attached only for the length of a guest call. The first [`PROGRESS_OPS`] instructions of each
//! call go uncounted (finding a call's start would cost a clock read on the hot path of every
//! call); that is a few microseconds, and the time between calls is guest time, which the
//! epoch ticks count.

use crate::cpu::CpuMeter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Instructions between two runs of the handler: ~10-50 µs of SQLite's work.
pub const PROGRESS_OPS: i32 = 2000;

/// A call that has run this long moves off the async worker it started on.
const OFFLOAD_AFTER: Duration = Duration::from_millis(5);

/// The longest wait between two tries to leave the worker.
const OFFLOAD_AT_MOST_EVERY: Duration = Duration::from_millis(50);

/// How long the call waits, inside `block_in_place`, for the fresh thread to take over the
/// worker's tasks (if it returned at once, it would usually take them back itself).
const HANDOFF: Duration = Duration::from_micros(200);

/// What a connection's progress handler reads: the meter of the guest call running on it, if
/// any, and a count of guest calls so the handler sees where one starts.
/// (A mutex, not an `ArcSwap`: it is set and cleared once per event, where arc-swap's store pays
/// its readers' debts, and read only every [`PROGRESS_OPS`] instructions.)
#[derive(Default)]
pub struct SqlClock {
    meter: Mutex<Option<Arc<CpuMeter>>>,
    calls: AtomicU64,
}

impl SqlClock {
    /// Charges SQLite's time to `meter` until [`SqlClock::detach`].
    pub fn attach(&self, meter: Arc<CpuMeter>) {
        *self.meter.lock().unwrap() = Some(meter);
    }

    pub fn detach(&self) {
        self.meter.lock().unwrap().take();
    }

    /// A guest call starts: what the handler measures from now on belongs to it.
    pub fn new_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The progress handler of a connection (`Connection::progress_handler`); true interrupts.
    pub fn handler(self: &Arc<Self>) -> impl FnMut() -> bool + Send + 'static {
        let clock = self.clone();
        let mut call = u64::MAX;
        let mut last = Instant::now();
        let mut next_offload = last;
        let mut offload_wait = OFFLOAD_AFTER;
        move || {
            let Some(meter) = clock.meter.lock().unwrap().clone() else { return false };
            let now = Instant::now();
            let current = clock.calls.load(Ordering::Relaxed);
            if current != call {
                call = current;
                last = now;
                offload_wait = OFFLOAD_AFTER;
                next_offload = now + offload_wait;
                return false;
            }
            if meter.charge(now - last) {
                return true;
            }
            last = now;
            if now >= next_offload {
                leave_the_async_worker();
                offload_wait = (offload_wait * 2).min(OFFLOAD_AT_MOST_EVERY);
                next_offload = Instant::now() + offload_wait;
            }
            false
        }
    }
}

/// Lets the tokio worker this thread runs go on with its other tasks on a fresh thread, while
/// this thread finishes the call. Nothing happens outside a multi-threaded runtime.
fn leave_the_async_worker() {
    super::off_the_async_worker(|| std::thread::sleep(HANDOFF));
}
