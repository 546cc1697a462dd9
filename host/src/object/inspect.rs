//! The inspector: what an operator may read of an object (`wdo inspect`, `wdo kv`, `wdo sql`,
//! the dashboard), asked as an event of the object. It runs in the object's order like any
//! other event, inside the batch's transaction, so it sees what is committed and never a
//! half-done event; no guest code runs and nothing is written.
//!
//! SQL is read-only: a statement SQLite says may write, or that is not a query (`SELECT`,
//! `WITH`, `VALUES`, `EXPLAIN`), is refused before it runs. It runs under the guest's own
//! guard (the host's tables stay out of reach, transactions are refused), its CPU time is
//! bounded by `--cpu-limit` and its answer by `--max-result-size` and [`MAX_ROWS`].

use crate::cpu::CpuMeter;
use crate::storage::{ObjectDb, StorageLimits, kv};
use rusqlite::types::ValueRef;
use serde_json::{Value, json};
use std::sync::Arc;

/// Rows one inspector query answers at most (the rest are counted, not sent).
pub const MAX_ROWS: usize = 1000;
/// Keys one listing answers at most.
pub const MAX_KEYS: u32 = 1000;

/// What an operator asks of an object.
#[derive(Debug, Clone)]
pub enum Inspect {
    /// Its storage at a glance: database size, alarm, key count, tables.
    Summary,
    /// Its key-value pairs in key order, from after `start_after`, at most `limit`.
    Keys { prefix: Option<String>, start_after: Option<String>, limit: u32 },
    /// One read-only SQL statement.
    Sql { query: String },
}

/// Runs `ask` on the object's open database, inside its batch's transaction.
pub fn run(
    db: &ObjectDb,
    limits: &StorageLimits,
    cpu_limit: std::time::Duration,
    ask: &Inspect,
) -> Result<Value, String> {
    let meter = Arc::new(CpuMeter::new(cpu_limit));
    db.attach_cpu(meter);
    let result = db.guest_call(|| match ask {
        Inspect::Summary => summary(db),
        Inspect::Keys { prefix, start_after, limit } => keys(db, limits, prefix, start_after, *limit),
        Inspect::Sql { query } => sql(db, limits, query),
    });
    db.detach_cpu();
    result
}

fn summary(db: &ObjectDb) -> Result<Value, String> {
    let conn = db.conn();
    let count = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).map_err(|e| e.to_string());
    let keys = count("SELECT count(*) FROM _wdo_kv")?;
    let mut tables = Vec::new();
    let mut statement = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE '\\_wdo\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
        .map_err(|e| e.to_string())?;
    let names = statement.query_map([], |row| row.get::<_, String>(0)).map_err(|e| e.to_string())?;
    for name in names {
        let name = name.map_err(|e| e.to_string())?;
        let rows = count(&format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\"")))?;
        tables.push(json!({ "name": name, "rows": rows }));
    }
    Ok(json!({
        "database_bytes": db.size().map_err(|e| e.to_string())?,
        "alarm_ms": db.alarm().map_err(|e| e.to_string())?,
        "keys": keys,
        "tables": tables,
    }))
}

fn keys(
    db: &ObjectDb,
    limits: &StorageLimits,
    prefix: &Option<String>,
    start_after: &Option<String>,
    limit: u32,
) -> Result<Value, String> {
    let limit = limit.clamp(1, MAX_KEYS);
    let options = kv::ListOptions {
        prefix: prefix.clone(),
        start_after: start_after.clone(),
        // One more than asked: whether there are more to page to.
        limit: Some(limit + 1),
        ..kv::ListOptions::default()
    };
    let mut entries = kv::list(db.conn(), limits, &options).map_err(|e| e.to_string())?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let entries: Vec<Value> =
        entries.into_iter().map(|(key, value)| json!({ "key": key, "value": shown(&value) })).collect();
    Ok(json!({ "keys": entries, "more": more }))
}

/// A stored value as JSON: the JSON it holds, else its text, else its bytes in hex.
fn shown(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string())),
        Err(_) => json!({ "hex": hex::encode(bytes) }),
    }
}

/// Refuses what may write; answers columns and rows (at most [`MAX_ROWS`]).
fn sql(db: &ObjectDb, limits: &StorageLimits, query: &str) -> Result<Value, String> {
    if query.len() > limits.max_sql_length {
        return Err(format!("the SQL is {} bytes; the limit is {}", query.len(), limits.max_sql_length));
    }
    let first = query.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("").to_ascii_uppercase();
    if !["SELECT", "WITH", "VALUES", "EXPLAIN"].contains(&first.as_str()) {
        return Err(format!(
            "refused: the inspector runs read-only queries (SELECT, WITH, VALUES, EXPLAIN), not `{}`",
            if first.is_empty() { query.trim() } else { &first }
        ));
    }
    let (result, refused) = db.guard().enter(|| -> Result<Value, String> {
        let mut statement = db.conn().prepare(query).map_err(|e| e.to_string())?;
        if !statement.readonly() {
            return Err("refused: this statement writes; the inspector runs read-only queries".into());
        }
        let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
        let mut rows = statement.raw_query();
        let (mut kept, mut more, mut size) = (Vec::new(), false, 0usize);
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            if kept.len() >= MAX_ROWS {
                more = true;
                break;
            }
            let values: Vec<Value> = (0..columns.len())
                .map(|i| {
                    let value = row.get_ref(i).map_err(|e| e.to_string())?;
                    size += match value {
                        ValueRef::Text(b) | ValueRef::Blob(b) => b.len(),
                        _ => 8,
                    };
                    Ok(match value {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(n) => json!(n),
                        ValueRef::Real(x) => json!(x),
                        ValueRef::Text(text) => Value::String(String::from_utf8_lossy(text).into_owned()),
                        ValueRef::Blob(bytes) => json!({ "hex": hex::encode(bytes) }),
                    })
                })
                .collect::<Result<_, String>>()?;
            if size > limits.max_result_size {
                return Err(format!(
                    "the result is over the limit of {} bytes; ask for fewer rows (LIMIT) or smaller values",
                    limits.max_result_size
                ));
            }
            kept.push(Value::Array(values));
        }
        Ok(json!({ "columns": columns, "rows": kept, "more_rows": more }))
    });
    match (result, refused) {
        (Err(_), Some(reason)) => Err(format!("refused: {reason}")),
        (result, _) => result,
    }
}
