//! Who this object is, logging and time.

use crate::bindings::wdo::object::context as wit;

/// This object's id (64 hex characters).
pub fn id() -> String {
    wit::object_id()
}

/// The name this object was addressed by, if it has one.
pub fn name() -> Option<String> {
    wit::object_name()
}

/// The class this object belongs to.
pub fn class() -> String {
    wit::class_name()
}

/// A setting of this code: a secret of its class (`wdo secret put CLASS KEY`), else a var of its
/// deployed version (`vars` in `wdo.toml`).
pub fn env(key: &str) -> Option<String> {
    wit::env(key)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    wit::now_ms()
}

pub fn log(message: &str) {
    wit::log(wit::LogLevel::Info, message);
}

pub fn log_warn(message: &str) {
    wit::log(wit::LogLevel::Warn, message);
}

pub fn log_error(message: &str) {
    wit::log(wit::LogLevel::Error, message);
}
