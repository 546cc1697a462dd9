//! The object's SQL database (SQLite), with typed rows.
//!
//! ```ignore
//! use wdo_sdk::{params, sql};
//!
//! #[derive(serde::Deserialize)]
//! struct Message { id: i64, text: String }
//!
//! sql::migrate(&["CREATE TABLE messages (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"])?;
//! sql::execute("INSERT INTO messages (text) VALUES (?1)", &params!["hello"])?;
//! let recent: Vec<Message> = sql::query("SELECT id, text FROM messages ORDER BY id DESC LIMIT ?1", &params![10])?;
//! ```
//!
//! Everything runs inside the current event's transaction; [`transaction`] nests a savepoint
//! that is rolled back when its closure returns an error.

use crate::bindings::wdo::object::{sql as wit, transaction as wit_tx};
use crate::{Error, Result};
use serde::de::DeserializeOwned;

pub use wit::{QueryResult, Value};

/// Builds a `Vec<Value>` of SQL parameters: `params![1, "text", None::<i64>, vec![0u8, 1]]`.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => { ::std::vec![$($crate::sql::Value::from($value)),*] };
}

macro_rules! value_from {
    ($($t:ty => $variant:ident as $as:ty),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(<$as>::from(v))
            }
        }
    )*};
}

value_from! {
    i64 => Integer as i64, i32 => Integer as i64, u32 => Integer as i64, i16 => Integer as i64,
    u16 => Integer as i64, i8 => Integer as i64, u8 => Integer as i64, bool => Integer as i64,
    f64 => Real as f64, f32 => Real as f64,
    String => Text as String, &str => Text as String, &String => Text as String,
    Vec<u8> => Blob as Vec<u8>, &[u8] => Blob as Vec<u8>,
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Runs one or more `;`-separated statements; `params` bind to the last.
pub fn exec(query: &str, params: &[Value]) -> Result<QueryResult> {
    wit::exec(query, params).map_err(Error::from_host)
}

/// Runs one statement once per entry of `rows` (each the parameters of one run) in a single
/// call: all runs or none stay. The fast way to insert or update many rows.
///
/// ```ignore
/// let rows: Vec<Vec<Value>> = names.iter().map(|n| params![*n]).collect();
/// sql::exec_many("INSERT INTO people (name) VALUES (?1)", &rows)?;
/// ```
pub fn exec_many(query: &str, rows: &[Vec<Value>]) -> Result<QueryResult> {
    wit::exec_many(query, rows).map_err(Error::from_host)
}

/// Runs statements for their effect and returns how many rows they inserted, updated or
/// deleted. Cheaper than [`exec`]: no columns or rows come back (rows a statement returns, as
/// with `RETURNING`, are dropped).
pub fn execute(query: &str, params: &[Value]) -> Result<u64> {
    Ok(wit::execute(query, params).map_err(Error::from_host)?.rows_written)
}

/// Runs a query and deserializes each row (a map from column name to value) into `T`.
pub fn query<T: DeserializeOwned>(query: &str, params: &[Value]) -> Result<Vec<T>> {
    let result = exec(query, params)?;
    result.rows.into_iter().map(|row| row_into(&result.columns, row)).collect()
}

/// The first row of a query, if any.
pub fn query_one<T: DeserializeOwned>(query: &str, params: &[Value]) -> Result<Option<T>> {
    let result = exec(query, params)?;
    result.rows.into_iter().next().map(|row| row_into(&result.columns, row)).transpose()
}

fn row_into<T: DeserializeOwned>(columns: &[String], row: Vec<Value>) -> Result<T> {
    let map = columns.iter().cloned().zip(row.into_iter().map(json_of)).collect::<serde_json::Map<_, _>>();
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| Error::new(500, format!("row does not fit: {e}")))
}

fn json_of(value: Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => i.into(),
        Value::Real(r) => serde_json::Number::from_f64(r).map_or(serde_json::Value::Null, Into::into),
        Value::Text(t) => t.into(),
        Value::Blob(b) => b.into(),
    }
}

/// Size of the object's database in bytes.
pub fn database_size() -> Result<u64> {
    wit::database_size().map_err(Error::from_host)
}

/// Brings the schema up to date: runs `migrations[v..]` where `v` is the database's
/// `PRAGMA user_version`, then sets it to `migrations.len()`, all or nothing. Returns the number
/// of migrations applied. Append new migrations; never edit applied ones.
pub fn migrate(migrations: &[&str]) -> Result<usize> {
    let current: i64 = query_one::<serde_json::Value>("PRAGMA user_version", &[])?
        .and_then(|row| row.get("user_version").and_then(serde_json::Value::as_i64))
        .unwrap_or(0);
    let current = usize::try_from(current).unwrap_or(0);
    if current >= migrations.len() {
        return Ok(0);
    }
    transaction(|_| {
        for migration in &migrations[current..] {
            exec(migration, &[])?;
        }
        exec(&format!("PRAGMA user_version = {}", migrations.len()), &[])?;
        Ok(migrations.len() - current)
    })
}

/// A nested transaction (savepoint) inside the current event; see [`transaction`].
pub struct Transaction {
    _private: (),
}

impl Transaction {
    pub fn exec(&self, query: &str, params: &[Value]) -> Result<QueryResult> {
        exec(query, params)
    }
    pub fn execute(&self, query: &str, params: &[Value]) -> Result<u64> {
        execute(query, params)
    }
    pub fn query<T: DeserializeOwned>(&self, query: &str, params: &[Value]) -> Result<Vec<T>> {
        self::query(query, params)
    }
    pub fn query_one<T: DeserializeOwned>(&self, query: &str, params: &[Value]) -> Result<Option<T>> {
        self::query_one(query, params)
    }
}

/// Runs `f` in a savepoint: its SQL and key-value writes are kept if it returns `Ok`, and rolled
/// back if it returns `Err` (the error is passed on). They still commit only with the event.
pub fn transaction<T>(f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
    let savepoint = wit_tx::savepoint().map_err(Error::from_host)?;
    match f(&Transaction { _private: () }) {
        Ok(value) => {
            wit_tx::release(savepoint).map_err(Error::from_host)?;
            Ok(value)
        }
        Err(error) => {
            wit_tx::rollback(savepoint).map_err(Error::from_host)?;
            Err(error)
        }
    }
}
