//! # wdo-sdk: durable objects in Rust
//!
//! Implement [`DurableObject`] and [`export!`] it; build with
//! `cargo build --target wasm32-wasip2` to get a component `wdo serve` runs.
//!
//! ```ignore
//! use wdo_sdk::prelude::*;
//!
//! struct Counter;
//!
//! impl DurableObject for Counter {
//!     fn new() -> Self { Counter }
//!
//!     fn fetch(&mut self, request: Request) -> Result<Response> {
//!         let mut value: i64 = storage::get("value")?.unwrap_or(0);
//!         match (request.method(), request.path()) {
//!             ("POST", "/increment") => value += 1,
//!             ("POST", "/decrement") => value -= 1,
//!             ("GET", "/") => return Ok(Response::text(value.to_string())),
//!             _ => return Ok(Response::not_found()),
//!         }
//!         storage::put("value", &value)?;
//!         Ok(Response::text(value.to_string()))
//!     }
//! }
//!
//! export!(Counter);
//! ```
//!
//! Every event (a request, later an alarm or a WebSocket message) runs alone, and its storage
//! writes (key-value and SQL) commit together when it returns. A panic rolls them all back;
//! returning `Err` answers with the error's status and keeps the writes made before it (use
//! [`sql::transaction`] for all-or-nothing parts).

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "durable-object",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "wdo_sdk::bindings",
        generate_all,
    });
}

#[doc(hidden)]
pub mod __private;
pub mod alarms;
pub mod context;
mod error;
mod fetch;
pub mod http;
pub mod objects;
pub mod sql;
pub mod storage;
pub mod websockets;

pub use error::{Error, Result};
pub use http::{Request, Response};

/// Alarm details passed to [`DurableObject::alarm`].
pub use bindings::exports::wdo::object::handler::AlarmInfo;
/// A WebSocket message.
pub use bindings::wdo::object::websockets::Message;
/// A WebSocket of this object, stable while it is open.
pub type SocketId = u64;

/// A durable object class. One value lives per live instance: it is created by [`new`] when the
/// instance starts and dropped when the host drops the instance (after it idles, or after a
/// failed event). Keep anything that must last in [`storage`].
///
/// [`new`]: DurableObject::new
pub trait DurableObject: 'static {
    /// Called when an instance starts, before its first event.
    fn new() -> Self
    where
        Self: Sized;

    /// Handles an HTTP request addressed to this object.
    fn fetch(&mut self, request: Request) -> Result<Response>;

    /// Handles an RPC call. The default refuses every method.
    fn call(&mut self, method: &str, _args: &[u8]) -> Result<Vec<u8>> {
        Err(Error::new(404, format!("this object has no method `{method}`")))
    }

    /// Handles the object's alarm. An error means: retry later.
    fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        Ok(())
    }

    fn websocket_message(&mut self, _socket: SocketId, _message: Message) -> Result<()> {
        Ok(())
    }

    fn websocket_close(&mut self, _socket: SocketId, _code: u16, _reason: &str, _was_clean: bool) -> Result<()> {
        Ok(())
    }

    fn websocket_error(&mut self, _socket: SocketId, _error: &str) -> Result<()> {
        Ok(())
    }
}

/// Makes a [`DurableObject`] type the component's export.
#[macro_export]
macro_rules! export {
    ($object:ty) => {
        struct __WdoExport;

        impl $crate::bindings::exports::wdo::object::handler::Guest for __WdoExport {
            fn fetch(
                request: $crate::bindings::wdo::object::types::Request,
            ) -> $crate::bindings::wdo::object::types::Response {
                $crate::__private::fetch::<$object>(request)
            }

            fn call(method: String, args: Vec<u8>) -> ::core::result::Result<Vec<u8>, String> {
                $crate::__private::call::<$object>(method, args)
            }

            fn alarm(info: $crate::AlarmInfo) -> ::core::result::Result<(), String> {
                $crate::__private::alarm::<$object>(info)
            }

            fn websocket_message(socket: u64, message: $crate::Message) {
                $crate::__private::websocket_message::<$object>(socket, message)
            }

            fn websocket_close(socket: u64, code: u16, reason: String, was_clean: bool) {
                $crate::__private::websocket_close::<$object>(socket, code, reason, was_clean)
            }

            fn websocket_error(socket: u64, error: String) {
                $crate::__private::websocket_error::<$object>(socket, error)
            }
        }

        $crate::bindings::__export_world!(__WdoExport with_types_in $crate::bindings);
    };
}

/// Everything an object usually needs.
pub mod prelude {
    pub use crate::{
        AlarmInfo, DurableObject, Error, Message, Request, Response, Result, SocketId, alarms, context, export,
        objects, params, sql, storage, websockets,
    };
}
