//! The one error type of the library. Each variant names what went wrong in words a user can
//! act on, and maps to the HTTP status the gateway answers with.

use std::path::PathBuf;

/// Everything that can go wrong in the host, from a bad manifest to a trapping guest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest is missing or invalid.
    #[error("manifest {}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },

    /// A class's component cannot be used: not a component, another world, does not compile.
    #[error("class `{class}`: {message}")]
    Component { class: String, message: String },

    /// A class name or object name that the host refuses.
    #[error("{0}")]
    InvalidName(String),

    /// No class of that name is served.
    #[error("unknown class `{class}`; classes served: {}", list_or_none(known))]
    UnknownClass { class: String, known: Vec<String> },

    /// The request body is larger than the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },

    /// The guest failed while handling an event (trap, CPU limit, memory limit). Its writes in
    /// that event were rolled back and its instance was discarded.
    #[error("{object}: {reason}")]
    EventFailed { object: String, reason: String, outcome: crate::observe::Outcome },

    /// The client was too slow (a request body under the minimum rate).
    #[error("{0}")]
    Timeout(String),

    /// The host holds as much client input as it may; try again later.
    #[error("{0}")]
    Busy(String),

    /// The object's mailbox is full; try again later.
    #[error("{object} is overloaded: {queued} events are already waiting")]
    Overloaded { object: String, queued: usize },

    /// The event could not be made durable (or the host is stopping); nothing was acknowledged,
    /// so it is safe to retry.
    #[error("{object}: {reason}")]
    Unavailable { object: String, reason: String },

    /// An admin request without the right bearer token.
    #[error("the admin API needs `Authorization: Bearer <token>` with the host's admin token{0}")]
    Unauthorized(&'static str),

    /// A request the host understood but refuses as it stands (a bad upload, an unknown
    /// version, an incomplete deploy plan).
    #[error("{0}")]
    BadRequest(String),

    /// A deploy that would change more than it was allowed to (delete a class without
    /// `allow_delete`, rename onto an existing class).
    #[error("{0}")]
    Conflict(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Internal(String),

    /// In a cluster: an event was forwarded to a host that does not hold the object (`host`
    /// does, if known). The sender corrects its route and tries once more.
    #[error("{object} is held by another host ({host}) of the cluster")]
    Misdirected { object: String, host: String },

    /// An error another host of the cluster answered with, for an event forwarded to it.
    #[error("{message}")]
    Forwarded { status: u16, message: String },
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".to_string() } else { names.join(", ") }
}

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidName(_) | Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Conflict(_) => 409,
            // Only a component someone supplied is refused this way.
            Error::Component { .. } => 422,
            Error::UnknownClass { .. } => 404,
            Error::PayloadTooLarge { .. } => 413,
            Error::Timeout(_) => 408,
            Error::Overloaded { .. } | Error::Unavailable { .. } | Error::Busy(_) => 503,
            Error::Misdirected { .. } => 421,
            Error::Forwarded { status, .. } => *status,
            _ => 500,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
