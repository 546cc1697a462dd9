use crate::config::Durability;
use crate::storage::{ObjectDb, StorageLimits, kv};
use rusqlite::ffi;
use std::path::{Path, PathBuf};

/// A path for a database in a folder that does not exist yet.
fn new_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("ab").join("o.sqlite")
}

fn wal(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", path.display()))
}

fn open(path: &Path) -> ObjectDb {
    ObjectDb::open(path, Durability::Normal, &StorageLimits::default()).unwrap()
}

/// One batch: reads `key`, and writes `value` to it if given.
fn batch(db: &ObjectDb, key: &str, value: Option<&[u8]>) -> Option<Vec<u8>> {
    db.begin().unwrap();
    db.remember_name(Some("the-name")).unwrap();
    let old = kv::get(db.conn(), key).unwrap();
    if let Some(value) = value {
        kv::put(db.conn(), &StorageLimits::default(), key, value).unwrap();
    }
    db.commit_and_checkpoint().unwrap();
    old
}

fn stored_name(db: &ObjectDb) -> Option<String> {
    db.begin().unwrap();
    let name = db.remember_name(None).unwrap();
    db.commit().unwrap();
    name
}

#[test]
fn an_object_that_is_only_read_has_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_path(&dir);
    let db = open(&path);
    assert_eq!(batch(&db, "a", None), None);
    assert_eq!(batch(&db, "b", None), None);
    let tables: i64 = db.conn().query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).unwrap();
    assert_eq!(tables, 2, "the host's tables are there");
    db.close_idle();
    assert!(!path.parent().unwrap().exists(), "not even its folder");
}

#[test]
fn the_first_write_makes_the_database_the_second_its_wal_and_the_name_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_path(&dir);
    let db = open(&path);
    assert_eq!(batch(&db, "a", None), None);
    assert!(!path.exists());
    assert_eq!(batch(&db, "a", Some(b"1")), None);
    assert!(path.exists() && !wal(&path).exists(), "the first commit is in the database file");
    assert_eq!(batch(&db, "a", None), Some(b"1".to_vec()));
    assert_eq!(batch(&db, "b", Some(b"2")), None);
    assert!(wal(&path).exists(), "the second is in the WAL");
    drop(db);
    let db = open(&path);
    assert_eq!(batch(&db, "a", None), Some(b"1".to_vec()));
    assert_eq!(batch(&db, "b", None), Some(b"2".to_vec()));
    assert_eq!(stored_name(&db).as_deref(), Some("the-name"));
    let check: String = db.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn a_woken_object_that_only_reads_makes_no_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_path(&dir);
    let db = open(&path);
    batch(&db, "a", Some(b"1"));
    db.close_idle(); // checkpoints and removes the WAL
    std::thread::sleep(std::time::Duration::from_millis(50)); // the close runs off this thread
    assert!(path.exists() && !wal(&path).exists());
    let db = open(&path);
    assert_eq!(batch(&db, "a", None), Some(b"1".to_vec()));
    drop(db);
    assert!(!wal(&path).exists());
}

#[test]
fn every_state_a_crash_can_leave_while_the_files_are_made_opens_as_an_empty_object() {
    let dir = tempfile::tempdir().unwrap();
    // Created, nothing written yet (a crash before the template's write).
    let empty = dir.path().join("empty.sqlite");
    std::fs::write(&empty, b"").unwrap();
    // The template written, the WAL never made (a crash before the first commit's write).
    let template = dir.path().join("template.sqlite");
    std::fs::write(&template, super::template()).unwrap();
    for path in [empty, template] {
        let db = open(&path);
        assert_eq!(batch(&db, "a", None), None, "{}", path.display());
        batch(&db, "a", Some(b"1"));
        drop(db);
        let db = open(&path);
        assert_eq!(batch(&db, "a", None), Some(b"1".to_vec()), "{}", path.display());
    }
}

#[test]
fn the_template_is_the_database_sqlite_makes() {
    let dir = tempfile::tempdir().unwrap();
    // SQLite's allocator is installed before SQLite starts, whichever test starts it (the
    // SQL memory test counts on its meters).
    crate::storage::heap::install();
    let path = dir.path().join("made-by-sqlite.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA page_size={}; PRAGMA journal_mode=WAL; {}",
        super::super::PAGE_SIZE,
        super::super::db::SCHEMA
    ))
    .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    drop(conn);
    let made = std::fs::read(&path).unwrap();
    let template = super::template();
    assert_eq!(made.len(), template.len());
    // Bytes 24-27 and 92-95 count the commits that made it, which differ with the way there.
    let differing: Vec<usize> = (0..made.len()).filter(|&i| made[i] != template[i]).collect();
    let counters = |i: &usize| (24..28).contains(i) || (92..96).contains(i);
    assert!(differing.iter().all(counters), "bytes {differing:?} differ");
}

/// The sector size and device characteristics of a database's main file, as SQLite sees them.
fn geometry(db: &ObjectDb) -> (i32, i32) {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: a valid connection; FILE_POINTER writes the main file's pointer, whose methods we
    // then call as SQLite would.
    unsafe {
        ffi::sqlite3_file_control(
            db.conn().handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast(),
        );
        let methods = &*(*file).pMethods;
        (methods.xSectorSize.unwrap()(file), methods.xDeviceCharacteristics.unwrap()(file))
    }
}

#[test]
fn an_unborn_file_reports_the_geometry_of_a_real_one() {
    let dir = tempfile::tempdir().unwrap();
    let (real, unborn) = (dir.path().join("real.sqlite"), dir.path().join("unborn.sqlite"));
    let db = open(&real);
    batch(&db, "a", Some(b"1"));
    drop(db);
    let (real, unborn) = (open(&real), open(&unborn));
    assert!(!dir.path().join("unborn.sqlite").exists());
    assert_eq!(geometry(&unborn), geometry(&real));
}

#[test]
fn a_new_database_is_opened_without_looking_for_its_journal_or_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_path(&dir);
    let before = super::KNOWN_ABSENT_HERE.with(|n| n.get());
    let db = open(&path);
    // SQLite asks for the -journal and the -wal; the WAL's open asks too.
    let answered = super::KNOWN_ABSENT_HERE.with(|n| n.get()) - before;
    assert!(answered >= 2, "{answered} answered without a lookup");
    assert_eq!(batch(&db, "a", Some(b"1")), None);
    drop(db);
    // An existing database is looked up as before: its WAL is found and read.
    let before = super::KNOWN_ABSENT_HERE.with(|n| n.get());
    let db = open(&path);
    assert_eq!(super::KNOWN_ABSENT_HERE.with(|n| n.get()), before);
    assert_eq!(batch(&db, "a", None), Some(b"1".to_vec()));
}

#[test]
fn a_wal_left_beside_a_missing_database_is_not_replayed_over_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_path(&dir);
    let db = open(&path);
    batch(&db, "first", Some(b"1"));
    batch(&db, "old", Some(b"stale"));
    drop(db);
    assert!(wal(&path).exists(), "the WAL stays when its database closes");
    // Something outside the host removes the database and leaves its WAL.
    std::fs::remove_file(&path).unwrap();
    let db = open(&path);
    assert_eq!(batch(&db, "old", None), None, "the other database's frames are not read");
    assert_eq!(batch(&db, "new", Some(b"1")), None);
    drop(db);
    let db = open(&path);
    assert_eq!(batch(&db, "old", None), None);
    assert_eq!(batch(&db, "new", None), Some(b"1".to_vec()));
    let check: String = db.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn a_first_commit_larger_than_a_page_of_the_cache_goes_in_the_wal_as_before() {
    for durability in [Durability::Normal, Durability::Full] {
        let dir = tempfile::tempdir().unwrap();
        let path = new_path(&dir);
        let db = ObjectDb::open(&path, durability, &StorageLimits::default()).unwrap();
        let big = vec![7u8; 5000];
        assert_eq!(batch(&db, "big", Some(&big)), None);
        assert!(wal(&path).exists(), "{durability:?}: a commit past 4 KiB is written to the WAL");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), super::template().len() as u64, "the template");
        drop(db);
        let db = open(&path);
        assert_eq!(batch(&db, "big", None), Some(big), "{durability:?}");
    }
}

#[test]
fn a_database_made_by_its_first_commit_checkpoints_and_closes_as_any_other() {
    for durability in [Durability::Normal, Durability::Full] {
        let dir = tempfile::tempdir().unwrap();
        let path = new_path(&dir);
        let db = ObjectDb::open(&path, durability, &StorageLimits::default()).unwrap();
        batch(&db, "a", Some(b"1"));
        // A checkpoint reads the commit's frames (held) and writes them to the file it made.
        db.checkpoint();
        assert_eq!(batch(&db, "a", None), Some(b"1".to_vec()));
        db.close_idle();
        std::thread::sleep(std::time::Duration::from_millis(50)); // the close runs off this thread
        assert!(path.exists() && !wal(&path).exists(), "{durability:?}");
        let db = open(&path);
        assert_eq!(batch(&db, "a", None), Some(b"1".to_vec()), "{durability:?}");
        assert_eq!(stored_name(&db).as_deref(), Some("the-name"));
        let check: String = db.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }
}

#[test]
fn after_a_database_made_by_its_first_commit_every_commit_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_path(&dir);
    let db = ObjectDb::open(&path, Durability::Full, &StorageLimits::default()).unwrap();
    for i in 0..50u8 {
        batch(&db, &format!("k{i}"), Some(&[i; 100]));
        if i == 0 {
            assert!(!wal(&path).exists());
        }
    }
    drop(db); // no checkpoint: the next open replays the WAL over the made file
    let db = open(&path);
    for i in 0..50u8 {
        assert_eq!(batch(&db, &format!("k{i}"), None), Some(vec![i; 100]), "k{i}");
    }
    let check: String = db.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}
