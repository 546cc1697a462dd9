//! The WIT `storage` and `sql` imports, on the database lent to the current event.

use super::kv::{self, KvError, ListOptions};
use crate::bindings::WitError;
use crate::bindings::wdo::object::{sql, storage, transaction};
use crate::object::HostState;

type Call<T> = wasmtime::Result<Result<T, WitError>>;

impl From<KvError> for WitError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::LimitExceeded(m) => WitError::LimitExceeded(m),
            KvError::InvalidArgument(m) => WitError::InvalidArgument(m),
            KvError::Sqlite(m) => WitError::Storage(m),
        }
    }
}

impl HostState {
    fn kv<T>(&mut self, op: impl FnOnce(&rusqlite::Connection, &super::StorageLimits) -> kv::KvResult<T>) -> Call<T> {
        let limits = self.storage_limits;
        let db = self.db()?;
        Ok(op(db.conn(), &limits).map_err(WitError::from))
    }
}

impl storage::Host for HostState {
    fn get(&mut self, key: String) -> Call<Option<Vec<u8>>> {
        self.kv(|c, _| kv::get(c, &key))
    }

    fn get_many(&mut self, keys: Vec<String>) -> Call<Vec<storage::Entry>> {
        self.kv(|c, l| kv::get_many(c, l, &keys))
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> Call<()> {
        self.kv(|c, l| kv::put(c, l, &key, &value))
    }

    fn put_many(&mut self, entries: Vec<storage::Entry>) -> Call<()> {
        self.kv(|c, l| kv::put_many(c, l, &entries))
    }

    fn delete(&mut self, key: String) -> Call<bool> {
        self.kv(|c, _| kv::delete(c, &key))
    }

    fn delete_many(&mut self, keys: Vec<String>) -> Call<u32> {
        self.kv(|c, l| kv::delete_many(c, l, &keys))
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
        self.kv(|c, _| kv::list(c, &options))
    }

    fn delete_all(&mut self) -> Call<()> {
        self.kv(|c, _| kv::delete_all(c))
    }
}

fn not_yet<T>(what: &str) -> Call<T> {
    Ok(Err(WitError::Unsupported(format!("{what} is not available in this version of the host"))))
}

impl sql::Host for HostState {
    fn exec(&mut self, _query: String, _params: Vec<sql::Value>) -> Call<sql::QueryResult> {
        not_yet("sql.exec")
    }

    fn database_size(&mut self) -> Call<u64> {
        not_yet("sql.database-size")
    }
}

impl transaction::Host for HostState {
    fn savepoint(&mut self) -> Call<u32> {
        not_yet("transaction.savepoint")
    }

    fn release(&mut self, _savepoint: u32) -> Call<()> {
        not_yet("transaction.release")
    }

    fn rollback(&mut self, _savepoint: u32) -> Call<()> {
        not_yet("transaction.rollback")
    }
}
