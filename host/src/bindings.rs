//! Host-side bindings of the WIT package `wdo:object` (see `wit/object.wit`).
//!
//! Imports are synchronous and trappable: storage runs on the object's own SQLite connection,
//! and a host failure that would break the event's transaction traps the guest. Exports are
//! called asynchronously so epoch interruption can yield and a busy object cannot hold a worker
//! thread.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "durable-object",
    // Calls to other objects wait for their answer, and a WebSocket client for its handshake:
    // those imports are async.
    imports: {
        "wdo:object/objects": async | trappable,
        "wdo:object/websockets.connect": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    // `sql::Value` is compared in the storage tests.
    additional_derives: [PartialEq],
});

pub use wdo::object::types::{Error as WitError, Request as WitRequest, Response as WitResponse};

/// The name under which a durable object exports its handler.
pub const HANDLER_EXPORT: &str = "wdo:object/handler@0.1.0";

/// Functions the handler export must have.
pub const HANDLER_FUNCTIONS: &[&str] =
    &["fetch", "call", "alarm", "websocket-message", "websocket-close", "websocket-error"];

/// The `worker` world: a stateless front component that receives every HTTP request.
pub mod worker {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "worker",
        exports: { default: async },
        with: {
            "wdo:object/types": super::wdo::object::types,
            "wdo:object/context": super::wdo::object::context,
            "wdo:object/objects": super::wdo::object::objects,
        },
    });
}
