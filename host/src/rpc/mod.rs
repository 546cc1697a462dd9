//! Calls between objects.
//!
//! # Design
//!
//! An object reaches another through the `objects` import: `call(class, id, method, args)` and
//! `fetch(class, id, request)` send an event to the callee's mailbox and wait for its reply, so a
//! call is an event of the callee, serialized with its other events, and commits on its own.
//! The caller's event stays open meanwhile; if the caller later fails, its own writes roll back
//! but the callee's committed call stands.
//!
//! **No deadlocks.** Every event carries the chain of objects that are waiting on it. A call to
//! an object already in the chain (A calls B calls A, or A calls itself) would wait forever for
//! a mailbox that cannot move, so it fails at once with a "re-entrant call" error naming the
//! cycle; a chain deeper than `MAX_DEPTH` fails too.
//!
//! **Overload** is immediate: a full mailbox answers `overloaded` (and 503 over HTTP) instead of
//! queueing the caller.

mod wit;

/// Objects that may wait on one another in one chain of calls.
pub const MAX_DEPTH: usize = 16;
