//! Why a storage call failed.

/// An error of a key-value or SQL call. Every variant but `Lost` leaves the event's transaction
/// as it was before the call, so the guest can handle it and go on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StorageError {
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Sqlite(String),
    /// SQLite abandoned the whole transaction (disk full, I/O error): the event cannot go on.
    #[error("the database abandoned the event's transaction: {0}")]
    Lost(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Sqlite(e.to_string())
    }
}

pub type StorageResult<T> = Result<T, StorageError>;
