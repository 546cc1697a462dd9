//! Seeing what the host does: metrics in the Prometheus text format (`/_wdo/metrics`), the
//! context every log line carries (request id, class, object, event kind), log lines as JSON
//! (`--log-format json`), and the live tail of finished events (`wdo tail`).
//!
//! # Design
//!
//! **Nothing here may slow an event.** Counters are atomics reached through handles each actor
//! resolves once ([`ClassMetrics`]); a duration histogram takes one uncontended lock per event;
//! gauges (live instances, queued events, open databases, ...) are not kept up to date at all:
//! they are read from the host's own state when `/_wdo/metrics` is scraped. A tail costs nothing
//! while nobody watches (one atomic load per event); a watched event is one message into a
//! bounded broadcast channel, which never waits: a tail that reads too slowly loses the oldest
//! lines and is told how many (`tail.rs`).
//!
//! **Labels are bounded.** Class names (a deploy's choice), event kinds and outcomes are labels;
//! object names and ids never are (they are the tail's and the inspector's business).
//!
//! **Context without plumbing.** The gateway gives each request an id (the client's
//! `x-request-id` if it sent a sane one) and runs the request inside a task-local [`Context`];
//! an actor runs each event inside one that names the object, the event's kind and the request
//! it came from. Envelopes made inside a context (an RPC call, a worker's fetch to an object)
//! carry its request id on, and the log formatters (`log.rs`) read the context of the task
//! that logs, so a storage warning deep in a call carries the request id without being told.

pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod tail;

pub use log::LogFormat;
pub(crate) use metrics::{ClassMetrics, Metrics};
pub(crate) use tail::{Tail, TailRecord};

use crate::error::Error;
use crate::object::ObjectInfo;
use std::sync::Arc;

/// What the host shares between its parts to be seen from outside.
pub(crate) struct Observe {
    pub metrics: Metrics,
    pub tail: Tail,
}

impl Observe {
    pub fn new(metrics_on: bool) -> Self {
        Observe { metrics: Metrics::new(metrics_on), tail: Tail::new() }
    }
}

/// The id of one client request, in every log line and tail record it causes.
pub type RequestId = Arc<str>;

/// The header that carries the request id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id for a request: the client's own (`x-request-id`) when it is 1 to 64 characters of
/// letters, digits, `-`, `_`, `.` or `:`; otherwise a new random one (16 hex digits).
pub fn request_id(given: Option<&[u8]>) -> RequestId {
    let sane = |id: &&[u8]| {
        (1..=64).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    match given.filter(sane) {
        Some(id) => Arc::from(std::str::from_utf8(id).expect("ASCII")),
        None => {
            // Formatted on the stack: the `Arc` is the id's one allocation.
            let mut hex = [0u8; 16];
            let digits = b"0123456789abcdef";
            let random = rand::random::<u64>();
            for (i, digit) in hex.iter_mut().enumerate() {
                *digit = digits[(random >> (60 - 4 * i) & 0xf) as usize];
            }
            Arc::from(std::str::from_utf8(&hex).expect("hex digits"))
        }
    }
}

/// What the current task is doing for whom: read by the log formatters and by whatever makes
/// an envelope (its request id travels with the event).
#[derive(Clone, Default)]
pub struct Context {
    pub request_id: Option<RequestId>,
    pub object: Option<Arc<ObjectInfo>>,
    pub kind: Option<Kind>,
    /// Where the guest's output goes while a tail watches (`tail::Lines`).
    pub lines: Option<tail::Lines>,
}

tokio::task_local! {
    static CONTEXT: Context;
}

impl Context {
    /// Runs `work` inside this context.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CONTEXT.scope(self, work).await
    }

    /// Runs `work` (not async) inside this context.
    pub fn sync_scope<T>(self, work: impl FnOnce() -> T) -> T {
        CONTEXT.sync_scope(self, work)
    }

    /// Reads the current task's context, if it runs inside one.
    pub fn with<T>(read: impl FnOnce(&Context) -> T) -> Option<T> {
        CONTEXT.try_with(read).ok()
    }
}

/// The request id of the work the current task does, if any.
pub fn current_request_id() -> Option<RequestId> {
    Context::with(|context| context.request_id.clone()).flatten()
}

/// What kind of event an object (or the worker) ran.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Fetch,
    Upgrade,
    WebSocket,
    Call,
    Alarm,
    Hibernate,
    Restore,
    Inspect,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Fetch,
        Kind::Upgrade,
        Kind::WebSocket,
        Kind::Call,
        Kind::Alarm,
        Kind::Hibernate,
        Kind::Restore,
        Kind::Inspect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Fetch => "fetch",
            Kind::Upgrade => "upgrade",
            Kind::WebSocket => "websocket",
            Kind::Call => "call",
            Kind::Alarm => "alarm",
            Kind::Hibernate => "hibernate",
            Kind::Restore => "restore",
            Kind::Inspect => "inspect",
        }
    }
}

/// How a request or an event ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Outcome {
    /// Ran and answered (any status under 400, or a call's result).
    Ok,
    /// Ran and answered an error itself: a status of 400 or more, a call's or an alarm
    /// handler's own error.
    ErrorResponse,
    /// The guest trapped, panicked or threw: its writes in the event were rolled back.
    Trap,
    CpuLimit,
    MemoryLimit,
    /// Ran past its deadline (`--event-timeout`, or its caller's).
    Deadline,
    /// Refused for want of room: a full mailbox, the host's input budget.
    Overloaded,
    /// Not made durable (storage or the backup store failed, the host is stopping): safe to
    /// retry.
    Unavailable,
    /// The host refused the request as sent (bad name, unknown class, too large, ...).
    BadRequest,
    /// Anything else the host failed at.
    Internal,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Ok,
        Outcome::ErrorResponse,
        Outcome::Trap,
        Outcome::CpuLimit,
        Outcome::MemoryLimit,
        Outcome::Deadline,
        Outcome::Overloaded,
        Outcome::Unavailable,
        Outcome::BadRequest,
        Outcome::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ErrorResponse => "error_response",
            Outcome::Trap => "trap",
            Outcome::CpuLimit => "cpu_limit",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Deadline => "deadline",
            Outcome::Overloaded => "overloaded",
            Outcome::Unavailable => "unavailable",
            Outcome::BadRequest => "bad_request",
            Outcome::Internal => "internal",
        }
    }

    /// Whether it is worth an operator's look (everything but `ok`).
    pub fn is_error(self) -> bool {
        self != Outcome::Ok
    }

    /// An answer's outcome from its HTTP status.
    pub fn of_status(status: u16) -> Outcome {
        if status < 400 { Outcome::Ok } else { Outcome::ErrorResponse }
    }

    /// The outcome of an error the host answered with.
    pub fn of_error(error: &Error) -> Outcome {
        match error {
            Error::EventFailed { outcome, .. } => *outcome,
            Error::Overloaded { .. } | Error::Busy(_) => Outcome::Overloaded,
            Error::Unavailable { .. } => Outcome::Unavailable,
            Error::Forwarded { status: 503, .. } => Outcome::Unavailable,
            Error::Forwarded { status, .. } if *status < 500 => Outcome::BadRequest,
            Error::InvalidName(_)
            | Error::UnknownClass { .. }
            | Error::PayloadTooLarge { .. }
            | Error::Timeout(_)
            | Error::Unauthorized(_)
            | Error::BadRequest(_)
            | Error::Conflict(_)
            | Error::Misdirected { .. } => Outcome::BadRequest,
            _ => Outcome::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_gets_sixteen_random_hex_digits() {
        assert_eq!(&*request_id(Some(b"client-7:a.b_c")), "client-7:a.b_c");
        for refused in [&b""[..], b"has space", b"quote\"", &[b'x'; 65], "é".as_bytes()] {
            let id = request_id(Some(refused));
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
        }
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| request_id(None)).collect();
        assert_eq!(ids.len(), 1000, "random ids repeat");
        // Every digit position takes every value: the nibbles are all used, in order.
        for position in 0..16 {
            let seen: std::collections::HashSet<u8> = ids.iter().map(|id| id.as_bytes()[position]).collect();
            assert_eq!(seen.len(), 16, "position {position} saw {seen:?}");
        }
    }
}
