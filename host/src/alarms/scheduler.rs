//! The one task that finds due alarms and hands them to their objects.

use super::index::{AlarmIndex, Due};
use super::now_ms;
use std::sync::Arc;
use std::time::Duration;

/// How long a handed-out alarm is not handed out again (a lease; see the design note).
const LEASE_MS: i64 = 60_000;
/// How often a row whose class is not served is looked at again.
const PARK_MS: i64 = 60_000;
/// Alarms taken per look.
const BATCH: usize = 256;

/// What became of an alarm the scheduler handed out.
pub enum Delivery {
    /// Queued as an event of its object; the object's actor updates the index.
    Sent,
    /// Its class is not served now.
    NotServed,
    /// Its object's mailbox is full; look again soon.
    Busy,
    /// The host is gone: stop.
    Stopped,
}

/// Runs the scheduler until `deliver` says the host stopped.
pub fn start(index: Arc<AlarmIndex>, deliver: impl Fn(Due) -> Delivery + Send + 'static) {
    tokio::spawn(async move {
        loop {
            let now = now_ms();
            let due = match index.take_due(now, BATCH, now + LEASE_MS) {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!("reading the alarm index: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let full = due.len() == BATCH;
            for alarm in due {
                let (class, id) = (alarm.class.clone(), alarm.id.clone());
                let later = match deliver(alarm) {
                    Delivery::Sent => continue,
                    Delivery::Stopped => return,
                    Delivery::NotServed => now + PARK_MS,
                    Delivery::Busy => now + 1_000,
                };
                if let Err(e) = index.postpone(&class, &id, later) {
                    tracing::error!("postponing an alarm of {class}/{id}: {e}");
                }
            }
            if full {
                tokio::task::yield_now().await;
                continue;
            }
            let next = index.next_due().unwrap_or(None);
            let wait = next.map_or(PARK_MS, |at| (at - now_ms()).clamp(0, PARK_MS));
            index.set_next_look(now_ms() + wait);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = index.wake.notified() => {}
            }
        }
    });
}
