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
//! writes of an event commit together. Tables named `_wdo_*` are the host's.
//!
//! **Open files are bounded.** A database holds two descriptors (the file and its WAL: with exclusive locking
//! there is no -shm file).
//! The object directory keeps at most `max_open_objects` databases open and closes the least
//! recently used when it needs room; a closed object's database reopens on its next event.

mod db;
pub mod kv;
mod wit;

pub use db::{ObjectDb, object_db_path};

/// Limits applied to every storage call; a breach is an error the guest can handle.
#[derive(Debug, Clone, Copy)]
pub struct StorageLimits {
    pub max_value_size: usize,
    pub max_batch_keys: usize,
}
