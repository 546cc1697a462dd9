use super::*;
use crate::config::Durability;
use crate::storage::kv;

const LIMITS: StorageLimits = StorageLimits {
    max_value_size: 1 << 20,
    max_batch_keys: 128,
    max_storage: 1 << 20,
    max_sql_length: 200,
    max_sql_params: 3,
    max_sql_batch_rows: 1000,
    max_sql_memory: 64 << 20,
    max_result_size: 1 << 20,
};

/// A database inside an open event, as a guest call sees it.
fn event_db() -> (tempfile::TempDir, ObjectDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = ObjectDb::open(&dir.path().join("o.sqlite"), Durability::Normal, &LIMITS).unwrap();
    db.begin().unwrap();
    db.begin_event().unwrap();
    (dir, db)
}

fn run(db: &ObjectDb, query: &str, params: &[Value]) -> StorageResult<QueryResult> {
    exec(db, &LIMITS, query, params, Output::Rows)
}

fn refused(db: &ObjectDb, query: &str) -> String {
    match run(db, query, &[]) {
        Err(StorageError::NotAllowed(reason)) => reason,
        other => panic!("`{query}` was not refused: {other:?}"),
    }
}

#[test]
fn every_value_kind_round_trips() {
    let (_dir, db) = event_db();
    run(&db, "CREATE TABLE t (v)", &[]).unwrap();
    let values = [
        Value::Null,
        Value::Integer(i64::MAX),
        Value::Integer(-(1 << 60) - 7),
        Value::Integer((1 << 53) + 1),
        Value::Real(0.1),
        Value::Real(-1.5e300),
        Value::Text("héllo ✓ \u{0}".into()),
        Value::Blob(vec![0, 255, 1, 2]),
        Value::Blob(vec![]),
    ];
    for v in &values {
        run(&db, "INSERT INTO t (v) VALUES (?1)", std::slice::from_ref(v)).unwrap();
    }
    let got = run(&db, "SELECT v FROM t ORDER BY rowid", &[]).unwrap();
    assert_eq!(got.columns, ["v"]);
    assert_eq!(got.rows.into_iter().map(|mut r| r.remove(0)).collect::<Vec<_>>(), values);
}

#[test]
fn rows_read_and_written_are_counted() {
    let (_dir, db) = event_db();
    let r = run(&db, "CREATE TABLE t (id INTEGER PRIMARY KEY, n)", &[]).unwrap();
    assert_eq!((r.rows_read, r.rows_written), (0, 0));
    let r = run(&db, "INSERT INTO t (n) VALUES (1), (2), (3), (4)", &[]).unwrap();
    assert_eq!(r.rows_written, 4);
    let r = run(&db, "SELECT n FROM t", &[]).unwrap();
    assert_eq!((r.rows.len(), r.rows_read, r.rows_written), (4, 4, 0));
    let r = run(&db, "SELECT count(*) FROM t WHERE n > 0", &[]).unwrap();
    assert_eq!(r.rows_read, 4, "a full scan counts the rows it visits");
    let r = run(&db, "SELECT n FROM t WHERE id = ?1", &[Value::Integer(2)]).unwrap();
    assert_eq!((r.rows_read, r.rows[0][0].clone()), (1, Value::Integer(2)));
    let r = run(&db, "UPDATE t SET n = n + 1 WHERE n >= 3", &[]).unwrap();
    assert_eq!(r.rows_written, 2);
    let r = run(&db, "DELETE FROM t", &[]).unwrap();
    assert_eq!(r.rows_written, 4);
}

#[test]
fn several_statements_run_in_order_and_params_bind_to_the_last() {
    let (_dir, db) = event_db();
    let r = run(
        &db,
        "CREATE TABLE t (a, b); INSERT INTO t VALUES (1, 'x'); SELECT a, b FROM t WHERE a = ?1",
        &[Value::Integer(1)],
    )
    .unwrap();
    assert_eq!(r.columns, ["a", "b"]);
    assert_eq!(r.rows, [[Value::Integer(1), Value::Text("x".into())]]);
    assert_eq!(r.rows_written, 1);
    // A failing statement undoes the earlier ones of the same call.
    let err = run(&db, "INSERT INTO t VALUES (2, 'y'); INSERT INTO nope VALUES (1)", &[]).unwrap_err();
    assert!(matches!(&err, StorageError::Sqlite(m) if m.contains("no such table: nope")), "{err:?}");
    assert_eq!(run(&db, "SELECT count(*) FROM t", &[]).unwrap().rows[0][0], Value::Integer(1));
    let err = run(&db, "SELECT ?1, ?2", &[Value::Null]).unwrap_err();
    assert!(matches!(&err, StorageError::InvalidArgument(m) if m.contains("takes 2 parameters but 1")), "{err:?}");
}

#[test]
fn statements_that_escape_the_object_or_its_transaction_are_refused_by_name() {
    let (_dir, db) = event_db();
    run(&db, "CREATE TABLE t (a)", &[]).unwrap();
    assert!(refused(&db, "BEGIN").starts_with("BEGIN"));
    assert!(refused(&db, "COMMIT").starts_with("COMMIT"));
    assert!(refused(&db, "END").starts_with("COMMIT"));
    assert!(refused(&db, "ROLLBACK").starts_with("ROLLBACK"));
    assert!(refused(&db, "SAVEPOINT s").starts_with("SAVEPOINT"));
    assert!(refused(&db, "RELEASE s").starts_with("SAVEPOINT"));
    assert!(refused(&db, "ATTACH DATABASE '/tmp/x.db' AS x").starts_with("ATTACH"));
    assert!(refused(&db, "DETACH DATABASE x").starts_with("DETACH"));
    assert!(refused(&db, "VACUUM").starts_with("VACUUM"));
    assert!(refused(&db, "VACUUM INTO '/tmp/copy.db'").starts_with("VACUUM"));
    assert!(refused(&db, "PRAGMA journal_mode = DELETE").starts_with("PRAGMA journal_mode"));
    assert!(refused(&db, "PRAGMA writable_schema = 1").starts_with("PRAGMA writable_schema"));
    assert!(refused(&db, "PRAGMA page_size = 1024").contains("can only be read"));
    assert!(refused(&db, "SELECT load_extension('x')").starts_with("load_extension"));
    assert!(refused(&db, "SELECT hex(fts3_tokenizer('simple'))").starts_with("fts3_tokenizer"));
    assert!(refused(&db, "SELECT FTS3_TOKENIZER('mine', x'0000000000000000')").contains("memory addresses"));
    assert!(refused(&db, "SELECT * FROM _wdo_kv").contains("table `_wdo_kv`"));
    assert!(refused(&db, "INSERT INTO _WDO_KV VALUES ('a', x'00')").contains("belong to the host"));
    assert!(refused(&db, "DROP TABLE _wdo_meta").contains("table `_wdo_meta`"));
    assert!(refused(&db, "CREATE TABLE _wdo_mine (a)").contains("belong to the host"));
    assert!(refused(&db, "PRAGMA table_info(_wdo_kv)").contains("belong to the host"));
    assert!(refused(&db, "CREATE TEMP TABLE tt (a)").starts_with("TEMP"));
    // A refusal mid-batch undoes the statements before it.
    assert!(refused(&db, "INSERT INTO t VALUES (1); BEGIN").starts_with("BEGIN"));
    assert_eq!(run(&db, "SELECT count(*) FROM t", &[]).unwrap().rows[0][0], Value::Integer(0));
}

#[test]
fn harmless_pragmas_keep_working() {
    let (_dir, db) = event_db();
    run(&db, "CREATE TABLE t (a INTEGER, b TEXT)", &[]).unwrap();
    let info = run(&db, "PRAGMA table_info(t)", &[]).unwrap();
    assert_eq!(info.rows.len(), 2);
    assert_eq!(run(&db, "PRAGMA user_version", &[]).unwrap().rows[0][0], Value::Integer(0));
    run(&db, "PRAGMA user_version = 7", &[]).unwrap();
    assert_eq!(run(&db, "PRAGMA user_version", &[]).unwrap().rows[0][0], Value::Integer(7));
    run(&db, "PRAGMA foreign_keys = ON", &[]).unwrap();
    assert!(!run(&db, "PRAGMA page_count", &[]).unwrap().rows.is_empty());
}

#[test]
fn foreign_keys_are_enforced() {
    let (_dir, db) = event_db();
    run(&db, "CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (p INTEGER REFERENCES p (id))", &[]).unwrap();
    assert_eq!(run(&db, "PRAGMA foreign_keys", &[]).unwrap().rows[0][0], Value::Integer(1));
    let error = run(&db, "INSERT INTO c VALUES (5)", &[]).unwrap_err().to_string();
    assert!(error.contains("FOREIGN KEY"), "{error}");
}

#[test]
fn host_statements_in_the_cache_do_not_let_guest_sql_past_the_guard() {
    let (_dir, db) = event_db();
    // The host prepares (and caches) its own key-value statements first...
    kv::put(db.conn(), &LIMITS, "k", b"v").unwrap();
    kv::get(db.conn(), "k").unwrap();
    // ...a guest sending their exact text is still refused.
    let host_insert =
        "INSERT INTO _wdo_kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    let err = run(&db, host_insert, &[Value::Text("k".into()), Value::Blob(vec![1])]).unwrap_err();
    assert!(matches!(err, StorageError::NotAllowed(_)), "{err:?}");
    assert!(matches!(
        run(&db, "SELECT value FROM _wdo_kv WHERE key = ?1", &[Value::Null]),
        Err(StorageError::NotAllowed(_))
    ));
    assert!(matches!(run(&db, "RELEASE wdo_event", &[]), Err(StorageError::NotAllowed(_))));
}

#[test]
fn sql_length_and_parameter_limits_are_exact() {
    let (_dir, db) = event_db();
    let at_limit = format!("SELECT 1{}", " ".repeat(200 - 8));
    assert_eq!(at_limit.len(), 200);
    run(&db, &at_limit, &[]).unwrap();
    let err = run(&db, &format!("{at_limit} "), &[]).unwrap_err();
    assert!(matches!(&err, StorageError::LimitExceeded(m) if m.contains("201 bytes")), "{err:?}");
    let three = [Value::Integer(1), Value::Integer(2), Value::Integer(3)];
    run(&db, "SELECT ?1, ?2, ?3", &three).unwrap();
    let err = run(&db, "SELECT ?1, ?2, ?3, ?4", &[three.as_slice(), &[Value::Null]].concat()).unwrap_err();
    assert!(matches!(&err, StorageError::LimitExceeded(m) if m.contains("4 bound parameters")), "{err:?}");
}

#[test]
fn the_storage_quota_refuses_the_call_and_keeps_the_event() {
    let (_dir, db) = event_db();
    run(&db, "CREATE TABLE t (b BLOB)", &[]).unwrap();
    run(&db, "INSERT INTO t VALUES (?1)", &[Value::Blob(vec![1; 100_000])]).unwrap();
    // 1 MiB quota: another 1 MB blob does not fit; the call is undone and the event goes on.
    let err = run(&db, "INSERT INTO t VALUES (?1)", &[Value::Blob(vec![2; 1_000_000])]).unwrap_err();
    assert!(matches!(&err, StorageError::LimitExceeded(m) if m.contains("the limit is 1048576 bytes")), "{err:?}");
    assert!(db.in_transaction());
    assert_eq!(run(&db, "SELECT count(*) FROM t", &[]).unwrap().rows[0][0], Value::Integer(1));
    // Key-value writes count against the same quota.
    let err = db.write_call(|| kv::put(db.conn(), &LIMITS, "big", &vec![0; 1_000_000])).unwrap_err();
    assert!(matches!(err, StorageError::LimitExceeded(_)), "{err:?}");
    assert_eq!(kv::get(db.conn(), "big").unwrap(), None);
    run(&db, "INSERT INTO t VALUES (x'00')", &[]).unwrap();
    assert!(db.size().unwrap() <= LIMITS.max_storage);
}

#[test]
fn savepoints_nest_and_roll_back_only_their_part() {
    let (_dir, db) = event_db();
    run(&db, "CREATE TABLE t (a)", &[]).unwrap();
    run(&db, "INSERT INTO t VALUES (1)", &[]).unwrap();
    let outer = db.savepoint().unwrap();
    run(&db, "INSERT INTO t VALUES (2)", &[]).unwrap();
    let inner = db.savepoint().unwrap();
    assert_eq!((outer, inner), (1, 2));
    run(&db, "INSERT INTO t VALUES (3)", &[]).unwrap();
    db.end_savepoint(inner, false).unwrap();
    db.end_savepoint(outer, true).unwrap();
    let rows = run(&db, "SELECT a FROM t ORDER BY a", &[]).unwrap().rows;
    assert_eq!(rows, [[Value::Integer(1)], [Value::Integer(2)]]);
    let err = db.end_savepoint(1, true).unwrap_err();
    assert!(matches!(&err, StorageError::InvalidArgument(m) if m.contains("savepoint 1 is not open")), "{err:?}");
    // Rolling back an outer savepoint also closes the inner ones.
    let a = db.savepoint().unwrap();
    db.savepoint().unwrap();
    run(&db, "INSERT INTO t VALUES (9)", &[]).unwrap();
    db.end_savepoint(a, false).unwrap();
    assert_eq!(run(&db, "SELECT count(*) FROM t", &[]).unwrap().rows[0][0], Value::Integer(2));
    assert!(db.end_savepoint(2, true).is_err());
}

#[test]
fn trailing_blanks_and_comments_do_not_make_another_statement() {
    let (_dir, db) = event_db();
    let r =
        run(&db, "CREATE TABLE t (a); -- make it\n INSERT INTO t VALUES (?1); /* done */ ;; \n", &[Value::Integer(5)])
            .unwrap();
    assert_eq!(r.rows_written, 1);
    let r = run(&db, "SELECT 1;; SELECT a FROM t WHERE a = ?1 -- the last one", &[Value::Integer(5)]).unwrap();
    assert_eq!(r.rows, [[Value::Integer(5)]]);
    // Trigger bodies hold semicolons of their own.
    run(&db, "CREATE TABLE log (x); CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.a); END; INSERT INTO t VALUES (?1)", &[Value::Integer(6)]).unwrap();
    assert_eq!(run(&db, "SELECT x FROM log", &[]).unwrap().rows, [[Value::Integer(6)]]);
    assert!(super::is_blank(" ; -- x\n /* y */ "));
    assert_eq!(super::split_statements("SELECT ';'; SELECT 2 -- ;\n"), ["SELECT ';';", " SELECT 2 -- ;\n"]);
    assert!(!super::is_blank(" ; SELECT 1"));
}

#[test]
fn exec_many_runs_a_statement_per_row_all_or_nothing() {
    let (_dir, db) = event_db();
    run(&db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)", &[]).unwrap();
    let rows: Vec<Vec<Value>> = (0..500).map(|i| vec![Value::Integer(i), Value::Text(format!("n{i}"))]).collect();
    let done = exec_many(&db, &LIMITS, "INSERT INTO t VALUES (?1, ?2)", &rows).unwrap();
    assert_eq!((done.rows_written, done.rows.len()), (500, 0));
    // A failing run (NOT NULL) undoes every run of the call, and the event goes on.
    let bad = vec![vec![Value::Integer(1000), Value::Text("ok".into())], vec![Value::Integer(1001), Value::Null]];
    let err = exec_many(&db, &LIMITS, "INSERT INTO t VALUES (?1, ?2)", &bad).unwrap_err();
    assert!(matches!(&err, StorageError::Sqlite(m) if m.contains("NOT NULL")), "{err:?}");
    assert!(db.in_transaction());
    assert_eq!(run(&db, "SELECT count(*) FROM t", &[]).unwrap().rows[0][0], Value::Integer(500));
    // Limits: runs per call, parameters per run, one statement only, the quota.
    let many = vec![vec![Value::Integer(0)]; 1001];
    let err = exec_many(&db, &LIMITS, "SELECT ?1", &many).unwrap_err();
    assert!(matches!(&err, StorageError::LimitExceeded(m) if m.contains("1001 runs")), "{err:?}");
    let wide = vec![vec![Value::Null; 4]];
    let err = exec_many(&db, &LIMITS, "SELECT ?1, ?2, ?3, ?4", &wide).unwrap_err();
    assert!(matches!(&err, StorageError::LimitExceeded(m) if m.contains("4 bound parameters")), "{err:?}");
    let err = exec_many(&db, &LIMITS, "SELECT 1; SELECT 2", &[vec![]]).unwrap_err();
    assert!(matches!(&err, StorageError::InvalidArgument(m) if m.contains("single statement")), "{err:?}");
    let blobs = vec![vec![Value::Integer(2000), Value::Text("x".repeat(300_000))]; 1]
        .into_iter()
        .chain((1..5).map(|i| vec![Value::Integer(2000 + i), Value::Text("x".repeat(300_000))]))
        .collect::<Vec<_>>();
    let err = exec_many(&db, &LIMITS, "INSERT INTO t VALUES (?1, ?2)", &blobs).unwrap_err();
    assert!(matches!(&err, StorageError::LimitExceeded(m) if m.contains("the limit is 1048576 bytes")), "{err:?}");
    assert_eq!(run(&db, "SELECT count(*) FROM t", &[]).unwrap().rows[0][0], Value::Integer(500));
    // The guard applies as to exec.
    let err = exec_many(&db, &LIMITS, "DELETE FROM _wdo_kv", &[vec![]]).unwrap_err();
    assert!(matches!(err, StorageError::NotAllowed(_)), "{err:?}");
}

#[test]
fn a_kept_statement_follows_schema_changes() {
    let (_dir, db) = event_db();
    run(&db, "CREATE TABLE t (a)", &[]).unwrap();
    run(&db, "INSERT INTO t VALUES (1)", &[]).unwrap();
    assert_eq!(run(&db, "SELECT * FROM t", &[]).unwrap().columns, ["a"]);
    run(&db, "ALTER TABLE t ADD COLUMN b", &[]).unwrap();
    let again = run(&db, "SELECT * FROM t", &[]).unwrap();
    assert_eq!(
        (again.columns, again.rows),
        (vec!["a".to_string(), "b".into()], vec![vec![Value::Integer(1), Value::Null]])
    );
    run(&db, "DROP TABLE t", &[]).unwrap();
    let err = run(&db, "SELECT * FROM t", &[]).unwrap_err();
    assert!(matches!(&err, StorageError::Sqlite(m) if m.contains("no such table: t")), "{err:?}");
}

#[test]
fn more_statements_than_are_kept_still_run() {
    let (_dir, db) = event_db();
    for round in 0..2 {
        for i in 0..300 {
            let got = run(&db, &format!("SELECT {i}"), &[]).unwrap();
            assert_eq!(got.rows, [[Value::Integer(i)]], "round {round}");
        }
    }
}

#[test]
fn counts_output_steps_over_returned_rows() {
    let (_dir, db) = event_db();
    run(&db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v)", &[]).unwrap();
    let done = exec(&db, &LIMITS, "INSERT INTO t (v) VALUES (1), (2) RETURNING id", &[], Output::Counts).unwrap();
    assert_eq!(done, QueryResult { rows_read: 2, rows_written: 2, ..QueryResult::default() });
    let rows = exec(&db, &LIMITS, "SELECT * FROM t", &[], Output::Rows).unwrap();
    assert_eq!(rows.rows.len(), 2);
}

/// A query that never ends on its own.
const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

#[test]
fn sql_time_is_charged_to_the_event_and_an_endless_query_is_interrupted_at_its_limit() {
    let (_dir, db) = event_db();
    let meter = std::sync::Arc::new(crate::cpu::CpuMeter::new(std::time::Duration::from_millis(300)));
    db.attach_cpu(meter.clone());
    let started = std::time::Instant::now();
    let err = db.guest_call(|| run(&db, ENDLESS, &[])).unwrap_err();
    let took = started.elapsed();
    assert!(meter.exceeded(), "the meter ran out: {err:?}");
    assert!(matches!(&err, StorageError::Lost(m) if m.contains("interrupt")), "{err:?}");
    assert!(took >= std::time::Duration::from_millis(290) && took < std::time::Duration::from_secs(5), "{took:?}");
    // Outside guest calls (the actor's own statements) nothing is charged or interrupted.
    db.detach_cpu();
    meter.reset();
    assert_eq!(
        run(&db, "SELECT count(*) FROM (SELECT 1 UNION ALL SELECT 2)", &[]).unwrap().rows[0][0],
        Value::Integer(2)
    );
}

#[test]
fn a_string_longer_than_the_length_limit_is_refused_before_it_is_made() {
    let (_dir, db) = event_db();
    let err = run(&db, "SELECT length(zeroblob(1000000000))", &[]).unwrap_err();
    assert!(matches!(&err, StorageError::Sqlite(m) if m.contains("too big")), "{err:?}");
    // Up to the key-value size it works.
    let fits = run(&db, "SELECT length(zeroblob(1000000))", &[]).unwrap();
    assert_eq!(fits.rows[0][0], Value::Integer(1_000_000));
}

#[test]
fn a_result_past_the_size_limit_is_refused_and_smaller_ones_pass() {
    let (_dir, db) = event_db();
    // 1 MiB limit: 300 rows of 4 KiB pass, 300 rows of 4 KiB twice over do not.
    let rows = |size: u32| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) SELECT randomblob({size}) FROM n"
        )
    };
    assert_eq!(run(&db, &rows(2048), &[]).unwrap().rows.len(), 300);
    let err = run(&db, &rows(4096), &[]).unwrap_err();
    assert!(
        matches!(&err, StorageError::LimitExceeded(m) if m.contains("result is over the limit of 1048576 bytes")),
        "{err:?}"
    );
}

#[test]
fn sql_memory_is_bounded_per_object_and_freed_with_the_statement() {
    let dir = tempfile::tempdir().unwrap();
    let limits = StorageLimits { max_sql_memory: 8 << 20, ..LIMITS };
    let db = ObjectDb::open(&dir.path().join("o.sqlite"), Durability::Normal, &limits).unwrap();
    db.begin().unwrap();
    db.begin_event().unwrap();
    // ~30 MB of distinct values is kept in memory (temp_store=MEMORY): over 8 MiB.
    let sort = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) \
                SELECT count(DISTINCT hex(randomblob(40))) FROM n";
    let err = db.guest_call(|| run(&db, sort, &[])).unwrap_err();
    assert!(db.heap().exceeded(), "the meter refused: {err:?}");
    assert!(matches!(&err, StorageError::Lost(_)), "{err:?}");
    assert!(db.heap().used() < 8 << 20, "{} bytes still charged", db.heap().used());
    // A small sort in the same object works; the host's own statements are not charged.
    db.undo_event().unwrap();
    db.rollback();
    db.begin().unwrap();
    db.begin_event().unwrap();
    let small = db.guest_call(|| run(&db, "SELECT 1 UNION SELECT 2 ORDER BY 1", &[])).unwrap();
    assert_eq!(small.rows.len(), 2);
    assert!(!db.heap().exceeded());
}
