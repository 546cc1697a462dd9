use super::*;
use crate::config::Durability;
use crate::storage::{ObjectDb, StorageLimits, kv};

/// These tests park every idle file of the process, so they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn descriptors_on(path: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    let path = path.canonicalize().unwrap();
    entries.flatten().filter(|e| std::fs::read_link(e.path()).is_ok_and(|target| target == path)).count()
}

fn put(db: &ObjectDb, limits: &StorageLimits, key: &str, value: &[u8]) {
    db.begin().unwrap();
    kv::put(db.conn(), limits, key, value).unwrap();
    db.commit_and_checkpoint().unwrap();
}

/// A database in a folder of its own that committed `a` = `1`.
struct Parked {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    wal: std::path::PathBuf,
    db: ObjectDb,
    limits: StorageLimits,
}

impl Parked {
    fn new() -> Parked {
        let dir = tempfile::tempdir().unwrap();
        let (path, wal) = (dir.path().join("o.sqlite"), dir.path().join("o.sqlite-wal"));
        let limits = StorageLimits::default();
        let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
        // The first commit makes the database file alone (`held.rs`), the second the WAL.
        put(&db, &limits, "a", b"0");
        put(&db, &limits, "a", b"1");
        // A checkpoint opens the database file.
        db.checkpoint();
        Parked { _dir: dir, path, wal, db, limits }
    }
}

fn checkpoint(db: &ObjectDb) -> rusqlite::Result<()> {
    db.conn().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

#[test]
fn a_parked_database_reopens_on_its_next_access_with_everything_it_committed() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Parked { _dir, path, wal, db, limits } = Parked::new();
    assert_eq!((descriptors_on(&path), descriptors_on(&wal)), (1, 1));
    assert!(park_all_idle() >= 2, "the database and its WAL");
    assert_eq!((descriptors_on(&path), descriptors_on(&wal)), (0, 0), "parked: no descriptor left");
    assert_eq!(kv::get(db.conn(), "a").unwrap(), Some(b"1".to_vec()));
    // A commit appends to the WAL, which reopens; a checkpoint writes the database, which does.
    put(&db, &limits, "b", b"2");
    assert_eq!(descriptors_on(&wal), 1);
    park_all_idle();
    checkpoint(&db).unwrap();
    assert_eq!(descriptors_on(&path), 1);
    park_all_idle();
    put(&db, &limits, "c", b"3");
    park_all_idle();
    drop(db);
    let db = ObjectDb::open(&path, Durability::Full, &limits).unwrap();
    for (key, value) in [("a", b"1"), ("b", b"2"), ("c", b"3")] {
        assert_eq!(kv::get(db.conn(), key).unwrap(), Some(value.to_vec()), "{key}");
    }
}

fn persist_wal(db: &ObjectDb, mut value: std::ffi::c_int) -> std::ffi::c_int {
    // SAFETY: a valid connection, the main schema, and a pointer to an int (-1: a query).
    unsafe {
        ffi::sqlite3_file_control(
            db.conn().handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut value).cast(),
        )
    };
    value
}

#[test]
fn the_persistent_wal_setting_is_kept_across_parks_and_reopens() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Parked { _dir, db, limits, .. } = Parked::new();
    park_all_idle();
    assert_eq!(persist_wal(&db, -1), 1, "as the open set it, while parked");
    persist_wal(&db, 0);
    checkpoint(&db).unwrap(); // reopens the database file
    assert_eq!(persist_wal(&db, -1), 0, "as set while parked, after the reopen");
    park_all_idle();
    put(&db, &limits, "b", b"2");
    assert_eq!(persist_wal(&db, -1), 0);
}

#[test]
fn a_database_file_that_vanished_while_parked_is_an_error_not_an_empty_database() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Parked { _dir, path, db, .. } = Parked::new();
    park_all_idle();
    std::fs::remove_file(&path).unwrap();
    // The checkpoint must write the database file, which cannot reopen.
    let result = checkpoint(&db);
    assert!(result.is_err(), "{result:?}");
    assert!(!path.exists(), "not created again");
}

#[test]
fn past_the_budget_the_least_recently_used_files_are_parked() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let limits = StorageLimits::default();
    let before = file_counts().parked;
    // The budget is the process's: other tests running now share it. A small one for a moment
    // only slows them (parking is invisible to SQLite).
    let saved = BUDGET.swap(8, Ordering::Relaxed);
    let dbs: Vec<(std::path::PathBuf, ObjectDb)> = (0..12)
        .map(|i| {
            let path = dir.path().join(format!("o{i}.sqlite"));
            let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
            put(&db, &limits, "i", &[]);
            put(&db, &limits, "i", &[i]); // the second commit makes the WAL (`held.rs`)
            db.checkpoint(); // opens the database file (the WAL is open since the commit)
            (path, db)
        })
        .collect();
    BUDGET.store(saved, Ordering::Relaxed);
    assert!(file_counts().parked >= before + 12, "12 databases, 24 files, a budget of 8");
    let open = dbs.iter().filter(|(path, _)| descriptors_on(path) > 0).count();
    assert!(open <= 8, "{open} of the databases still have their file open");
    for (i, (_, db)) in dbs.iter().enumerate() {
        assert_eq!(kv::get(db.conn(), "i").unwrap(), Some(vec![i as u8]));
    }
}

#[test]
fn closing_a_connection_leaves_its_parked_files_parked() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Parked { _dir, wal, db, .. } = Parked::new();
    park_all_idle();
    // Gone from under the parked connection: a reopen of the WAL (which may create it) would
    // bring it back.
    std::fs::remove_file(&wal).unwrap();
    let before = REOPENS_HERE.with(|n| n.get());
    drop(db);
    assert_eq!(REOPENS_HERE.with(|n| n.get()), before, "the close reopened a file");
    assert!(!wal.exists(), "the close reopened the WAL");
}
