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

fn writes_here() -> usize {
    crate::storage::parking::WRITES_HERE.with(std::cell::Cell::get)
}

fn wal_frames(wal: &std::path::Path) -> u64 {
    (std::fs::metadata(wal).unwrap().len() - 32) / (24 + 1024)
}

#[test]
fn each_wal_frame_is_one_write_with_its_header() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Parked { _dir, path, wal, db, limits } = Parked::new();
    // A commit soon after a checkpoint writes the WAL's header again; the ones after it only
    // frames.
    put(&db, &limits, "a", b"2");
    put(&db, &limits, "a", b"1");
    // One key: one page changed, one frame (two writes without `frames.rs`).
    let (frames, writes) = (db.write_mark(), writes_here());
    put(&db, &limits, "b", b"2");
    assert_eq!((db.write_mark() - frames, writes_here() - writes), (1, 1));
    // A value over several pages: a frame each, still a write each.
    let (frames, writes) = (db.write_mark(), writes_here());
    put(&db, &limits, "c", &[7u8; 5000]);
    let added = db.write_mark() - frames;
    assert!(added >= 5, "{added} frames");
    assert_eq!(writes_here() - writes, added as usize);
    assert!(wal_frames(&wal) >= 7);
    // Parked between commits, and read back by a fresh connection without a checkpoint.
    park_all_idle();
    put(&db, &limits, "d", b"4");
    drop(db);
    let db = ObjectDb::open(&path, Durability::Normal, &limits).unwrap();
    for (key, value) in [("a", &b"1"[..]), ("b", b"2"), ("c", &[7u8; 5000]), ("d", b"4")] {
        assert_eq!(kv::get(db.conn(), key).unwrap().as_deref(), Some(value), "{key}");
    }
}

/// A WAL file opened through the VFS, called directly.
struct RawWal {
    file: Vec<u64>,
    /// The path SQLite's file points to until it is closed (in `drop`).
    _path: std::ffi::CString,
}

impl RawWal {
    fn open(wal: &std::path::Path) -> RawWal {
        // The unix VFS gives a WAL its database's permissions, so the database is there too.
        let database = wal.to_str().unwrap().strip_suffix("-wal").unwrap();
        std::fs::write(database, super::super::unborn::template()).unwrap();
        std::fs::write(wal, [0u8; 32]).unwrap();
        let path = std::ffi::CString::new(wal.to_str().unwrap()).unwrap();
        // SAFETY: our registered VFS, a buffer of its szOsFile bytes, a path that outlives it.
        unsafe {
            install();
            let vfs = ffi::sqlite3_vfs_find(NAME.as_ptr());
            let mut file = vec![0u64; ((*vfs).szOsFile as usize).div_ceil(8)];
            let flags = ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE;
            let rc = ((*vfs).xOpen.unwrap())(vfs, path.as_ptr(), file.as_mut_ptr().cast(), flags, std::ptr::null_mut());
            assert_eq!(rc, ffi::SQLITE_OK);
            RawWal { file, _path: path }
        }
    }

    fn methods(&mut self) -> (&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) {
        let file: *mut ffi::sqlite3_file = self.file.as_mut_ptr().cast();
        // SAFETY: opened by `open`, so its methods are set.
        (unsafe { &*(*file).pMethods }, file)
    }

    fn write(&mut self, bytes: &[u8], offset: i64) {
        let (m, file) = self.methods();
        // SAFETY: an open file and `bytes.len()` bytes.
        let rc = unsafe { (m.xWrite.unwrap())(file, bytes.as_ptr().cast(), bytes.len() as i32, offset) };
        assert_eq!(rc, ffi::SQLITE_OK);
    }

    fn read(&mut self, len: usize, offset: i64) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        let (m, file) = self.methods();
        // SAFETY: an open file and `len` bytes to fill.
        let rc = unsafe { (m.xRead.unwrap())(file, bytes.as_mut_ptr().cast(), len as i32, offset) };
        assert_eq!(rc, ffi::SQLITE_OK);
        bytes
    }
}

impl Drop for RawWal {
    fn drop(&mut self) {
        let (m, file) = self.methods();
        // SAFETY: open, closed once.
        unsafe { (m.xClose.unwrap())(file) };
    }
}

#[test]
fn a_frame_header_waiting_for_its_page_is_in_the_file_before_anything_looks() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("o.sqlite-wal");
    let on_disk = || std::fs::read(&wal).unwrap();
    let mut file = RawWal::open(&wal);
    // A header waits; a read of it writes it first.
    file.write(&[1; 24], 32);
    assert_eq!(on_disk().len(), 32, "held");
    assert_eq!(file.read(24, 32), vec![1; 24]);
    assert_eq!(on_disk()[32..], [1; 24]);
    // A header waits through a park; its page reopens the file and lands with it, one write.
    file.write(&[2; 1024], 56);
    file.write(&[3; 24], 1080);
    assert!(park_all_idle() >= 1);
    assert_eq!(descriptors_on(&wal), 0, "parked");
    assert_eq!(on_disk().len(), 1080, "the header is still held");
    let writes = writes_here();
    file.write(&[4; 1024], 1104);
    assert_eq!(writes_here() - writes, 1);
    let bytes = on_disk();
    assert_eq!((bytes.len(), &bytes[1080..1104], &bytes[1104..]), (2128, &[3u8; 24][..], &[4u8; 1024][..]));
    // A header a write elsewhere does not continue is written before that write.
    file.write(&[5; 24], 2128);
    file.write(&[6; 8], 0);
    assert_eq!((&on_disk()[..8], &on_disk()[2128..]), (&[6u8; 8][..], &[5u8; 24][..]));
    // A header whose page never comes is dropped at close: on disk it would be no frame.
    file.write(&[7; 24], 3176);
    drop(file);
    assert_eq!(on_disk().len(), 2152);
}
