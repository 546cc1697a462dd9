//! Key-value operations over the `_wdo_kv` table of an object's database.
//!
//! Every function runs inside the caller's open transaction and checks its limits before it
//! writes anything, so a refused call leaves no trace.

use super::StorageLimits;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError as KvError, StorageResult as KvResult};

pub type Entry = (String, Vec<u8>);

/// The range and order of a `list` call.
#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub prefix: Option<String>,
    pub start: Option<String>,
    pub start_after: Option<String>,
    pub end: Option<String>,
    pub reverse: bool,
    pub limit: Option<u32>,
}

fn check_batch(limits: &StorageLimits, count: usize) -> KvResult<()> {
    if count > limits.max_batch_keys {
        return Err(KvError::LimitExceeded(format!(
            "{count} keys in one call; the limit is {}",
            limits.max_batch_keys
        )));
    }
    Ok(())
}

fn check_entry(limits: &StorageLimits, key: &str, value: &[u8]) -> KvResult<()> {
    let size = key.len() + value.len();
    if size > limits.max_value_size {
        return Err(KvError::LimitExceeded(format!(
            "key `{}` with its value is {size} bytes; the limit is {} bytes",
            truncate(key, 64),
            limits.max_value_size
        )));
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub fn get(conn: &Connection, key: &str) -> KvResult<Option<Vec<u8>>> {
    let mut stmt = conn.prepare_cached("SELECT value FROM _wdo_kv WHERE key = ?1")?;
    Ok(stmt.query_row([key], |row| row.get(0)).optional()?)
}

pub fn get_many(conn: &Connection, limits: &StorageLimits, keys: &[String]) -> KvResult<Vec<Entry>> {
    check_batch(limits, keys.len())?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(value) = get(conn, key)? {
            out.push((key.clone(), value));
        }
    }
    Ok(out)
}

pub fn put(conn: &Connection, limits: &StorageLimits, key: &str, value: &[u8]) -> KvResult<()> {
    check_entry(limits, key, value)?;
    put_unchecked(conn, key, value)
}

fn put_unchecked(conn: &Connection, key: &str, value: &[u8]) -> KvResult<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO _wdo_kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    stmt.execute(params![key, value])?;
    Ok(())
}

pub fn put_many(conn: &Connection, limits: &StorageLimits, entries: &[Entry]) -> KvResult<()> {
    check_batch(limits, entries.len())?;
    for (key, value) in entries {
        check_entry(limits, key, value)?;
    }
    // Checked up front, so a failure below can only be SQLite's: the event's savepoint undoes it.
    for (key, value) in entries {
        put_unchecked(conn, key, value)?;
    }
    Ok(())
}

pub fn delete(conn: &Connection, key: &str) -> KvResult<bool> {
    let mut stmt = conn.prepare_cached("DELETE FROM _wdo_kv WHERE key = ?1")?;
    Ok(stmt.execute([key])? > 0)
}

pub fn delete_many(conn: &Connection, limits: &StorageLimits, keys: &[String]) -> KvResult<u32> {
    check_batch(limits, keys.len())?;
    let mut deleted = 0;
    for key in keys {
        deleted += u32::from(delete(conn, key)?);
    }
    Ok(deleted)
}

pub fn delete_all(conn: &Connection) -> KvResult<()> {
    conn.prepare_cached("DELETE FROM _wdo_kv")?.execute([])?;
    Ok(())
}

/// What `delete-all` removes besides the key-value data: every trigger, view and table the
/// object's SQL made (their indexes go with them), virtual tables before the rest, whose shadow
/// tables they drop themselves. The host's own `_wdo_*` tables stay.
pub fn drop_sql_schema(conn: &Connection) -> KvResult<()> {
    let mut items: Vec<(u8, String, String)> = conn
        .prepare(
            "SELECT type, name, coalesce(sql, '') FROM sqlite_schema WHERE type IN ('trigger', 'view', 'table') \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_wdo\\_%' ESCAPE '\\'",
        )?
        .query_map([], |row| {
            let (kind, name, sql): (String, String, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let order = match kind.as_str() {
                "trigger" => 0,
                "view" => 1,
                _ if sql.starts_with("CREATE VIRTUAL") => 2,
                _ => 3,
            };
            Ok((order, kind, name))
        })?
        .collect::<rusqlite::Result<_>>()?;
    items.sort();
    for (_, kind, name) in items {
        let statement = format!("DROP {} IF EXISTS \"{}\"", kind.to_uppercase(), name.replace('"', "\"\""));
        conn.execute(&statement, [])?;
    }
    Ok(())
}

/// The smallest string greater than every string that starts with `prefix`, if there is one.
/// UTF-8 keeps code-point order, so incrementing the last character works in byte order too.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

pub fn list(conn: &Connection, limits: &StorageLimits, options: &ListOptions) -> KvResult<Vec<Entry>> {
    if options.start.is_some() && options.start_after.is_some() {
        return Err(KvError::InvalidArgument("give either `start` or `start-after`, not both".into()));
    }
    let mut sql = String::from("SELECT key, value FROM _wdo_kv WHERE 1");
    let mut args: Vec<Value> = Vec::new();
    let mut bound = |sql: &mut String, op: &str, value: String| {
        args.push(Value::Text(value));
        sql.push_str(&format!(" AND key {op} ?{}", args.len()));
    };
    if let Some(prefix) = &options.prefix {
        bound(&mut sql, ">=", prefix.clone());
        if let Some(end) = prefix_end(prefix) {
            bound(&mut sql, "<", end);
        }
    }
    if let Some(start) = &options.start {
        bound(&mut sql, ">=", start.clone());
    }
    if let Some(after) = &options.start_after {
        bound(&mut sql, ">", after.clone());
    }
    if let Some(end) = &options.end {
        bound(&mut sql, "<", end.clone());
    }
    sql.push_str(if options.reverse { " ORDER BY key DESC" } else { " ORDER BY key" });
    if let Some(limit) = options.limit {
        args.push(Value::Integer(limit.into()));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    let (mut entries, mut size) = (Vec::new(), 0);
    while let Some(row) = rows.next()? {
        let entry: Entry = (row.get(0)?, row.get(1)?);
        size += entry.0.len() + entry.1.len();
        super::sql::check_result_size(size, limits.max_result_size)?;
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;
    use crate::storage::ObjectDb;

    const LIMITS: StorageLimits = StorageLimits {
        max_value_size: 100,
        max_batch_keys: 3,
        max_storage: 1 << 30,
        max_sql_length: 1000,
        max_sql_params: 10,
        max_sql_batch_rows: 1000,
        max_sql_memory: 64 << 20,
        max_result_size: 1000,
    };

    fn db() -> (tempfile::TempDir, ObjectDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = ObjectDb::open(&dir.path().join("o.sqlite"), Durability::Normal, &LIMITS).unwrap();
        (dir, db)
    }

    fn keys(entries: Vec<Entry>) -> Vec<String> {
        entries.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn dropping_the_sql_schema_leaves_only_the_hosts_tables() {
        let (_dir, db) = db();
        let c = db.conn();
        c.execute_batch(
            "CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT); CREATE INDEX t_y ON t (y);
             CREATE TABLE \"odd \"\"name\" (z); CREATE VIEW v AS SELECT y FROM t;
             CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM \"odd \"\"name\"; END;
             CREATE VIRTUAL TABLE docs USING fts5(body); INSERT INTO t (y) VALUES ('a');",
        )
        .unwrap();
        put(c, &LIMITS, "k", b"1").unwrap();
        drop_sql_schema(c).unwrap();
        let left: Vec<String> = c
            .prepare("SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(left.iter().all(|name| name.starts_with("_wdo_")), "{left:?}");
        assert_eq!(get(c, "k").unwrap(), Some(b"1".to_vec()), "key-value data is not SQL's to drop");
    }

    #[test]
    fn put_get_delete_round_trip() {
        let (_dir, db) = db();
        let c = db.conn();
        assert_eq!(get(c, "a").unwrap(), None);
        put(c, &LIMITS, "a", b"1").unwrap();
        put(c, &LIMITS, "a", b"2").unwrap();
        assert_eq!(get(c, "a").unwrap(), Some(b"2".to_vec()));
        assert!(delete(c, "a").unwrap());
        assert!(!delete(c, "a").unwrap());
    }

    #[test]
    fn batch_calls_and_their_limits() {
        let (_dir, db) = db();
        let c = db.conn();
        let e = |k: &str| (k.to_string(), k.as_bytes().to_vec());
        put_many(c, &LIMITS, &[e("a"), e("b"), e("c")]).unwrap();
        let err = put_many(c, &LIMITS, &[e("d"), e("e"), e("f"), e("g")]).unwrap_err();
        assert!(matches!(err, KvError::LimitExceeded(m) if m.contains("4 keys")));
        assert_eq!(get(c, "d").unwrap(), None, "a refused batch writes nothing");
        let got = get_many(c, &LIMITS, &["c".into(), "zz".into(), "a".into()]).unwrap();
        assert_eq!(keys(got), ["c", "a"]);
        assert_eq!(delete_many(c, &LIMITS, &["a".into(), "zz".into()]).unwrap(), 1);
        delete_all(c).unwrap();
        assert!(list(c, &LIMITS, &ListOptions::default()).unwrap().is_empty());
    }

    #[test]
    fn value_size_limit_is_exact_and_refusals_write_nothing() {
        let (_dir, db) = db();
        let c = db.conn();
        put(c, &LIMITS, "k", &[0; 99]).unwrap(); // 1 + 99 = the limit
        let err = put(c, &LIMITS, "k", &[1; 100]).unwrap_err();
        assert!(matches!(err, KvError::LimitExceeded(m) if m.contains("101 bytes")));
        assert_eq!(get(c, "k").unwrap(), Some(vec![0; 99]));
        let big = ("x".to_string(), vec![0u8; 100]);
        assert!(put_many(c, &LIMITS, &[("ok".into(), vec![1]), big]).is_err());
        assert_eq!(get(c, "ok").unwrap(), None);
    }

    #[test]
    fn list_ranges_prefixes_order_and_limit() {
        let (_dir, db) = db();
        let c = db.conn();
        for k in ["a", "b", "ba", "bb", "b\u{10FFFF}", "c", "é"] {
            put(c, &LIMITS, k, b"").unwrap();
        }
        let l = |o: ListOptions| keys(list(c, &LIMITS, &o).unwrap());
        assert_eq!(l(ListOptions::default()), ["a", "b", "ba", "bb", "b\u{10FFFF}", "c", "é"]);
        assert_eq!(l(ListOptions { prefix: Some("b".into()), ..Default::default() }), ["b", "ba", "bb", "b\u{10FFFF}"]);
        assert_eq!(
            l(ListOptions { start: Some("b".into()), end: Some("bb".into()), ..Default::default() }),
            ["b", "ba"]
        );
        assert_eq!(
            l(ListOptions { start_after: Some("b".into()), limit: Some(2), ..Default::default() }),
            ["ba", "bb"]
        );
        assert_eq!(l(ListOptions { reverse: true, limit: Some(2), ..Default::default() }), ["é", "c"]);
        assert_eq!(l(ListOptions { prefix: Some("\u{10FFFF}".into()), ..Default::default() }), Vec::<String>::new());
        let both = ListOptions { start: Some("a".into()), start_after: Some("a".into()), ..Default::default() };
        assert!(matches!(list(c, &LIMITS, &both), Err(KvError::InvalidArgument(_))));
    }

    #[test]
    fn prefix_end_skips_surrogates_and_the_last_code_point() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }
}
