//! The WIT `context` import (who am I, logging, time), and the imports of capabilities this
//! version does not provide yet: they link, so components built against the whole world run,
//! and each call answers `unsupported` with the capability's name.

use super::HostState;
use crate::bindings::WitError;
use crate::bindings::wdo::object::{context, objects, types};

impl types::Host for HostState {}

impl context::Host for HostState {
    fn object_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.object.id.to_hex())
    }

    fn object_name(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.object.name.clone())
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

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Ok(now.as_millis() as u64)
    }
}

type Call<T> = wasmtime::Result<Result<T, WitError>>;

fn not_yet<T>(what: &str) -> Call<T> {
    Ok(Err(WitError::Unsupported(format!("{what} is not available in this version of the host"))))
}

impl objects::Host for HostState {
    fn id_from_name(&mut self, _class: String, _name: String) -> Call<String> {
        not_yet("objects.id-from-name")
    }
    fn new_unique_id(&mut self, _class: String) -> Call<String> {
        not_yet("objects.new-unique-id")
    }
    fn id_from_string(&mut self, _class: String, _id: String) -> Call<String> {
        not_yet("objects.id-from-string")
    }
    fn call(
        &mut self,
        _class: String,
        _id: String,
        _method: String,
        _args: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, objects::CallError>> {
        Ok(Err(unsupported_call()))
    }
    fn fetch(
        &mut self,
        _class: String,
        _id: String,
        _request: objects::Request,
    ) -> wasmtime::Result<Result<objects::Response, objects::CallError>> {
        Ok(Err(unsupported_call()))
    }
}

fn unsupported_call() -> objects::CallError {
    objects::CallError {
        message: "calls between objects are not available in this version of the host".into(),
        from_callee: false,
        retryable: false,
        overloaded: false,
    }
}
