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
    /// SQLite abandoned the statement or the whole transaction (disk full, out of memory, an
    /// interrupted statement, an I/O error): the event cannot go on.
    #[error("the database abandoned the event's transaction: {0}")]
    Lost(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DiskFull, OperationInterrupted, OutOfMemory};
        match e.sqlite_error_code() {
            // After these SQLite may have undone the statement or the whole transaction: the
            // event cannot go on as if only this call failed.
            Some(DiskFull) => StorageError::Lost(format!("the object's storage is full ({e})")),
            Some(OutOfMemory | OperationInterrupted) => StorageError::Lost(e.to_string()),
            _ => StorageError::Sqlite(e.to_string()),
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

#[cfg(test)]
mod tests {
    use super::StorageError;
    use rusqlite::ffi;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn a_full_disk_no_memory_or_an_interrupt_fail_the_event_and_other_errors_do_not() {
        for code in [ffi::SQLITE_FULL, ffi::SQLITE_NOMEM, ffi::SQLITE_INTERRUPT] {
            assert!(matches!(StorageError::from(failure(code)), StorageError::Lost(_)), "{code}");
        }
        assert!(
            matches!(StorageError::from(failure(ffi::SQLITE_FULL)), StorageError::Lost(m) if m.contains("storage is full"))
        );
        assert!(matches!(StorageError::from(failure(ffi::SQLITE_CONSTRAINT)), StorageError::Sqlite(_)));
    }
}
