//! `sql.exec` and `sql.execute`: guest SQL on the object's own database, under the guard and
//! the limits. `execute` is `exec` without the rows ([`Output::Counts`]): the result it lowers
//! into the guest holds no lists, which makes it the cheaper call for writes.
//!
//! Statements are prepared once per database and kept (`statements.rs`), so repeated queries
//! skip parsing. A string of several statements runs them in order; parameters bind to the last.
//! A call of several statements that may write runs in its own savepoint
//! (`ObjectDb::write_call`): if any statement fails, or the database outgrows its quota, none of
//! the call's writes remain. A single statement is already undone by SQLite when it fails, so it
//! needs that savepoint only near the quota (`ObjectDb::write_statement`).

use super::{ObjectDb, StorageError, StorageLimits, StorageResult};
use rusqlite::types::ValueRef;
use rusqlite::{Statement, StatementStatus};

/// A bound text or blob larger than this is released after the run rather than kept with the
/// cached statement until its next run.
const LARGE_BINDING: usize = 4096;

/// A SQL value: the WIT's own type, so a call's parameters reach SQLite without a copy.
pub use crate::bindings::wdo::object::sql::Value;

#[derive(Debug, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// Rows the statements visited: what full scans stepped over, or what they returned if more.
    pub rows_read: u64,
    /// Rows inserted, updated or deleted.
    pub rows_written: u64,
    /// Bytes the rows take (as `value_size` counts them), for the callers' memory checks.
    pub bytes: usize,
}

/// What a call gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The columns and rows of the last statement, and the counts.
    Rows,
    /// Only the counts (`rows_read`, `rows_written`); returned rows are stepped over.
    Counts,
}

/// Runs `query` with `params` bound to its last statement.
pub fn exec(
    db: &ObjectDb,
    limits: &StorageLimits,
    query: &str,
    params: &[Value],
    output: Output,
) -> StorageResult<QueryResult> {
    check_length(limits, query)?;
    check_params(limits, params.len(), "")?;
    if let Some(statements) = several_statements(query) {
        return db.write_call(|| run_batch(db, &statements, params, output));
    }
    db.with_guest_statement(query, |stmt| {
        if stmt.readonly() {
            run_last(db, stmt, params, output)
        } else {
            db.write_statement(|| run_last(db, stmt, params, output))
        }
    })
}

/// Runs one statement once per entry of `rows`, in one write call: all the runs or none of them
/// stay, with one savepoint and one quota check for the lot.
pub fn exec_many(
    db: &ObjectDb,
    limits: &StorageLimits,
    query: &str,
    rows: &[Vec<Value>],
) -> StorageResult<QueryResult> {
    check_length(limits, query)?;
    if rows.len() > limits.max_sql_batch_rows {
        return Err(StorageError::LimitExceeded(format!(
            "{} runs in one exec-many; the limit is {}",
            rows.len(),
            limits.max_sql_batch_rows
        )));
    }
    for row in rows {
        check_params(limits, row.len(), " in one run")?;
    }
    if several_statements(query).is_some() {
        return Err(StorageError::InvalidArgument("exec-many runs a single statement; use exec for several".into()));
    }
    db.with_guest_statement(query, |stmt| {
        let expected = stmt.parameter_count();
        if let Some(row) = rows.iter().find(|row| row.len() != expected) {
            return Err(StorageError::InvalidArgument(format!(
                "the statement takes {expected} parameters but a run gives {}",
                row.len()
            )));
        }
        let result = db.write_call(|| {
            let conn = db.conn();
            let changes_before = conn.total_changes();
            let mut returned = 0u64;
            // One guarded loop: bind, step to the end, next run (no rows are collected).
            let (result, refused) = db.guard().enter(|| -> rusqlite::Result<()> {
                for row in rows {
                    bind(stmt, row)?;
                    let mut results = stmt.raw_query();
                    while results.next()?.is_some() {
                        returned += 1;
                    }
                }
                Ok(())
            });
            result.map_err(|e| explain(e, refused))?;
            let steps = stmt.reset_status(StatementStatus::FullscanStep) as u64;
            Ok(QueryResult {
                rows_read: if steps > 0 { steps + rows.len() as u64 } else { 0 }.max(returned),
                rows_written: conn.total_changes().saturating_sub(changes_before),
                ..QueryResult::default()
            })
        });
        release_large_bindings(stmt, rows.iter().flatten());
        result
    })
}

/// The statements of `query` when it holds more than one.
fn several_statements(query: &str) -> Option<Vec<&str>> {
    // Only text with a `;` before its end can hold several statements.
    if !query.trim_end().trim_end_matches(';').contains(';') {
        return None;
    }
    let statements = split_statements(query);
    (statements.len() > 1).then_some(statements)
}

fn check_params(limits: &StorageLimits, count: usize, scope: &str) -> StorageResult<()> {
    if count > limits.max_sql_params {
        return Err(StorageError::LimitExceeded(format!(
            "{count} bound parameters{scope}; the limit is {}",
            limits.max_sql_params
        )));
    }
    Ok(())
}

fn check_length(limits: &StorageLimits, query: &str) -> StorageResult<()> {
    if query.len() > limits.max_sql_length {
        return Err(StorageError::LimitExceeded(format!(
            "the SQL is {} bytes; the limit is {} bytes",
            query.len(),
            limits.max_sql_length
        )));
    }
    Ok(())
}

/// Runs each statement of a multi-statement string in turn (a statement may use a table an
/// earlier one created, so each is prepared only after the one before it ran).
fn run_batch(db: &ObjectDb, statements: &[&str], params: &[Value], output: Output) -> StorageResult<QueryResult> {
    let mut totals = QueryResult::default();
    for (i, text) in statements.iter().enumerate() {
        if i + 1 == statements.len() {
            let last = db.with_guest_statement(text, |stmt| run_last(db, stmt, params, output))?;
            return Ok(QueryResult {
                rows_read: totals.rows_read + last.rows_read,
                rows_written: totals.rows_written + last.rows_written,
                ..last
            });
        }
        let done = db.with_guest_statement(text, |stmt| run_statement(db, stmt, Output::Counts))?;
        totals.rows_read += done.rows_read;
        totals.rows_written += done.rows_written;
    }
    Ok(totals)
}

/// Splits SQL text into its statements. SQLite's own `sqlite3_complete` decides where a
/// statement ends, so quotes, comments and trigger bodies (`BEGIN ...; END`) are respected.
fn split_statements(sql: &str) -> Vec<&str> {
    let mut statements = Vec::new();
    let mut start = 0;
    for (at, _) in sql.match_indices(';') {
        let candidate = &sql[start..=at];
        if is_complete(candidate) {
            if !is_blank(candidate) {
                statements.push(candidate);
            }
            start = at + 1;
        }
    }
    if !is_blank(&sql[start..]) {
        statements.push(&sql[start..]);
    }
    statements
}

fn is_complete(sql: &str) -> bool {
    let Ok(text) = std::ffi::CString::new(sql) else {
        return false; // an interior NUL: let SQLite's prepare report it
    };
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { rusqlite::ffi::sqlite3_complete(text.as_ptr()) != 0 }
}

/// True when `sql` holds no statement: only white space, `;` and comments.
fn is_blank(mut sql: &str) -> bool {
    loop {
        sql = sql.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = sql.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return sql.is_empty();
        }
    }
}

fn run_last(db: &ObjectDb, stmt: &mut Statement<'_>, params: &[Value], output: Output) -> StorageResult<QueryResult> {
    let expected = stmt.parameter_count();
    if params.len() != expected {
        return Err(StorageError::InvalidArgument(format!(
            "the statement takes {expected} parameters but {} were given",
            params.len()
        )));
    }
    bind(stmt, params)?;
    let result = run_statement(db, stmt, output);
    release_large_bindings(stmt, params);
    result
}

/// Clears the kept statement's bindings when the values it was run with hold a text or blob
/// worth releasing now (see [`LARGE_BINDING`]).
fn release_large_bindings<'v>(stmt: &mut Statement<'_>, bound: impl IntoIterator<Item = &'v Value>) {
    let large = bound.into_iter().any(|value| match value {
        Value::Text(v) => v.len() > LARGE_BINDING,
        Value::Blob(v) => v.len() > LARGE_BINDING,
        _ => false,
    });
    if large {
        stmt.clear_bindings();
    }
}

fn bind(stmt: &mut Statement<'_>, params: &[Value]) -> rusqlite::Result<()> {
    for (i, value) in params.iter().enumerate() {
        match value {
            Value::Null => stmt.raw_bind_parameter(i + 1, rusqlite::types::Null),
            Value::Integer(v) => stmt.raw_bind_parameter(i + 1, v),
            Value::Real(v) => stmt.raw_bind_parameter(i + 1, v),
            Value::Text(v) => stmt.raw_bind_parameter(i + 1, v),
            Value::Blob(v) => stmt.raw_bind_parameter(i + 1, v),
        }?;
    }
    Ok(())
}

/// Steps a bound statement to its end, collecting its rows if asked, under the guard (SQLite
/// may re-prepare it after a schema change).
fn run_statement(db: &ObjectDb, stmt: &mut Statement<'_>, output: Output) -> StorageResult<QueryResult> {
    let conn = db.conn();
    let changes_before = conn.total_changes();
    let limit = db.max_result_size();
    let (stepped, refused) = db.guard().enter(|| -> StorageResult<(Vec<Vec<Value>>, u64, usize)> {
        let (mut out, mut returned, mut size) = (Vec::new(), 0, 0);
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(|e| explain(e, None))? {
            returned += 1;
            if output == Output::Rows {
                // Read after the step: a kept statement is re-prepared at its first step after a
                // schema change, which can change its columns (`SELECT *`).
                let width = row.as_ref().column_count();
                let values: Vec<Value> =
                    (0..width).map(|i| row.get_ref(i).map(value_of)).collect::<rusqlite::Result<_>>()?;
                size += values.iter().map(value_size).sum::<usize>();
                check_result_size(size, limit)?;
                out.push(values);
            }
        }
        Ok((out, returned, size))
    });
    let (rows, returned, bytes) = match (stepped, refused) {
        (Ok(stepped), _) => stepped,
        (Err(_), Some(reason)) => return Err(StorageError::NotAllowed(reason)),
        (Err(e), None) => return Err(e),
    };
    let columns = match output {
        Output::Rows => stmt.column_names().map(String::from).collect(),
        Output::Counts => Vec::new(),
    };
    // FULLSCAN_STEP counts steps from one row to the next: N - 1 for a scan of N rows.
    let steps = stmt.reset_status(StatementStatus::FullscanStep) as u64;
    let scanned = if steps > 0 { steps + 1 } else { 0 };
    Ok(QueryResult {
        rows_read: scanned.max(returned),
        rows_written: conn.total_changes().saturating_sub(changes_before),
        columns,
        rows,
        bytes,
    })
}

fn value_of(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Integer(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
        ValueRef::Blob(v) => Value::Blob(v.to_vec()),
    }
}

/// Names what the guard refused, or passes SQLite's own message on.
pub(super) fn explain(error: rusqlite::Error, refused: Option<String>) -> StorageError {
    if let Some(reason) = refused {
        return StorageError::NotAllowed(reason);
    }
    if error.to_string().contains("cannot VACUUM") {
        return StorageError::NotAllowed("VACUUM: the database is managed by the host".into());
    }
    StorageError::from(error)
}

/// Refuses a result that has grown past `limit` bytes.
pub(super) fn check_result_size(size: usize, limit: usize) -> StorageResult<()> {
    if size > limit {
        return Err(StorageError::LimitExceeded(format!(
            "the result is over the limit of {limit} bytes; ask for fewer rows (LIMIT) or smaller values"
        )));
    }
    Ok(())
}

/// Bytes a value takes in a result.
fn value_size(value: &Value) -> usize {
    match value {
        Value::Text(v) => v.len() + 8,
        Value::Blob(v) => v.len() + 8,
        _ => 16,
    }
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
