use super::*;
use crate::storage::sql::{self, QueryResult, Value};

/// A database inside an open event, with a quota of `max_storage` bytes.
fn event_db(max_storage: u64) -> (tempfile::TempDir, ObjectDb, StorageLimits) {
    let dir = tempfile::tempdir().unwrap();
    let limits = StorageLimits { max_storage, ..StorageLimits::default() };
    let db = ObjectDb::open(&dir.path().join("o.sqlite"), Durability::Normal, &limits).unwrap();
    db.begin().unwrap();
    db.begin_event().unwrap();
    (dir, db, limits)
}

fn run(db: &ObjectDb, limits: &StorageLimits, query: &str) -> StorageResult<QueryResult> {
    sql::exec(db, limits, query, &[], sql::Output::Rows)
}

fn count(db: &ObjectDb, limits: &StorageLimits, table: &str) -> Value {
    run(db, limits, &format!("SELECT count(*) FROM {table}")).unwrap().rows.remove(0).remove(0)
}

/// `rows` rows of `size` random bytes each, in one statement.
fn insert_blobs(rows: u32, size: u32) -> String {
    format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         INSERT INTO t SELECT randomblob({size}) FROM n"
    )
}

#[test]
fn the_page_bound_covers_a_statement_that_spills_past_the_page_cache() {
    let (_dir, db, limits) = event_db(1 << 30);
    run(&db, &limits, "CREATE TABLE t (b BLOB)").unwrap();
    // 8 MiB in one statement, against a page cache of 512 KiB: most pages reach the WAL
    // before the statement ends.
    run(&db, &limits, &insert_blobs(2048, 4096)).unwrap();
    let bound = db.known_pages.get();
    let exact = db.size().unwrap() / db.page_size;
    assert!(exact > 2048, "the statement added {exact} pages");
    assert!(bound >= exact, "the bound {bound} is below the page count {exact}");
}

#[test]
fn the_page_bound_does_not_grow_with_the_number_of_calls() {
    let (_dir, db, limits) = event_db(1 << 30);
    run(&db, &limits, "CREATE TABLE t (x TEXT)").unwrap();
    for i in 0..1000 {
        sql::exec(&db, &limits, "INSERT INTO t VALUES (?1)", &[Value::Text(format!("row {i}"))], sql::Output::Counts)
            .unwrap();
    }
    // A bound raised by the page cache's size at each call would be ~1000 cache sizes over;
    // near the quota that sends every statement through a savepoint and the exact count.
    let (bound, cache) = (db.known_pages.get(), db.cached_pages());
    let exact = db.size().unwrap() / db.page_size;
    assert!(bound >= exact && bound <= exact + 2 * cache + 16, "bound {bound}, exact {exact}, cache {cache}");
}

#[test]
fn far_from_the_quota_a_failing_statement_still_leaves_nothing() {
    let (_dir, db, limits) = event_db(1 << 30);
    run(&db, &limits, "CREATE TABLE t (x)").unwrap();
    run(
        &db,
        &limits,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO t SELECT i FROM n",
    )
    .unwrap();
    // Each fails on its 900th row, after writing the rows before it: SQLite undoes the
    // statement alone, without the call's savepoint.
    for statement in [
        "UPDATE t SET x = CASE WHEN x = 900 THEN json('{bad') ELSE x + 100000 END",
        "INSERT INTO t SELECT CASE WHEN x = 900 THEN json('{bad') ELSE x END FROM t",
        "DELETE FROM t WHERE x < 500 OR (x = 900 AND json('{bad'))",
    ] {
        let err = run(&db, &limits, statement).unwrap_err();
        assert!(matches!(&err, StorageError::Sqlite(m) if m.contains("malformed JSON")), "{statement}: {err:?}");
        assert!(db.in_transaction());
        assert_eq!(count(&db, &limits, "t"), Value::Integer(1000), "{statement}");
        let moved = run(&db, &limits, "SELECT count(*) FROM t WHERE x > 1000").unwrap().rows.remove(0).remove(0);
        assert_eq!(moved, Value::Integer(0), "{statement}");
    }
}

#[test]
fn one_statement_that_adds_more_than_the_margin_past_the_quota_fails_the_event() {
    // Far enough below the quota that statements run without a savepoint.
    let (_dir, db, limits) = event_db(BACKSTOP_MARGIN + (2 << 20));
    run(&db, &limits, "CREATE TABLE t (b BLOB)").unwrap();
    run(&db, &limits, "INSERT INTO t VALUES (x'01')").unwrap();
    db.end_event().unwrap();
    db.begin_event().unwrap();
    let err = run(&db, &limits, &insert_blobs(17_000, 4096)).unwrap_err();
    assert!(matches!(&err, StorageError::Lost(m) if m.contains("one statement added more than 64 MiB")), "{err:?}");
    // The transaction is intact: the actor undoes the event, as for a trap.
    assert!(db.in_transaction());
    db.undo_event().unwrap();
    db.begin_event().unwrap();
    assert_eq!(count(&db, &limits, "t"), Value::Integer(1));
}

#[test]
fn near_the_quota_a_statement_past_it_is_refused_alone() {
    let (_dir, db, limits) = event_db(BACKSTOP_MARGIN + (2 << 20));
    run(&db, &limits, "CREATE TABLE t (b BLOB)").unwrap();
    // 63 MiB: now within the margin, so the next statement runs in a savepoint.
    run(&db, &limits, &insert_blobs(63 * 256, 4000)).unwrap();
    let err = run(&db, &limits, &insert_blobs(2048, 4096)).unwrap_err();
    assert!(matches!(err, StorageError::LimitExceeded(_)), "{err:?}");
    assert_eq!(count(&db, &limits, "t"), Value::Integer(63 * 256));
    assert!(db.size().unwrap() <= limits.max_storage);
}

#[test]
fn a_reopened_database_counts_the_pages_its_wal_holds_against_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite");
    let limits = StorageLimits { max_storage: 64 << 10, ..StorageLimits::default() };
    let open = || {
        let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
        db.begin().unwrap();
        db.begin_event().unwrap();
        db
    };
    // A never-written database: bounded by the template's pages.
    let db = open();
    let (bound, exact) = (db.known_pages.get(), db.size().unwrap() / db.page_size);
    assert!(bound >= exact && bound <= exact + 1, "bound {bound}, exact {exact}");
    run(&db, &limits, "CREATE TABLE t (b BLOB)").unwrap();
    // ~45 KiB: fewer frames than a close checkpoints, so they stay in the WAL.
    run(&db, &limits, &insert_blobs(12, 3500)).unwrap();
    db.end_event().unwrap();
    db.commit().unwrap();
    drop(db);
    assert!(std::fs::metadata(&path).unwrap().len() < 16 << 10, "the rows are in the WAL, not the database");
    let db = open();
    let (bound, exact) = (db.known_pages.get(), db.size().unwrap() / db.page_size);
    assert!(bound >= exact && bound <= exact + 8, "bound {bound}, exact {exact}");
    db.rollback();
    drop(db);
    // Counting only the database file (~3 pages) plus what this call writes would let 35 KiB
    // more through; the WAL's pages count, so the quota holds.
    let db = open();
    let err = run(&db, &limits, &insert_blobs(10, 3500)).unwrap_err();
    assert!(matches!(err, StorageError::LimitExceeded(_)), "{err:?}");
    assert_eq!(count(&db, &limits, "t"), Value::Integer(12));
}

#[test]
fn an_object_that_writes_once_per_open_keeps_a_short_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite");
    let wal = dir.path().join("o.sqlite-wal");
    let limits = StorageLimits::default();
    let mut longest = 0;
    for i in 0..400 {
        let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
        db.begin().unwrap();
        db.conn().execute("CREATE TABLE IF NOT EXISTS t (i INTEGER)", []).unwrap();
        db.conn().execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        db.commit().unwrap();
        drop(db);
        longest = longest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    // Each cycle adds a frame or two: without the checkpoint on close the WAL held all 400.
    let bound = 32 + (WAL_FRAMES_AT_CLOSE + 4) * (u64::from(PAGE_SIZE) + 24);
    assert!(longest <= bound, "the WAL reached {longest} bytes (bound {bound})");
    let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
    let rows: i64 = db.conn().query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 400);
}

#[test]
fn a_commit_never_checkpoints_and_the_owner_keeps_the_wal_short() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("o.sqlite-wal");
    let limits = StorageLimits::default();
    let db = ObjectDb::open(&dir.path().join("o.sqlite"), Durability::Normal, &limits).unwrap();
    let wal_pages = || (std::fs::metadata(&wal).unwrap().len() - 32) / (db.page_size + 24);
    let batch = |rows: u32| {
        db.begin().unwrap();
        db.conn().execute_batch("CREATE TABLE IF NOT EXISTS t (b BLOB)").unwrap();
        db.conn().execute_batch(&insert_blobs(rows, 3000)).unwrap();
        db.commit().unwrap();
    };
    // Past CHECKPOINT_WAL_BYTES, the commit leaves the WAL as it is (SQLite's own checkpoint,
    // with its fsyncs, would have run inside it) and says a checkpoint is due.
    batch(500);
    assert!(wal_pages() > u64::from(checkpoint_frames(db.page_size)), "the WAL has {} pages", wal_pages());
    assert!(db.checkpoint_due());
    db.checkpoint();
    assert!(!db.checkpoint_due());
    // The next commit starts the WAL from its beginning: it stays as long as the longest batch.
    let longest = wal_pages();
    for _ in 0..20 {
        batch(100);
        if db.checkpoint_due() {
            db.checkpoint();
        }
    }
    assert!(wal_pages() <= longest, "the WAL grew to {} pages (first batch: {longest})", wal_pages());
    db.begin().unwrap();
    assert_eq!(count(&db, &limits, "t"), Value::Integer(2500));
}

#[test]
fn a_new_database_starts_in_wal_mode_with_its_tables_and_keeps_what_it_commits() {
    for durability in [Durability::Normal, Durability::Full] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.sqlite");
        let limits = StorageLimits::default();
        let db = ObjectDb::open(&path, durability, &limits).unwrap();
        let mode: String = db.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = db.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(synchronous, if durability == Durability::Full { 2 } else { 1 }, "the mode is restored");
        assert!(!path.exists(), "no file before the first write");
        db.begin().unwrap();
        db.conn().execute("INSERT INTO _wdo_kv VALUES ('k', x'01')", []).unwrap();
        db.commit().unwrap();
        // The host's tables (three pages), marked as a WAL database (file format 2 in bytes
        // 18-19), the first commit in it (`held.rs`), and neither a WAL nor a rollback journal.
        let header = std::fs::read(&path).unwrap();
        assert_eq!(header.len() as u64, 3 * db.page_size, "{durability:?}");
        assert_eq!(&header[18..20], &[2, 2], "{durability:?}");
        assert!(!dir.path().join("o.sqlite-journal").exists());
        assert!(!dir.path().join("o.sqlite-wal").exists());
        let copy = dir.path().join("copy.sqlite");
        std::fs::write(&copy, &header).unwrap();
        let stock = rusqlite::Connection::open(&copy).unwrap();
        let value: Vec<u8> = stock.query_row("SELECT value FROM _wdo_kv WHERE key = 'k'", [], |r| r.get(0)).unwrap();
        assert_eq!(value, [1], "stock SQLite reads the commit from the file alone");
        drop(stock);
        // The next commit goes in the WAL.
        db.begin().unwrap();
        db.conn().execute("INSERT INTO _wdo_kv VALUES ('l', x'02')", []).unwrap();
        db.commit().unwrap();
        assert!(dir.path().join("o.sqlite-wal").exists());
        drop(db);
        let db = ObjectDb::open(&path, durability, &limits).unwrap();
        let value: Vec<u8> =
            db.conn().query_row("SELECT value FROM _wdo_kv WHERE key = 'k'", [], |r| r.get(0)).unwrap();
        assert_eq!(value, [1]);
    }
}

#[test]
fn an_idle_close_folds_the_wal_into_the_database_and_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite");
    let wal = dir.path().join("o.sqlite-wal");
    let limits = StorageLimits::default();
    let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
    for i in 0..5u8 {
        db.begin().unwrap();
        crate::storage::kv::put(db.conn(), &limits, "count", &[i]).unwrap();
        db.commit_and_checkpoint().unwrap();
    }
    drop(db);
    assert!(wal.metadata().unwrap().len() > 0, "a close that makes room keeps the WAL (cheap)");
    let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
    db.close_idle();
    assert!(!wal.exists(), "an idle close leaves no WAL file");
    let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
    assert_eq!(crate::storage::kv::get(db.conn(), "count").unwrap(), Some(vec![4]));
}

#[test]
fn an_idle_connection_gives_back_its_cached_pages_and_statements_and_reads_on_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let limits = StorageLimits::default();
    let db = ObjectDb::open(&dir.path().join("o.sqlite"), Durability::Normal, &limits).unwrap();
    for i in 0..50u32 {
        db.begin().unwrap();
        crate::storage::kv::put(db.conn(), &limits, &format!("key {i}"), &[7; 300]).unwrap();
        db.commit_and_checkpoint().unwrap();
    }
    let status = |counter| db.db_status(counter);
    let (cache, statements) =
        (status(rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED), status(rusqlite::ffi::SQLITE_DBSTATUS_STMT_USED));
    assert!(cache > 4 * db.page_size as u32 && statements > 0, "cache {cache}, statements {statements}");
    // Inside a transaction nothing is given back (its pages may be the transaction's own).
    db.begin().unwrap();
    db.release_memory();
    assert_eq!(status(rusqlite::ffi::SQLITE_DBSTATUS_STMT_USED), statements);
    db.commit().unwrap();
    db.release_memory();
    let (after_cache, after_statements) =
        (status(rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED), status(rusqlite::ffi::SQLITE_DBSTATUS_STMT_USED));
    assert!(after_cache < cache / 4, "cache {cache} -> {after_cache}");
    assert_eq!(after_statements, 0);
    // The data reads and writes as before (pages come back from the database and its WAL).
    assert_eq!(crate::storage::kv::get(db.conn(), "key 49").unwrap(), Some(vec![7; 300]));
    db.begin().unwrap();
    crate::storage::kv::put(db.conn(), &limits, "key 50", &[8]).unwrap();
    db.commit().unwrap();
    drop(db);
    let db = ObjectDb::open(&dir.path().join("o.sqlite"), Durability::Normal, &limits).unwrap();
    assert_eq!(crate::storage::kv::get(db.conn(), "key 0").unwrap(), Some(vec![7; 300]));
    assert_eq!(crate::storage::kv::get(db.conn(), "key 50").unwrap(), Some(vec![8]));
}

#[test]
fn a_guest_keeps_at_most_128_prepared_statements_and_none_until_it_prepares_one() {
    let (_dir, db, limits) = event_db(1 << 20);
    assert_eq!(db.cell.guest_statements(), 0);
    for i in 0..200 {
        assert_eq!(run(&db, &limits, &format!("SELECT {i}")).unwrap().rows[0][0], Value::Integer(i));
    }
    assert_eq!(db.cell.guest_statements(), 128, "the least recently used are finalized past 128");
    // The most recent is kept: running it again prepares nothing new.
    run(&db, &limits, "SELECT 199").unwrap();
    assert_eq!(db.cell.guest_statements(), 128);
}

/// Writes 3,000-byte rows in small batches until a checkpoint is due; answers the WAL's length.
fn wal_bytes_when_a_checkpoint_is_due(db: &ObjectDb, wal: &Path) -> u64 {
    for _ in 0..1000 {
        db.begin().unwrap();
        db.conn().execute_batch("CREATE TABLE IF NOT EXISTS t (b BLOB)").unwrap();
        db.conn().execute_batch(&insert_blobs(10, 3000)).unwrap();
        db.commit().unwrap();
        if db.checkpoint_due() {
            return std::fs::metadata(wal).unwrap().len();
        }
    }
    panic!("no checkpoint came due");
}

#[test]
fn a_new_database_has_small_pages_and_one_an_older_host_made_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let limits = StorageLimits::default();
    let new = dir.path().join("new.sqlite");
    let db = ObjectDb::open(&new, Durability::Normal, &limits).unwrap();
    assert_eq!(db.page_size, u64::from(PAGE_SIZE));
    let due = wal_bytes_when_a_checkpoint_is_due(&db, &dir.path().join("new.sqlite-wal"));
    drop(db);
    let header = std::fs::read(&new).unwrap();
    assert_eq!(u16::from_be_bytes([header[16], header[17]]), PAGE_SIZE as u16, "the file's own page size");
    // 1 MiB of WAL, whatever the page size: not after 256 frames of 1 KiB.
    assert!((CHECKPOINT_WAL_BYTES..CHECKPOINT_WAL_BYTES + (64 << 10)).contains(&due), "due at {due} bytes");

    // What a host before 1 KiB pages made: SQLite's default of 4 KiB, with the host's tables.
    let old = dir.path().join("old.sqlite");
    let made = rusqlite::Connection::open(&old).unwrap();
    made.execute_batch(&format!("PRAGMA page_size=4096; PRAGMA journal_mode=WAL; {SCHEMA}")).unwrap();
    made.execute("INSERT INTO _wdo_kv VALUES ('kept', x'01')", []).unwrap();
    drop(made);
    let db = ObjectDb::open(&old, Durability::Normal, &limits).unwrap();
    assert_eq!(db.page_size, 4096);
    let kept: Vec<u8> = db.conn().query_row("SELECT value FROM _wdo_kv WHERE key = 'kept'", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, [1]);
    let due = wal_bytes_when_a_checkpoint_is_due(&db, &dir.path().join("old.sqlite-wal"));
    assert!((CHECKPOINT_WAL_BYTES..CHECKPOINT_WAL_BYTES + (128 << 10)).contains(&due), "due at {due} bytes");
    drop(db);
    let header = std::fs::read(&old).unwrap();
    assert_eq!(u16::from_be_bytes([header[16], header[17]]), 4096, "an older database keeps its pages");
}

#[test]
fn a_wal_that_grew_long_is_truncated_at_close_though_a_checkpoint_let_it_start_again() {
    let dir = tempfile::tempdir().unwrap();
    let (path, wal) = (dir.path().join("o.sqlite"), dir.path().join("o.sqlite-wal"));
    let db = ObjectDb::open(&path, Durability::Normal, &StorageLimits::default()).unwrap();
    wal_bytes_when_a_checkpoint_is_due(&db, &wal);
    db.checkpoint();
    // The next commit writes from the WAL's start: a few frames in a file as long as before.
    db.begin().unwrap();
    db.conn().execute("INSERT INTO t VALUES (x'01')", []).unwrap();
    db.commit().unwrap();
    assert!(std::fs::metadata(&wal).unwrap().len() >= CHECKPOINT_WAL_BYTES);
    drop(db);
    assert_eq!(std::fs::metadata(&wal).map_or(0, |m| m.len()), 0, "the close truncated the WAL");
    let db = ObjectDb::open(&path, Durability::Normal, &StorageLimits::default()).unwrap();
    db.begin().unwrap();
    let rows: i64 = db.conn().query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    assert!(rows > 10, "{rows} rows");
}

#[test]
fn a_database_without_the_host_tables_gets_them_at_open() {
    // SQLite's allocator is installed before SQLite starts, whichever test starts it (the
    // SQL memory test counts on its meters).
    crate::storage::heap::install();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite");
    // A database made elsewhere (or by a host that had only the key-value table).
    let plain = Connection::open(&path).unwrap();
    plain
        .execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE _wdo_kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) \
             WITHOUT ROWID; INSERT INTO _wdo_kv VALUES ('a', x'31');",
        )
        .unwrap();
    drop(plain);
    let limits = StorageLimits::default();
    let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
    assert!(db.conn().table_exists(Some("main"), "_wdo_meta").unwrap(), "the open made the missing table");
    db.begin().unwrap();
    db.set_alarm(Some(1234)).unwrap();
    db.commit().unwrap();
    assert_eq!(db.alarm().unwrap(), Some(1234));
    assert_eq!(crate::storage::kv::get(db.conn(), "a").unwrap().as_deref(), Some(&b"1"[..]));
}
