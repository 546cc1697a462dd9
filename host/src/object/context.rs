//! The WIT `context` import: who am I, logging, time.

use super::HostState;
use crate::bindings::wdo::object::{context, types};

impl types::Host for HostState {}

impl context::Host for HostState {
    fn object_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.object_or_trap()?.id.to_hex())
    }

    fn object_name(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.object_or_trap()?.name.clone())
    }

    fn class_name(&mut self) -> wasmtime::Result<String> {
        Ok(self.object.class.to_string())
    }

    fn log(&mut self, level: context::LogLevel, message: String) -> wasmtime::Result<()> {
        let object = &*self.object.label;
        match level {
            context::LogLevel::Trace => tracing::trace!(target: "wdo::guest", object, "{message}"),
            context::LogLevel::Debug => tracing::debug!(target: "wdo::guest", object, "{message}"),
            context::LogLevel::Info => tracing::info!(target: "wdo::guest", object, "{message}"),
            context::LogLevel::Warn => tracing::warn!(target: "wdo::guest", object, "{message}"),
            context::LogLevel::Error => tracing::error!(target: "wdo::guest", object, "{message}"),
        }
        Ok(())
    }

    fn env(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(crate::env::lookup(&self.directory.limits.vault, &self.profile, &key))
    }

    fn last_request_error(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.gate.network.last_error())
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(now.as_millis() as u64)
    }
}
