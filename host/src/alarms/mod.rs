//! Alarms: every object can schedule its own wake-up.
//!
//! # Design
//!
//! **The alarm is the object's data.** `alarms.set` writes the time into the object's own
//! database (`_wdo_meta`), inside the event's transaction: an event that sets an alarm and then
//! traps leaves none, and a restored database restores its alarm.
//!
//! **A host-wide index finds due alarms** without opening any object: `<data>/alarms.sqlite`,
//! one row per object that may have an alarm (class, id, name, time, retry count, and `due`, the
//! time the scheduler looks at). Pending alarms cost a row, no instance and no task. The index
//! never lacks a pending alarm: the actor writes the new time to the index *before* it commits
//! the object's transaction, and reconciles the index with what was committed afterwards. It may
//! hold a stale row (after a crash between the two): the alarm event then finds no due alarm in
//! the object and just fixes the index.
//!
//! **Delivery is at least once.** One scheduler task takes due rows, leases them (moves `due`
//! a minute ahead, so they are not taken twice) and sends an `Alarm` event to each object; it
//! runs serialized with the object's other events and wakes a hibernated object. Leases are
//! cleared at start-up, so an alarm in flight during a crash, or due while the host was down,
//! fires soon after start. The handler runs with the alarm already cleared: if it succeeds, the
//! alarm stays cleared unless the handler set a new one. If it fails (error, trap, CPU limit),
//! its event is rolled back and the alarm is retried after `base·2^n` (±20% jitter), six times at
//! most; then it is dropped with an error in the log.

mod index;
mod scheduler;
mod wit;

pub use index::{AlarmIndex, Due};
pub use scheduler::{Delivery, start as start_scheduler};

use std::time::Duration;

/// Retries after the first attempt before an alarm is dropped.
pub const MAX_RETRIES: u32 = 6;

/// When a failed alarm is tried again: `base·2^retry`, ±20% jitter.
pub fn backoff(base: Duration, retry: u32) -> Duration {
    let exact = base.saturating_mul(1 << retry.min(20));
    exact.mul_f64(rand::random_range(0.8..=1.2))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter() {
        let base = Duration::from_secs(2);
        for retry in 0..6 {
            let expected = 2.0 * f64::from(1u32 << retry);
            let got = backoff(base, retry).as_secs_f64();
            assert!((expected * 0.8..=expected * 1.2).contains(&got), "retry {retry}: {got}");
        }
    }
}
