//! What the backup (`backup/`) asks of an object's database beyond its commits: the whole
//! database as a snapshot, the wait for a commit to be in the store (sync mode), and putting a
//! restored database in place.

use super::{ObjectDb, wal_path};
use std::path::Path;
use std::sync::Arc;

impl ObjectDb {
    /// The whole database as of the last commit (a backup snapshot).
    pub(super) fn serialize(&self) -> rusqlite::Result<Vec<u8>> {
        let mut size: rusqlite::ffi::sqlite3_int64 = 0;
        // SAFETY: a valid connection handle; SQLite returns a copy of the database it allocated
        // (freed below with sqlite3_free) and its size, or null.
        unsafe {
            let data = rusqlite::ffi::sqlite3_serialize(self.conn().handle(), c"main".as_ptr(), &raw mut size, 0);
            if data.is_null() {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOMEM),
                    Some("cannot serialize the database".into()),
                ));
            }
            let bytes = std::slice::from_raw_parts(data, size as usize).to_vec();
            rusqlite::ffi::sqlite3_free(data.cast());
            Ok(bytes)
        }
    }

    /// Reads the WAL as the connection sees it: through SQLite's own file (held in memory for a
    /// new object, `held.rs`; parked or open), filling `buf` from `offset`.
    pub(super) fn read_wal(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let mut file: *mut rusqlite::ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: a valid connection handle; JOURNAL_POINTER writes the pointer to its WAL's
        // file, whose xRead we call as SQLite would, between statements on the connection's
        // thread.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_file_control(
                self.conn().handle(),
                c"main".as_ptr(),
                rusqlite::ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                (&raw mut file).cast(),
            );
            if file.is_null() || (*file).pMethods.is_null() {
                return Err(std::io::Error::other("the database has no WAL open"));
            }
            let read = (*(*file).pMethods).xRead.expect("files can be read");
            read(file, buf.as_mut_ptr().cast(), buf.len() as std::ffi::c_int, offset as i64)
        };
        match rc {
            rusqlite::ffi::SQLITE_OK => Ok(()),
            rusqlite::ffi::SQLITE_IOERR_SHORT_READ => {
                Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the WAL is shorter than its frames"))
            }
            rc => Err(std::io::Error::other(format!("cannot read the WAL (SQLite error {rc})"))),
        }
    }

    /// Queues the whole database for the backup store now (after a restore put it in place).
    pub fn ship_snapshot(&self) {
        if let Some(capture) = self.backup.borrow_mut().as_mut() {
            capture.ship_now(self.page_size as u32, || self.serialize());
        }
    }

    /// Ships every commit that writes to the backup store from now on, fenced with `token` (the
    /// cluster claim the object is held under; 0 outside a cluster). In a cluster a write commits
    /// only while this host holds `held_under`, the lease it held the object under.
    pub fn attach_backup(
        &self,
        backup: Arc<crate::backup::Backup>,
        object: crate::backup::format::ObjectRef,
        token: u64,
        held_under: Option<i64>,
    ) {
        self.backup.replace(Some(crate::backup::Capture::new(backup, object, token, held_under)));
    }

    /// The backup store this database ships to, if any.
    pub fn backup(&self) -> Option<Arc<crate::backup::Backup>> {
        self.backup.borrow().as_ref().map(|capture| capture.backup().clone())
    }

    /// The time `storage.restore-on-next-session` asked the object to come back to, if any.
    pub fn restore_asked(&self) -> rusqlite::Result<Option<u64>> {
        Ok(self.meta_integer("restore_to")?.map(|ms| ms as u64))
    }

    /// Asks (inside the current transaction) that the object come back as it was at `at_ms`
    /// when its next session starts; `None` forgets the ask.
    pub fn ask_restore(&self, at_ms: Option<u64>) -> rusqlite::Result<()> {
        self.set_meta_integer("restore_to", at_ms.map(|ms| ms as i64))
    }

    /// In sync backup mode, what the last commit must wait for before anything it caused (a
    /// reply, a WebSocket message, an outbound request) leaves the host. `forget`: see
    /// `Capture::unconfirmed`.
    pub fn unconfirmed(&self, forget: bool) -> Option<crate::backup::Unconfirmed> {
        self.backup.borrow_mut().as_mut()?.unconfirmed(forget)
    }
}

/// Puts `bytes` (a whole database) in place of the database at `path`, which must be closed:
/// its WAL goes first (frames of the old database must never be replayed over the new one),
/// then the new file is renamed over the old one.
pub fn replace_database(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(wal_path(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    crate::files::make_private_dir(path.parent().expect("a database is in a folder"))?;
    crate::files::write_atomically(path, bytes, 0o600)
}

/// Puts a database from the backup store in place of the object's at `path` (closed), or
/// removes it (`None`: the object had no database); returns the alarm the database holds, if
/// any (its object's name and time), for the alarm index.
pub fn put_database(path: &Path, bytes: Option<&[u8]>) -> std::io::Result<Option<(Option<String>, i64)>> {
    match bytes {
        Some(bytes) => replace_database(path, bytes)?,
        None => {
            for file in [wal_path(path), path.to_path_buf()] {
                match std::fs::remove_file(file) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            return Ok(None);
        }
    }
    alarm_of(path).map_err(std::io::Error::other)
}

/// The alarm a closed object's database holds: the object's name (if known) and the time.
pub fn alarm_of(path: &Path) -> rusqlite::Result<Option<(Option<String>, i64)>> {
    use rusqlite::OptionalExtension;
    let db = rusqlite::Connection::open(path)?;
    // As the host opens it: no -shm file left behind.
    db.query_row("PRAGMA locking_mode=EXCLUSIVE", [], |_| Ok(()))?;
    let meta = |key: &str| {
        db.query_row("SELECT value FROM _wdo_meta WHERE key = ?1", [key], |r| r.get::<_, rusqlite::types::Value>(0))
            .optional()
    };
    let Some(rusqlite::types::Value::Integer(at_ms)) = meta("alarm").unwrap_or(None) else { return Ok(None) };
    let name = match meta("name")? {
        Some(rusqlite::types::Value::Text(name)) => Some(name),
        _ => None,
    };
    Ok(Some((name, at_ms)))
}

/// The whole database of a closed object at `path`, its WAL included (`None`: it has no file).
pub fn serialize_closed(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut db = rusqlite::Connection::open(path).map_err(std::io::Error::other)?;
    // As the host opens it: no -shm file left behind.
    db.query_row("PRAGMA locking_mode=EXCLUSIVE", [], |_| Ok(())).map_err(std::io::Error::other)?;
    let data = db.serialize(rusqlite::MAIN_DB).map_err(std::io::Error::other)?;
    Ok(Some(data.to_vec()))
}
