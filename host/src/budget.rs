//! The host-wide budget of buffered input.
//!
//! # Design
//!
//! The host holds client input in memory before an object runs: a request body is read whole
//! (up to `--max-request-body`), then waits in its object's mailbox; a WebSocket message waits
//! there too. Each of those bounds is per request, so many at once could still take all the
//! memory there is. Every such byte is therefore taken from one budget (a semaphore of bytes,
//! `--max-buffered-input`) and given back once the event that needed it has run:
//!
//! - an HTTP body takes its declared length before it is read (or its bytes as they arrive,
//!   without one). Past the budget the request is answered 503 with `Retry-After`, before any of
//!   it runs; requests already accepted are not touched, so nothing acknowledged is lost;
//! - a WebSocket message waits for its bytes, and its socket is not read meanwhile
//!   (backpressure: the client's own sends slow down, nothing is dropped). It first waits for
//!   its object's share (`--max-object-input`), so the clients of one flooded object wait for
//!   that object, not for the whole host.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct InputBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes taken from budgets (the host's, an object's share); they come back when this is
/// dropped.
#[derive(Default)]
pub struct Held(Vec<OwnedSemaphorePermit>);

impl Held {
    fn add(&mut self, permit: OwnedSemaphorePermit) {
        match self.0.last_mut() {
            Some(last) if Arc::ptr_eq(last.semaphore(), permit.semaphore()) => last.merge(permit),
            _ => self.0.push(permit),
        }
    }

    /// Holds what `other` holds as well.
    pub fn join(&mut self, other: Held) {
        for permit in other.0 {
            self.add(permit);
        }
    }
}

impl InputBudget {
    pub fn new(total: usize) -> InputBudget {
        let total = total.min(Semaphore::MAX_PERMITS);
        InputBudget { bytes: Arc::new(Semaphore::new(total)), total }
    }

    /// Takes `n` more bytes into `held` if the budget has them now.
    pub fn try_take(&self, held: &mut Held, n: usize) -> bool {
        let Ok(n) = u32::try_from(n) else { return false };
        match self.bytes.clone().try_acquire_many_owned(n) {
            Ok(permit) => {
                held.add(permit);
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until the budget has `n` bytes (at most the whole budget) and takes them.
    pub async fn take(&self, n: usize) -> Held {
        let n = n.min(self.total).min(u32::MAX as usize) as u32;
        match self.bytes.clone().acquire_many_owned(n).await {
            Ok(permit) => Held(vec![permit]),
            Err(_) => Held::default(), // never closed
        }
    }

    /// Bytes held now, for stats.
    pub fn held(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_come_back_when_what_held_them_is_dropped() {
        let budget = InputBudget::new(100);
        let mut first = Held::default();
        assert!(budget.try_take(&mut first, 60));
        assert!(budget.try_take(&mut first, 30), "taken bit by bit");
        let mut second = Held::default();
        assert!(!budget.try_take(&mut second, 20), "90 of 100 are held");
        assert_eq!(budget.held(), 90);
        drop(first);
        assert!(budget.try_take(&mut second, 20));
        let waiter = budget.take(90);
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), waiter).await.is_err(), "waits for room");
        drop(second);
        let mut all = budget.take(1000).await; // at most the whole budget
        assert_eq!(budget.held(), 100);
        let share = InputBudget::new(10);
        all.join(share.take(10).await);
        assert_eq!((budget.held(), share.held()), (100, 10));
        drop(all);
        assert_eq!((budget.held(), share.held()), (0, 0), "both come back");
    }
}
