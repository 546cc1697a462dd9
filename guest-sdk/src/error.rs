//! The SDK's error: a message and the HTTP status it answers with when `fetch` returns it.

use std::fmt;

/// An error with an HTTP status (500 unless said otherwise). Any `std::error::Error` converts
/// into it with `?`.
pub struct Error {
    status: u16,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Error { status, message: message.into() }
    }

    /// A 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(400, message)
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_response(self) -> crate::Response {
        crate::Response::text(format!("{}\n", self.message)).with_status(self.status)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        Error::new(500, error.to_string())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl Error {
    /// A host import's error, with the status that fits it.
    pub(crate) fn from_host(error: crate::bindings::wdo::object::types::Error) -> Self {
        use crate::bindings::wdo::object::types::Error as E;
        let (status, message) = match error {
            E::InvalidArgument(m) => (400, m),
            E::LimitExceeded(m) => (413, format!("limit exceeded: {m}")),
            E::NotAllowed(m) => (403, format!("not allowed: {m}")),
            E::Storage(m) => (500, m),
            E::Unsupported(m) => (501, m),
        };
        Error::new(status, message)
    }
}
