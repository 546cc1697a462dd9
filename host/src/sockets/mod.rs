//! WebSockets that outlive instances.
//!
//! # Design
//!
//! **The host owns the sockets.** An object accepts the upgrade of a request in `fetch`; from
//! then on the socket lives in the hub, keyed by its object, with its tags and attachment, and
//! survives the instance: a hibernated object keeps its sockets, and the next message brings a
//! fresh instance that sees them all.
//!
//! **One task per socket** (`connection.rs`) reads from the client and writes what the object
//! sent. Each message becomes a `websocket-message` event of the object, serialized with its
//! other events; a close from the client (answered by tungstenite, so the handshake completes
//! whatever the guest does) becomes `websocket-close`. Protocol pings are answered by
//! tungstenite, and an auto-response pair (`"ping"` → `"pong"`) by the hub, neither waking the
//! object.
//!
//! **The output gate.** `accept`, `send` and `close` made during an event are only recorded in
//! the event's state; the actor hands them to the hub after the event's transaction commits. A
//! failed event sends nothing and upgrades nothing.
//!
//! **Bounded buffers.** A message over `max_message` closes the socket with 1009. What waits to
//! be written to one client is bounded by `max_buffer`: a client that stops reading is closed
//! with 1008 and the object hears `websocket-close`, while the others keep receiving.

mod accepted;
mod connection;
mod hub;
mod wit;

pub use accepted::AcceptedSocket;
pub use hub::{Hub, HubLimits, SocketEffects, SocketId};
