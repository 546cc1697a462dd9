//! Storage: one SQLite database per object.
//!
//! # Design
//!
//! Each object owns the file `<data>/objects/<class>/<id[..2]>/<id>.sqlite` (WAL mode) and one
//! connection to it, held by its actor (see `object/`). Nobody else opens it, so there is never
//! lock contention and every read sees the object's own latest writes.
//!
//! **An event is a transaction.** The actor opens a transaction around each batch of queued
//! events and a savepoint around each event in it; an event that fails rolls back to its
//! savepoint, one that succeeds releases it. The batch commits once (group commit: one WAL
//! append, and with `--durability full` one fsync, for many events) and only then are the
//! replies released (the output gate). A reply is never sent for a write that is not durable.
//!
//! **Key-value data** lives in the table `_wdo_kv` of the same database, so key-value and SQL
//! writes of an event commit together. Tables named `_wdo_*` are the host's: the SQL guard
//! (SQLite's authorizer, `guard.rs`) keeps guest SQL away from them, and refuses whatever would
//! escape the database or break the event's transaction (BEGIN, ATTACH, most PRAGMAs, ...).
//!
//! **Limits are checked per call.** A guest write call that can fail halfway (several
//! statements, a key-value or `exec-many` batch) runs inside its own savepoint: if it fails, or
//! leaves the database larger than the object's quota, it is rolled back to that savepoint and the
//! guest gets an error it can handle, with the rest of the event intact. A single statement needs
//! no savepoint to fail cleanly (SQLite undoes a failed statement itself), so far from the quota
//! it runs bare; within a margin (64 MiB) of the quota it gets the savepoint too. A statement that
//! alone adds more than that margin and crosses the quota cannot be undone by itself and fails the
//! event instead. (SQLite's own `max_page_count` sits the same margin above the quota only as a
//! backstop: hitting it can make SQLite abandon the whole transaction, which fails the event.)
//! Guest savepoints (`transaction` interface) nest inside the event's savepoint.
//!
//! **The size check is a bound first.** Reading the exact size costs a re-prepared
//! `PRAGMA page_count` (~0.6 µs). A page added since the last exact read is either in the page
//! cache or was written to the WAL since (SQLite counts both), so after each write call the
//! database bounds its page count by the exact count plus those two, and reads the exact count
//! again only when the bound nears the quota. The bound grows only with the pages written. At
//! open the count starts from the files' sizes (the database's pages plus one per frame the
//! WAL has room for), so a connection that stays far from its quota never reads it exactly.
//!
//! **SQL is bounded like guest code.** Time SQLite spends for a guest call counts against the
//! event's CPU limit, and a long call leaves the async worker it started on (`clock.rs`); the
//! memory SQLite allocates for one object's guest calls has a limit of its own (`heap.rs`);
//! a string, blob or row is at most the key-value value size (`SQLITE_LIMIT_LENGTH`), and a
//! call returns at most `max_result_size` bytes. `SQLITE_FULL`, `SQLITE_NOMEM` and an
//! interrupted statement fail the event: SQLite may have given up on part of the transaction.
//!
//! **Checkpoints and fsyncs leave the async threads.** SQLite's own automatic checkpoint would
//! run inside a commit, with its fsyncs, on whichever tokio worker the actor runs on. Instead the
//! database counts the WAL's frames as it commits (a WAL hook) and the actor runs the checkpoint
//! once the WAL passes `db::CHECKPOINT_WAL_BYTES`, through [`off_the_async_worker`]; so does a
//! close that must checkpoint a long WAL. Full-durability commits run on the blocking pool.
//!
//! **Open connections and open files are bounded apart.** A connection is worth keeping (its
//! parsed schema and prepared statements; making one again was over half of the host's CPU
//! with traffic spread over many objects), and costs memory, ~90 KiB for a small database with 1 KiB pages.
//! The object directory keeps at most `max_open_objects` connections and closes the least
//! recently used when it needs room; a closed object's database reopens on its next event.
//! Files are the scarcer thing: a database holds two descriptors (the file and its WAL: with
//! exclusive locking there is no -shm file). The VFS object databases open through
//! (`vfs.rs`) keeps at most a budget of files open, parking the least recently used ones (their
//! connections stay) and reopening a parked file on its next access.
//!
//! **An object that never wrote has no file.** The VFS opens a missing database as *unborn*
//! (`unborn.rs`): its reads come from a template of an empty database, and its first write makes
//! the file, so a read-only first touch creates nothing and a new object costs one `pwrite`
//! instead of SQLite creating a database through a journal.
//!
//! **Pages are 1 KiB** in a new database ([`PAGE_SIZE`]): an event writes a WAL frame per page it
//! changed, and events are small. A database keeps the page size it was made with.

mod clock;
mod db;
mod error;
mod frames;
mod guard;
pub mod heap;
mod held;
pub mod kv;
mod parking;
pub mod sql;
mod statements;
mod unborn;
pub mod vfs;
mod wit;

pub use db::{
    FRAME_HEADER, ObjectDb, PAGE_SIZE, WAL_HEADER, alarm_of, object_db_path, put_database, replace_database,
    serialize_closed,
};
pub use error::{StorageError, StorageResult};
pub use wit::SqlMemoryExceeded;

/// Limits applied to every storage call; a breach is an error the guest can handle, and
/// nothing of the failed call is written.
#[derive(Debug, Clone, Copy)]
pub struct StorageLimits {
    /// Largest key + value of one key-value entry.
    pub max_value_size: usize,
    /// Most keys in one batch call.
    pub max_batch_keys: usize,
    /// Largest database of one object, in bytes.
    pub max_storage: u64,
    /// Longest SQL text of one `exec`, in bytes.
    pub max_sql_length: usize,
    /// Most bound parameters of one `exec` (and of each run of `exec-many`).
    pub max_sql_params: usize,
    /// Most runs of one `exec-many`.
    pub max_sql_batch_rows: usize,
    /// Memory SQLite may hold for one object's guest calls (statements, page cache, sorts and
    /// temporary tables); past it the event fails.
    pub max_sql_memory: usize,
    /// Largest result one storage call returns (rows of `exec`, entries of `list`).
    pub max_result_size: usize,
}

impl Default for StorageLimits {
    /// The hosted service's numbers.
    fn default() -> Self {
        StorageLimits {
            max_value_size: 2 << 20,
            max_batch_keys: 128,
            max_storage: 1 << 30,
            max_sql_length: 100_000,
            max_sql_params: 100,
            max_sql_batch_rows: 10_000,
            max_sql_memory: 64 << 20,
            max_result_size: 32 << 20,
        }
    }
}

/// Runs blocking work (an fsync, a checkpoint, a long SQLite call) so that the tokio worker this
/// thread runs goes on with its other tasks on a fresh thread meanwhile. Outside a multi-threaded
/// runtime (a test, the blocking pool), it simply runs.
/// What `storage.delete-all` removes, inside the current transaction: the key-value data, every
/// table, view and trigger the object's SQL made, and the alarm: an empty object.
pub(crate) fn delete_everything(db: &ObjectDb) -> StorageResult<()> {
    kv::delete_all(db.conn())?;
    kv::drop_sql_schema(db.conn())?;
    Ok(db.set_alarm(None)?)
}

pub(crate) fn off_the_async_worker<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}
