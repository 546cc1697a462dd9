//! The object's connection together with the guest's prepared statements.
//!
//! Guests run the same few statements over and over (an insert per row, a select per request),
//! so each statement is prepared once and kept, keyed by its text. rusqlite's own statement
//! cache (which the host's statements use) moves a statement out of its LRU and back in on
//! every use, hashing the text twice and allocating a key each time: ~0.1 µs per call, as much
//! as a third of SQLite's own work for a one-row insert. Here a statement stays in place and a
//! use costs one hash of the text.
//!
//! The statements borrow the connection, so both live in one self-referential cell: the
//! statements are dropped before the connection they came from.

use super::StorageResult;
use super::guard::Guard;
use super::sql::explain;
use lru::LruCache;
use rusqlite::{Connection, PrepFlags, Statement};
use std::cell::RefCell;
use std::num::NonZeroUsize;

/// Guest statements kept per database; the least recently used is finalized past this.
const GUEST_STATEMENTS: NonZeroUsize = NonZeroUsize::new(128).unwrap();

type GuestStatements<'conn> = RefCell<LruCache<Box<str>, Statement<'conn>>>;

self_cell::self_cell!(
    /// A connection and the guest statements prepared on it.
    pub struct ConnectionCell {
        owner: Connection,
        #[not_covariant]
        dependent: GuestStatements,
    }
);

// SAFETY: rusqlite's `Connection` is `Send`; a `Statement` is not only because it holds a raw
// pointer into that connection. The statements never leave the cell and move only together
// with their connection, which is the same reasoning behind rusqlite's `unsafe impl Send for
// StatementCache`.
unsafe impl Send for ConnectionCell {}

impl ConnectionCell {
    pub fn wrap(conn: Connection) -> ConnectionCell {
        // Unbounded, with the bound kept by `with_statement`: `LruCache::new` allocates a table
        // for all 128 up front (4.6 KiB), and most objects' connections never prepare one.
        ConnectionCell::new(conn, |_| RefCell::new(LruCache::unbounded()))
    }

    pub fn conn(&self) -> &Connection {
        self.borrow_owner()
    }

    /// Runs `f` with the prepared statement of `text`, preparing it under the SQL guard on first
    /// use. `f` must not ask for another guest statement (the cache is borrowed meanwhile).
    pub fn with_statement<T>(
        &self,
        text: &str,
        guard: &Guard,
        f: impl FnOnce(&mut Statement<'_>) -> StorageResult<T>,
    ) -> StorageResult<T> {
        self.with_dependent(|conn, statements| {
            let mut statements = statements.borrow_mut();
            if let Some(stmt) = statements.get_mut(text) {
                return f(stmt);
            }
            let (prepared, refused) =
                guard.enter(|| conn.prepare_with_flags(text, PrepFlags::SQLITE_PREPARE_PERSISTENT));
            if statements.len() >= GUEST_STATEMENTS.get() {
                statements.pop_lru();
            }
            statements.put(text.into(), prepared.map_err(|e| explain(e, refused))?);
            f(statements.get_mut(text).expect("inserted above"))
        })
    }

    /// Guest statements kept now.
    #[cfg(test)]
    pub fn guest_statements(&self) -> usize {
        self.with_dependent(|_, statements| statements.borrow().len())
    }
}
