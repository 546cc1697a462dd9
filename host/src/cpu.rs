//! The CPU time of one event: what its guest code used (counted in epoch ticks by the store's
//! epoch callback) plus what the host spent in calls made for it (SQLite's progress handler
//! measures those, see `storage/clock.rs`). Both charge the same meter, so a guest cannot
//! escape its limit by moving its work into a long SQL statement.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The CPU time the current event of one instance has used, against the host's limit.
#[derive(Debug)]
pub struct CpuMeter {
    used_nanos: AtomicU64,
    limit: Duration,
    exceeded: AtomicBool,
}

impl CpuMeter {
    pub fn new(limit: Duration) -> CpuMeter {
        CpuMeter { used_nanos: AtomicU64::new(0), limit, exceeded: AtomicBool::new(false) }
    }

    /// A new event starts with nothing used.
    pub fn reset(&self) {
        self.used_nanos.store(0, Ordering::Relaxed);
        self.exceeded.store(false, Ordering::Relaxed);
    }

    /// Charges `spent`; true once the event has used its whole limit (it must stop).
    pub fn charge(&self, spent: Duration) -> bool {
        let spent = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        let used = self.used_nanos.fetch_add(spent, Ordering::Relaxed).saturating_add(spent);
        let out = u128::from(used) >= self.limit.as_nanos();
        if out {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        out
    }

    /// Whether the current event ran out of CPU time.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }
}

/// The error an event is stopped with when it runs out of CPU time.
#[derive(Debug)]
pub struct CpuLimitExceeded;

impl std::fmt::Display for CpuLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CPU time limit exceeded")
    }
}

impl std::error::Error for CpuLimitExceeded {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_runs_out_at_its_limit_and_starts_again_after_a_reset() {
        let meter = CpuMeter::new(Duration::from_millis(30));
        assert!(!meter.charge(Duration::from_millis(10)));
        assert!(!meter.charge(Duration::from_millis(19)));
        assert!(!meter.exceeded());
        assert!(meter.charge(Duration::from_millis(1)));
        assert!(meter.exceeded());
        meter.reset();
        assert!(!meter.exceeded() && !meter.charge(Duration::from_millis(29)));
    }
}
