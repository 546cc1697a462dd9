//! Objects: the directory that maps each object to its one actor, the actor that runs the
//! object's events, and the wasmtime instance the actor drives.
//!
//! # Design
//!
//! **One instance per object.** The directory holds, per (class, object id), the mailbox of the
//! object's actor. Every send into a mailbox happens while holding the directory shard's lock,
//! and an actor removes itself from the directory under that same lock only after seeing its
//! mailbox empty. So an event can never be left in a mailbox nobody reads, and two actors for
//! the same object can never exist at once.
//!
//! **Serialized events.** The actor is one tokio task. It takes the first queued event and
//! whatever else is already waiting (up to `max_batch`), runs them one at a time in arrival
//! order, each inside its own savepoint of one transaction, commits once, and only then
//! releases the replies (see `storage` for the transaction design). Different objects are
//! different tasks and run in parallel.
//!
//! **Failure.** A trap, the CPU limit or the memory limit fails only the event that caused it:
//! its savepoint is rolled back, its instance is dropped, its caller gets an error that says
//! what happened, and the next event starts a fresh instance.
//!
//! **Hibernation.** An instance with no event for `idle_timeout` is dropped (its memory goes back
//! to the pool); the database stays open. After `object_idle_timeout` more the actor closes the
//! database and leaves the directory. The directory also keeps at most `max_open_objects`
//! databases open (when it needs room it asks the least recently used object to close) and at
//! most `max_instances` instances alive, one of a component with several linear memories
//! counting once for each (it asks the least recently used holder to drop its
//! instance and keep its database; a socket's `hold-instance` does not exempt it, so the bound
//! holds), a bound lowered while the process's resident memory is past `max_resident`
//! (`residency.rs`). An object called by another (RPC) that finds no room within 20 ms goes over the bound
//! instead of waiting: its callers may hold every permit while they wait on it.

mod actor;
mod context;
mod directory;
pub(crate) mod inspect;
mod instance;
mod outbound;
mod output;
mod residency;
mod spares;

pub use directory::Directory;
pub use instance::{Failure, HostState, InstanceLimits, ObjectInfo, WorkerUpgrade, describe_failure, new_store};
pub use outbound::add_http_to_linker;
pub use residency::resident_bytes;
pub use spares::{MAX_PLACES as MAX_SPARE_PLACES, in_background};

use crate::error::Error;
use crate::ids::ObjectId;
use crate::message::{Request, Response};
use crate::sockets::SocketId;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The identity of an object in the directory.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ObjectKey {
    pub class: Arc<str>,
    pub id: ObjectId,
}

/// Something that happens to an object.
pub enum Event {
    Fetch(Request),
    /// A request asking for a WebSocket upgrade: the object may accept it.
    Upgrade(Request),
    WebSocketMessage {
        socket: SocketId,
        message: crate::bindings::wdo::object::websockets::Message,
    },
    WebSocketClose {
        socket: SocketId,
        code: u16,
        reason: String,
        was_clean: bool,
    },
    WebSocketError {
        socket: SocketId,
        error: String,
    },
    /// An RPC call from another object, a worker or the host's call route.
    Call {
        method: String,
        args: Vec<u8>,
    },
    /// The object's alarm is due (as far as the alarm index knows); `retry` attempts failed.
    Alarm {
        retry: u32,
    },
    /// Drop the instance now (and close the database after this batch when asked): what
    /// idling does, on demand. Runs in order with the object's other events.
    Hibernate {
        close_storage: bool,
    },
    /// Put this database in place of the object's (a restore from the backup store): runs
    /// apart from any batch, in order with the object's other events.
    Restore {
        database: Vec<u8>,
    },
    /// An operator reads the object's storage (`inspect.rs`): answered as `Reply::Called`
    /// with JSON.
    Inspect(inspect::Inspect),
}

impl Event {
    pub fn kind(&self) -> crate::observe::Kind {
        use crate::observe::Kind;
        match self {
            Event::Fetch(_) => Kind::Fetch,
            Event::Upgrade(_) => Kind::Upgrade,
            Event::WebSocketMessage { .. } | Event::WebSocketClose { .. } | Event::WebSocketError { .. } => {
                Kind::WebSocket
            }
            Event::Call { .. } => Kind::Call,
            Event::Alarm { .. } => Kind::Alarm,
            Event::Hibernate { .. } => Kind::Hibernate,
            Event::Restore { .. } => Kind::Restore,
            Event::Inspect(_) => Kind::Inspect,
        }
    }
}

/// The result of an event, released after its commit.
pub enum Reply {
    Response(Response),
    /// The object accepted the upgrade: answer 101 and hand the connection to the hub.
    Upgrade(crate::sockets::AcceptedSocket),
    /// What the object's `call` returned (an `Err` is the callee's own error).
    Called(Result<Vec<u8>, String>),
    Done,
}

/// An event on its way to an actor, with where its reply goes.
pub struct Envelope {
    pub event: Event,
    /// The object's name when the sender addressed it by name.
    pub name: Option<String>,
    pub reply: oneshot::Sender<Result<Reply, Error>>,
    /// The objects waiting on this event, innermost last (empty for requests from outside).
    pub chain: Vec<ObjectKey>,
    /// When the event must be over: a call inherits its caller's deadline. `None`: the host's
    /// event timeout from when the event starts.
    pub deadline: Option<tokio::time::Instant>,
    /// Input bytes (a WebSocket message) taken from the host's budget, given back once the event
    /// has run and this envelope is dropped.
    #[allow(dead_code)] // kept for its Drop
    pub held: crate::budget::Held,
    /// The client request this event serves (directly, or through calls), for logs and tails.
    pub request_id: Option<crate::observe::RequestId>,
}
