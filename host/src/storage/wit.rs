//! The WIT `storage`, `sql` and `transaction` imports, on the database lent to the current event.
//!
//! A `Lost` error (SQLite abandoned the transaction) traps the guest: the event cannot go on,
//! and nothing it did may be acknowledged.

use super::kv::{self, ListOptions};
use super::sql::{self, Output};
use super::{ObjectDb, StorageError, StorageLimits, StorageResult};
use crate::bindings::WitError;
use crate::bindings::wdo::object::{sql as wit_sql, storage, transaction};
use crate::object::HostState;

type Call<T> = wasmtime::Result<Result<T, WitError>>;

fn answer<T>(result: StorageResult<T>) -> Call<T> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(StorageError::Lost(reason)) => Err(wasmtime::format_err!("the event cannot go on: {reason}")),
        Err(StorageError::LimitExceeded(m)) => Ok(Err(WitError::LimitExceeded(m))),
        Err(StorageError::InvalidArgument(m)) => Ok(Err(WitError::InvalidArgument(m))),
        Err(StorageError::NotAllowed(m)) => Ok(Err(WitError::NotAllowed(m))),
        Err(StorageError::Sqlite(m)) => Ok(Err(WitError::Storage(m))),
    }
}

impl HostState {
    /// Runs a storage operation on the event's database, turning its error into the guest's.
    pub(crate) fn storage<T>(&mut self, op: impl FnOnce(&ObjectDb, &StorageLimits) -> StorageResult<T>) -> Call<T> {
        let limits = self.storage_limits;
        let db = self.db()?;
        let result = db.guest_call(|| op(db, &limits));
        // Out of time or memory, SQLite failed the call (interrupted, NOMEM): say which limit.
        if self.cpu_exceeded() {
            return Err(wasmtime::Error::new(crate::cpu::CpuLimitExceeded));
        }
        if db.heap().exceeded() {
            return Err(wasmtime::Error::new(SqlMemoryExceeded { limit: db.heap().limit() }));
        }
        answer(result)
    }
}

impl HostState {
    /// The backup store bookmarks come from.
    fn bookmarks(&mut self) -> Result<std::sync::Arc<crate::backup::Backup>, WitError> {
        let db = self.db().map_err(|e| WitError::NotAllowed(e.to_string()))?;
        db.backup().ok_or_else(|| {
            WitError::NotAllowed("bookmarks need the host's backup store (`wdo serve --backup URL`)".into())
        })
    }
}

/// `ms` if the backup's history reaches it: not in the future, not past the retention.
fn within_history(backup: &crate::backup::Backup, ms: u64) -> Result<u64, WitError> {
    let now = crate::backup::now_ms();
    let earliest = now.saturating_sub(backup.retention().as_millis() as u64);
    if ms > now {
        return Err(WitError::InvalidArgument(format!("{ms} is in the future (now is {now})")));
    }
    if ms < earliest {
        return Err(WitError::InvalidArgument(format!(
            "{ms} is older than the backup's history (--backup-retention {})",
            humantime::format_duration(backup.retention())
        )));
    }
    Ok(ms)
}

impl storage::Host for HostState {
    fn get(&mut self, key: String) -> Call<Option<Vec<u8>>> {
        self.storage(|db, _| kv::get(db.conn(), &key))
    }

    fn get_many(&mut self, keys: Vec<String>) -> Call<Vec<storage::Entry>> {
        self.storage(|db, l| kv::get_many(db.conn(), l, &keys))
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> Call<()> {
        self.storage(|db, l| db.write_statement(|| kv::put(db.conn(), l, &key, &value)))
    }

    fn put_many(&mut self, entries: Vec<storage::Entry>) -> Call<()> {
        self.storage(|db, l| db.write_call(|| kv::put_many(db.conn(), l, &entries)))
    }

    fn delete(&mut self, key: String) -> Call<bool> {
        self.storage(|db, _| kv::delete(db.conn(), &key))
    }

    fn delete_many(&mut self, keys: Vec<String>) -> Call<u32> {
        self.storage(|db, l| kv::delete_many(db.conn(), l, &keys))
    }

    fn list_entries(&mut self, o: storage::ListOptions) -> Call<Vec<storage::Entry>> {
        let options = ListOptions {
            prefix: o.prefix,
            start: o.start,
            start_after: o.start_after,
            end: o.end,
            reverse: o.reverse,
            limit: o.limit,
        };
        let entries = self.storage(|db, l| kv::list(db.conn(), l, &options))?;
        Ok(entries.and_then(|entries| {
            let bytes = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
            self.result_fits(bytes).map(|()| entries).map_err(WitError::LimitExceeded)
        }))
    }

    fn delete_all(&mut self) -> Call<()> {
        // Everything the object stored: its key-value data, its SQL tables, its alarm.
        self.alarm_touched = true;
        self.storage(|db, _| db.write_call(|| super::delete_everything(db)))
    }

    fn current_bookmark(&mut self) -> Call<String> {
        Ok(self.bookmarks().map(|backup| crate::backup::bookmark(backup.bookmark_now())))
    }

    fn bookmark_for_time(&mut self, ms: u64) -> Call<String> {
        Ok(self.bookmarks().and_then(|backup| within_history(&backup, ms)).map(crate::backup::bookmark))
    }

    fn restore_on_next_session(&mut self, bookmark: String) -> Call<String> {
        let backup = match self.bookmarks() {
            Ok(backup) => backup,
            Err(e) => return Ok(Err(e)),
        };
        let Some(at_ms) = crate::backup::bookmark_time(&bookmark) else {
            return Ok(Err(WitError::InvalidArgument(format!("`{bookmark}` is not a bookmark"))));
        };
        if let Err(e) = within_history(&backup, at_ms) {
            return Ok(Err(e));
        }
        let asked = self.storage(|db, _| db.write_statement(|| Ok(db.ask_restore(Some(at_ms))?)))?;
        if asked.is_ok() {
            self.restore_asked = Some(at_ms);
        }
        // The state before this event: restoring to it undoes the restore (and asks nothing).
        Ok(asked.map(|()| crate::backup::bookmark(backup.bookmark_now())))
    }
}

impl wit_sql::Host for HostState {
    fn exec(&mut self, query: String, params: Vec<wit_sql::Value>) -> Call<wit_sql::QueryResult> {
        let result = self.storage(|db, l| sql::exec(db, l, &query, &params, Output::Rows))?;
        Ok(result.and_then(|rows| self.fitting(rows)))
    }

    fn execute(&mut self, query: String, params: Vec<wit_sql::Value>) -> Call<wit_sql::Counts> {
        self.storage(|db, l| sql::exec(db, l, &query, &params, Output::Counts))
            .map(|r| r.map(|done| wit_sql::Counts { rows_read: done.rows_read, rows_written: done.rows_written }))
    }

    fn exec_many(&mut self, query: String, rows: Vec<Vec<wit_sql::Value>>) -> Call<wit_sql::QueryResult> {
        let result = self.storage(|db, l| sql::exec_many(db, l, &query, &rows))?;
        Ok(result.and_then(|rows| self.fitting(rows)))
    }

    fn database_size(&mut self) -> Call<u64> {
        self.storage(|db, _| Ok(db.size()?))
    }
}

/// The error an event is stopped with when its SQL needs more memory than the object may use.
#[derive(Debug)]
pub struct SqlMemoryExceeded {
    pub limit: usize,
}

impl std::fmt::Display for SqlMemoryExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped: the event's SQL needed more than the SQL memory limit of {} MiB", self.limit >> 20)
    }
}

impl std::error::Error for SqlMemoryExceeded {}

impl HostState {
    /// A query's result, if it fits in the instance's memory as it stands (it is copied into
    /// the guest's memory next).
    fn fitting(&self, result: sql::QueryResult) -> Result<wit_sql::QueryResult, WitError> {
        self.result_fits(result.bytes).map_err(WitError::LimitExceeded)?;
        Ok(into_wit(result))
    }
}

fn into_wit(result: sql::QueryResult) -> wit_sql::QueryResult {
    wit_sql::QueryResult {
        columns: result.columns,
        rows: result.rows,
        rows_read: result.rows_read,
        rows_written: result.rows_written,
    }
}

impl transaction::Host for HostState {
    fn savepoint(&mut self) -> Call<u32> {
        self.storage(|db, _| db.savepoint())
    }

    fn release(&mut self, savepoint: u32) -> Call<()> {
        self.storage(|db, _| db.end_savepoint(savepoint, true))
    }

    fn rollback(&mut self, savepoint: u32) -> Call<()> {
        self.storage(|db, _| db.end_savepoint(savepoint, false))
    }
}
