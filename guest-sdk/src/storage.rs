//! Key-value storage in the object's own database, with values stored as JSON.
//!
//! Every write belongs to the current event's transaction: it commits when the handler returns,
//! and is rolled back if the handler panics (or inside a failed [`crate::sql::transaction`]).

use crate::bindings::wdo::object::storage as wit;
use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| crate::Error::new(500, format!("stored value of `{key}` does not decode: {e}")))
}

/// The value stored under `key`, if any.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    match wit::get(key).map_err(Error::from_host)? {
        Some(bytes) => Ok(Some(decode(key, &bytes)?)),
        None => Ok(None),
    }
}

/// Stores `value` under `key`.
pub fn put<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    wit::put(key, &serde_json::to_vec(value)?).map_err(Error::from_host)
}

/// Removes `key`; true when it existed.
pub fn delete(key: &str) -> Result<bool> {
    wit::delete(key).map_err(Error::from_host)
}

/// The keys that exist among `keys`, with their values, in the order asked.
pub fn get_many<T: DeserializeOwned>(keys: &[&str]) -> Result<Vec<(String, T)>> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    wit::get_many(&keys).map_err(Error::from_host)?.into_iter().map(|(k, v)| Ok((k.clone(), decode(&k, &v)?))).collect()
}

/// Stores several entries at once (all or none).
pub fn put_many<T: Serialize>(entries: &[(&str, T)]) -> Result<()> {
    let entries =
        entries.iter().map(|(k, v)| Ok((k.to_string(), serde_json::to_vec(v)?))).collect::<Result<Vec<_>>>()?;
    wit::put_many(&entries).map_err(Error::from_host)
}

/// Removes several keys; returns how many existed.
pub fn delete_many(keys: &[&str]) -> Result<u32> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    wit::delete_many(&keys).map_err(Error::from_host)
}

/// Empties the object: every key, every table, index, view and trigger its SQL made, and its
/// alarm (in the current event's transaction).
pub fn delete_all() -> Result<()> {
    wit::delete_all().map_err(Error::from_host)
}

/// A bookmark for the object's state now (every commit so far, none of the current event's
/// writes), for [`restore_on_next_session`]. Needs the host's backup store (`--backup`).
pub fn current_bookmark() -> Result<String> {
    wit::current_bookmark().map_err(Error::from_host)
}

/// A bookmark for the object's state at `ms` (milliseconds since the Unix epoch), within the
/// backup's retention.
pub fn bookmark_for_time(ms: u64) -> Result<String> {
    wit::bookmark_for_time(ms).map_err(Error::from_host)
}

/// When the object's next session starts (a new instance), its storage comes back exactly as it
/// was at `bookmark`. Returns a bookmark for the state before the current event, which undoes it.
pub fn restore_on_next_session(bookmark: &str) -> Result<String> {
    wit::restore_on_next_session(bookmark).map_err(Error::from_host)
}

/// Which entries `list` returns: build it with the methods, e.g. `List::new().prefix("msg:").limit(10)`.
#[derive(Clone)]
pub struct List(wit::ListOptions);

impl Default for List {
    fn default() -> Self {
        List(wit::ListOptions { prefix: None, start: None, start_after: None, end: None, reverse: false, limit: None })
    }
}

impl List {
    pub fn new() -> Self {
        List::default()
    }
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.0.prefix = Some(prefix.into());
        self
    }
    /// Keys >= `start`.
    pub fn start(mut self, start: &str) -> Self {
        self.0.start = Some(start.into());
        self
    }
    /// Keys > `key`.
    pub fn start_after(mut self, key: &str) -> Self {
        self.0.start_after = Some(key.into());
        self
    }
    /// Keys < `end`.
    pub fn end(mut self, end: &str) -> Self {
        self.0.end = Some(end.into());
        self
    }
    pub fn reverse(mut self) -> Self {
        self.0.reverse = true;
        self
    }
    pub fn limit(mut self, limit: u32) -> Self {
        self.0.limit = Some(limit);
        self
    }
}

/// Entries in key order (or reverse order), as chosen by `options`.
pub fn list<T: DeserializeOwned>(options: List) -> Result<Vec<(String, T)>> {
    wit::list_entries(&options.0)
        .map_err(Error::from_host)?
        .into_iter()
        .map(|(k, v)| Ok((k.clone(), decode(&k, &v)?)))
        .collect()
}

/// Raw byte access, for values that are not JSON.
pub mod raw {
    use super::wit;
    use crate::{Error, Result};

    pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
        wit::get(key).map_err(Error::from_host)
    }

    pub fn put(key: &str, value: &[u8]) -> Result<()> {
        wit::put(key, value).map_err(Error::from_host)
    }
}
