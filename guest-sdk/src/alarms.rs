//! The object's alarm: one wake-up time, delivered to [`DurableObject::alarm`](crate::DurableObject::alarm).
//!
//! Setting and deleting the alarm are part of the event's transaction. Delivery is at least
//! once: a handler that fails is retried (2 s, 4 s, ... up to six retries), and one that
//! succeeds clears the alarm unless it set a new one.

use crate::bindings::wdo::object::alarms as wit;
use crate::{Error, Result};

/// The pending alarm, in milliseconds since the Unix epoch.
pub fn get() -> Result<Option<i64>> {
    wit::get().map_err(Error::from_host)
}

/// Sets the alarm (replacing any earlier one). A time in the past fires as soon as possible.
pub fn set(at_ms: i64) -> Result<()> {
    wit::set(at_ms).map_err(Error::from_host)
}

/// Sets the alarm `ms` milliseconds from now.
pub fn set_in(ms: u64) -> Result<()> {
    set(crate::context::now_ms() as i64 + ms as i64)
}

/// Cancels the alarm.
pub fn delete() -> Result<()> {
    wit::delete().map_err(Error::from_host)
}
