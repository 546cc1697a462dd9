//! The SQLite file of one object: opening it, and the transaction of an event batch.

use super::clock::{PROGRESS_OPS, SqlClock};
use super::guard::Guard;
use super::heap::HeapMeter;
use super::statements::ConnectionCell;
use super::{StorageError, StorageLimits, StorageResult};
use crate::config::Durability;
use crate::ids::ObjectId;
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// How far above the quota SQLite's own page limit sits, and how far below it a single
/// statement may run without a savepoint (see the storage design note).
const BACKSTOP_MARGIN: u64 = 64 << 20;

/// The WAL a database may close with, in frames; closing with more checkpoints and truncates
/// it (see `Drop for ObjectDb`).
const WAL_FRAMES_AT_CLOSE: u64 = 64;

/// A WAL this long (1 MiB: 1,024 frames of [`PAGE_SIZE`]) is checkpointed after the commit that
/// made it so (what SQLite's `wal_autocheckpoint` would do, but run by the actor off the async
/// threads). In bytes, so a database with larger pages (made by an older host) checkpoints as
/// often as it did.
const CHECKPOINT_WAL_BYTES: u64 = 1 << 20;

/// The page size of a new object's database. Smaller than SQLite's default of 4 KiB because a
/// durable object's events are small: a commit writes a frame for each page it changed, so an
/// increment writes 1 KiB to the WAL instead of 4 KiB, a reopen replays a quarter of the bytes,
/// and a new database is 3 KiB. Measured (`make bench`-style runs, December 4 2026): 30,000
/// objects at random +25-35% (ext4), first touch and 10,000 objects at random up to 1.5-2x on
/// tmpfs, a one-row SQL insert per event +15%; a 1,000-row insert in one event not measurably
/// slower once the checkpoint came every MiB rather than every 256 frames (0-20% slower then).
/// A database keeps the page size it was made with (SQLite changes it only by `VACUUM`, which
/// guests may not run), so databases an older host made keep 4 KiB pages.
pub const PAGE_SIZE: u32 = 1024;

/// The WAL frames [`CHECKPOINT_WAL_BYTES`] come to with pages of `page_size`.
fn checkpoint_frames(page_size: u64) -> u32 {
    (CHECKPOINT_WAL_BYTES / page_size.max(512)) as u32
}

/// Where the database of an object lives.
pub fn object_db_path(data_dir: &Path, class: &str, id: &ObjectId) -> PathBuf {
    let hex = id.to_hex();
    data_dir.join("objects").join(class).join(&hex[..2]).join(format!("{hex}.sqlite"))
}

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS _wdo_kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS _wdo_meta (key TEXT PRIMARY KEY NOT NULL, value ANY) WITHOUT ROWID;
";

/// The bytes of a new database (`unborn.rs`): an empty database with the host's tables, in WAL
/// mode (header bytes 18 and 19 are 2, what `PRAGMA journal_mode=WAL` writes). Made in memory,
/// as SQLite would make the file, once per process.
fn template() -> Vec<u8> {
    let make = || -> rusqlite::Result<Vec<u8>> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE}; {SCHEMA}"))?;
        let mut bytes = conn.serialize("main")?.to_vec();
        bytes[18] = 2;
        bytes[19] = 2;
        // The version of SQLite that wrote it, which an in-memory database leaves out.
        bytes[96..100].copy_from_slice(&rusqlite::ffi::SQLITE_VERSION_NUMBER.to_be_bytes());
        Ok(bytes)
    };
    make().expect("SQLite makes an empty database in memory")
}

/// At least the page count of the database at `path` once its WAL is read: the database file's
/// pages (the template's for a database not made yet) and one more for each frame the WAL file
/// has room for (a frame holds one page, and pages are numbered from the end of the database);
/// and those frames.
fn pages_at_most(path: &Path, page_size: u64) -> (u64, u64) {
    let database = match std::fs::metadata(path).map_or(0, |m| m.len()) {
        0 => super::unborn::template().len() as u64,
        bytes => bytes,
    };
    let frames = wal_frames(path, page_size);
    (database.div_ceil(page_size) + frames, frames)
}

/// The frames the WAL file of the database at `path` has room for (0 without one): a WAL is a
/// 32-byte header, then frames of a 24-byte header and a page.
fn wal_frames(path: &Path, page_size: u64) -> u64 {
    std::fs::metadata(wal_path(path)).map_or(0, |m| m.len()).saturating_sub(WAL_HEADER) / (page_size + FRAME_HEADER)
}

/// Bytes of a WAL file's header, and of each frame's header before its page.
pub const WAL_HEADER: u64 = 32;
pub const FRAME_HEADER: u64 = 24;

/// The WAL file of the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// Keeps the -wal file when the database closes instead of deleting it (`on`), so closing and
/// reopening an object (hibernation, the open-file bound) does not create and unlink a file
/// each time. Durability is unchanged: the WAL is checkpointed on close either way.
fn persist_wal(conn: &Connection, on: bool) {
    let mut on = std::os::raw::c_int::from(on);
    // SAFETY: a valid connection handle, the "main" schema name as a C string, and a pointer to
    // an int, which is what SQLITE_FCNTL_PERSIST_WAL takes.
    unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut on).cast(),
        );
    }
}

/// An open object database. Its owner drives the transaction; storage calls run inside it.
pub struct ObjectDb {
    /// The connection, and the guest's statements prepared on it.
    cell: ConnectionCell,
    guard: Guard,
    page_size: u64,
    max_storage: u64,
    max_result_size: usize,
    /// At least the database's page count, as of the last write call (`check_quota`).
    known_pages: Cell<u64>,
    /// The page count last read exactly (`size`), or at open a bound from the files' sizes
    /// ([`pages_at_most`]), and `pages_written` at that moment: every page added since is
    /// either in the page cache or was written out after it.
    exact_pages: Cell<u64>,
    written_at_exact: Cell<u32>,
    /// Guest savepoints open in the current event (they are named `wdo_sp_<n>`).
    savepoints: Cell<u32>,
    /// Charges SQLite's time in guest calls to the event (`clock.rs`).
    clock: Arc<SqlClock>,
    /// SQLite's memory for this object's guest calls (`heap.rs`).
    heap: Arc<HeapMeter>,
    /// Pages in the WAL as of the last commit (the WAL hook's count).
    wal_frames: Arc<AtomicU32>,
    /// The frames the WAL file has room for: its length at open, or the most a commit has left
    /// in it since (a checkpoint lets the WAL start again from its beginning but leaves the
    /// file as long). What the close decides on without looking the file up again.
    wal_file_frames: Arc<AtomicU32>,
    /// The object's name, stored with the first commit that writes (so a read creates nothing).
    unsaved_name: std::cell::RefCell<Option<String>>,
    /// What takes each commit to the backup store, when the host has one (`backup/`).
    backup: std::cell::RefCell<Option<crate::backup::Capture>>,
}

impl ObjectDb {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, durability: Durability, limits: &StorageLimits) -> rusqlite::Result<ObjectDb> {
        super::heap::install();
        super::vfs::install();
        super::unborn::set_template(template);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        // "unix-none": SQLite's default VFS without its POSIX locks. They guard against other
        // processes, which the data folder's own lock already keeps out, and keeping them costs
        // every open and close a walk of a process-wide list of open files under a global
        // mutex: with thousands of databases open, the host's costliest lock. A database in
        // exclusive locking mode (below) needs no shared memory, so WAL works the same.
        // The files are looked up only if the database exists (`unborn.rs`).
        let (conn, unborn) = super::unborn::opening(|| Self::connect(path, flags, durability));
        let mut conn = conn?;
        // A string, blob or row as large as the largest key-value entry, and a little room for
        // the row's header; a larger one (`zeroblob(1e9)`) is refused before it is allocated.
        let longest = limits.max_value_size.saturating_add(1024).min(i32::MAX as usize) as i32;
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, longest)?;
        // Replaces SQLite's automatic checkpoint, which would run (and fsync) inside a commit.
        let wal_frames = Arc::new(AtomicU32::new(0));
        let wal_file_frames = Arc::new(AtomicU32::new(0));
        let (counted, longest) = (wal_frames.clone(), wal_file_frames.clone());
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames: std::ffi::c_int| {
            counted.store(frames.max(0) as u32, Ordering::Relaxed);
            longest.fetch_max(frames.max(0) as u32, Ordering::Relaxed);
            Ok(())
        }))?;
        let clock = Arc::new(SqlClock::default());
        conn.progress_handler(PROGRESS_OPS, Some(clock.handler()))?;
        // rusqlite's cache holds the host's own statements; the guest's are in the cell.
        conn.set_prepared_statement_cache_capacity(64);
        let page_size = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64;
        let backstop = (limits.max_storage.saturating_add(BACKSTOP_MARGIN) / page_size).max(16);
        conn.query_row(&format!("PRAGMA max_page_count = {backstop}"), [], |_| Ok(()))?;
        let guard = Guard::install(&mut conn)?;
        // Not `page_count`: a table-valued pragma, one of the costlier statements a new
        // connection would prepare. The files' sizes bound it, and `check_quota` reads the
        // exact count only near the quota.
        let (at_most, frames_at_open) = if unborn {
            ((super::unborn::template().len() as u64).div_ceil(page_size), 0)
        } else {
            pages_at_most(path, page_size)
        };
        wal_file_frames.fetch_max(frames_at_open.min(u64::from(u32::MAX)) as u32, Ordering::Relaxed);
        Ok(ObjectDb {
            cell: ConnectionCell::wrap(conn),
            guard,
            page_size,
            max_storage: limits.max_storage,
            max_result_size: limits.max_result_size,
            known_pages: Cell::new(at_most),
            exact_pages: Cell::new(at_most),
            written_at_exact: Cell::new(0),
            savepoints: Cell::new(0),
            clock,
            heap: HeapMeter::new(limits.max_sql_memory),
            wal_frames,
            wal_file_frames,
            unsaved_name: Default::default(),
            backup: Default::default(),
        })
    }

    /// Opens the connection and sets it up, up to the point where its database has been read.
    fn connect(path: &Path, flags: OpenFlags, durability: Durability) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags_and_vfs(path, flags, super::vfs::NAME)?;
        persist_wal(&conn, true);
        // Closing must be cheap (hibernation, the open-file bound): the WAL already holds every
        // commit durably, so skip the checkpoint (and its fsync, ~0.4 ms here) on close. The next
        // open replays the WAL's frames; checkpointing every MiB of WAL keeps that replay short.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        // `PRAGMA foreign_keys=ON` without a statement to parse.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, true)?;
        let synchronous = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        // The actor's connection is the only one, so exclusive locking costs nothing and lets
        // WAL mode keep its index in memory: no -shm file, two descriptors per database, and an
        // open+read of an existing database in ~50 µs instead of ~250 µs (measured here). The
        // page cache is kept small because a host may hold a thousand databases open.
        conn.execute_batch(&format!(
            "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; \
             PRAGMA journal_size_limit=4194304; PRAGMA cache_size=-512; \
             PRAGMA temp_store=MEMORY;"
        ))?;
        // The host's tables are made once, with the database (a new one starts from a template
        // that has them). Asking the schema SQLite has just read is a hash lookup; running
        // `CREATE TABLE IF NOT EXISTS` would parse both statements at every open.
        let has = |table: &CStr| conn.table_exists(Some(c"main"), table).unwrap_or(false);
        if !(has(c"_wdo_kv") && has(c"_wdo_meta")) {
            conn.execute_batch(SCHEMA)?;
        }
        Ok(conn)
    }

    /// Runs one guest storage call: SQLite's time is charged to the meter attached with
    /// [`ObjectDb::attach_cpu`], and its memory to this object.
    pub fn guest_call<T>(&self, call: impl FnOnce() -> T) -> T {
        self.clock.new_call();
        let _heap = self.heap.scope();
        call()
    }

    /// Charges SQLite's time in guest calls to `meter` (the event's) until detached.
    pub fn attach_cpu(&self, meter: Arc<crate::cpu::CpuMeter>) {
        self.clock.attach(meter);
    }

    pub fn detach_cpu(&self) {
        self.clock.detach();
    }

    /// The most bytes one storage call may return.
    pub fn max_result_size(&self) -> usize {
        self.max_result_size
    }

    /// SQLite's memory for this object's guest calls.
    pub fn heap(&self) -> &HeapMeter {
        &self.heap
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The database's size in bytes, as of the current transaction.
    pub fn size(&self) -> rusqlite::Result<u64> {
        // The table-valued form: `PRAGMA page_count` is re-prepared by SQLite on every run.
        let pages = self
            .conn()
            .prepare_cached("SELECT page_count FROM pragma_page_count()")?
            .query_row([], |r| r.get::<_, i64>(0))? as u64;
        self.known_pages.set(pages);
        self.exact_pages.set(pages);
        self.written_at_exact.set(self.pages_written());
        Ok(pages * self.page_size)
    }

    /// One of SQLite's per-connection counters (`sqlite3_db_status`).
    fn db_status(&self, counter: std::os::raw::c_int) -> u32 {
        let (mut current, mut highwater) = (0, 0);
        // SAFETY: a valid connection handle and two ints to write to.
        unsafe { rusqlite::ffi::sqlite3_db_status(self.conn().handle(), counter, &mut current, &mut highwater, 0) };
        current as u32
    }

    /// A mark of what this connection has written so far (see [`ObjectDb::bytes_written_since`]).
    pub fn write_mark(&self) -> u32 {
        self.pages_written()
    }

    /// Bytes written to the WAL since `mark` (the pages SQLite wrote, commits and spills).
    pub fn bytes_written_since(&self, mark: u32) -> u64 {
        u64::from(self.pages_written().wrapping_sub(mark)) * self.page_size
    }

    /// Pages SQLite has written to the WAL on this connection: at commits, and mid-transaction
    /// when the page cache spills. (A `u32` that wraps, like SQLite's own counter.)
    fn pages_written(&self) -> u32 {
        self.db_status(rusqlite::ffi::SQLITE_DBSTATUS_CACHE_WRITE)
    }

    /// The most pages SQLite's page cache holds now (each costs more than a page of memory).
    fn cached_pages(&self) -> u64 {
        u64::from(self.db_status(rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED)) / self.page_size + 1
    }

    /// Runs one guest write call so that it happens entirely, within the storage quota, or not at
    /// all: it runs in its own savepoint and is rolled back to it on any error.
    pub fn write_call<T>(&self, call: impl FnOnce() -> StorageResult<T>) -> StorageResult<T> {
        self.run("SAVEPOINT wdo_call")?;
        let result = call().and_then(|value| self.check_quota().map(|()| value));
        self.check_transaction(&result)?;
        match result {
            Ok(value) => {
                self.run("RELEASE wdo_call")?;
                Ok(value)
            }
            Err(error) => {
                self.run("ROLLBACK TO wdo_call")?;
                self.run("RELEASE wdo_call")?;
                Err(error)
            }
        }
    }

    /// Runs one guest statement that may write. SQLite undoes a failed statement by itself, so
    /// the call's savepoint only serves the quota: while the database is more than the margin
    /// below it, the statement runs bare, and a statement that alone adds more than the margin
    /// and crosses the quota cannot be undone by itself: it fails the event (`Lost`).
    pub fn write_statement<T>(&self, statement: impl FnOnce() -> StorageResult<T>) -> StorageResult<T> {
        let below_quota = self.max_storage.saturating_sub(self.known_pages.get().saturating_mul(self.page_size));
        if below_quota <= BACKSTOP_MARGIN {
            return self.write_call(statement);
        }
        let result = statement();
        self.check_transaction(&result)?;
        let value = result?;
        match self.check_quota() {
            Ok(()) => Ok(value),
            Err(StorageError::LimitExceeded(reason)) => Err(StorageError::Lost(format!(
                "{reason}; one statement added more than {} MiB at once",
                BACKSTOP_MARGIN >> 20
            ))),
            Err(e) => Err(e),
        }
    }

    /// A call ran and SQLite abandoned the transaction (an I/O error, a full disk, the page
    /// limit): the event cannot go on.
    fn check_transaction<T>(&self, result: &StorageResult<T>) -> StorageResult<()> {
        if self.in_transaction() {
            return Ok(());
        }
        Err(StorageError::Lost(match result {
            Err(e) => e.to_string(),
            Ok(_) => "the transaction ended inside a call".into(),
        }))
    }

    /// Checks the quota after a write call. A page added since the last exact read of the size
    /// is either still in the page cache or was written out since (to the WAL: at a spill or a
    /// commit), and SQLite counts both, so the exact (and slower: SQLite re-prepares
    /// `page_count` on every run) size is only read when that bound comes near the quota.
    /// The bound does not grow with the number of calls, only with the pages written.
    fn check_quota(&self) -> StorageResult<()> {
        let written = u64::from(self.pages_written().wrapping_sub(self.written_at_exact.get()));
        let bound = self.exact_pages.get() + written + self.cached_pages();
        if bound.saturating_mul(self.page_size) <= self.max_storage {
            self.known_pages.set(bound);
            return Ok(());
        }
        let size = self.size()?;
        if size > self.max_storage {
            return Err(StorageError::LimitExceeded(format!(
                "the object's storage would grow to {size} bytes; the limit is {} bytes",
                self.max_storage
            )));
        }
        Ok(())
    }

    /// Opens a guest savepoint; returns its handle (its depth).
    pub fn savepoint(&self) -> StorageResult<u32> {
        let depth = self.savepoints.get() + 1;
        self.run(&format!("SAVEPOINT wdo_sp_{depth}"))?;
        self.savepoints.set(depth);
        Ok(depth)
    }

    /// Releases (keeps) or rolls back a guest savepoint and every one opened after it.
    pub fn end_savepoint(&self, handle: u32, keep: bool) -> StorageResult<()> {
        if handle == 0 || handle > self.savepoints.get() {
            return Err(StorageError::InvalidArgument(format!(
                "savepoint {handle} is not open (open savepoints: {})",
                self.savepoints.get()
            )));
        }
        if !keep {
            self.run(&format!("ROLLBACK TO wdo_sp_{handle}"))?;
        }
        self.run(&format!("RELEASE wdo_sp_{handle}"))?;
        self.savepoints.set(handle - 1);
        Ok(())
    }

    pub fn conn(&self) -> &Connection {
        self.cell.conn()
    }

    /// Runs `f` with the prepared statement of the guest SQL `text` (prepared once per
    /// database, under the guard). `f` must not ask for another guest statement.
    pub fn with_guest_statement<T>(
        &self,
        text: &str,
        f: impl FnOnce(&mut rusqlite::Statement<'_>) -> StorageResult<T>,
    ) -> StorageResult<T> {
        self.cell.with_statement(text, &self.guard, f)
    }

    fn run(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn().prepare_cached(sql)?.execute([]).map(drop)
    }

    /// Starts the transaction of an event batch.
    pub fn begin(&self) -> rusqlite::Result<()> {
        self.run("BEGIN")
    }

    /// Commits the batch. With `synchronous=FULL` this fsyncs the WAL.
    pub fn commit(&self) -> rusqlite::Result<()> {
        let writing = self.writing();
        if writing && let Some(reason) = self.backup.borrow().as_ref().and_then(|c| c.refusing_writes()) {
            // The owner rolls the transaction back: nothing of it is saved.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some(reason),
            ));
        }
        if writing && self.unsaved_name.borrow().is_some() {
            let name = self.unsaved_name.take();
            self.conn()
                .prepare_cached("INSERT OR IGNORE INTO _wdo_meta (key, value) VALUES ('name', ?1)")?
                .execute([name])?;
        }
        self.run("COMMIT")?;
        if writing && let Some(capture) = self.backup.borrow_mut().as_mut() {
            let frames = self.wal_frames.load(Ordering::Relaxed);
            let snapshot = || self.serialize();
            let wal = |buf: &mut [u8], offset: u64| self.read_wal(buf, offset);
            if let Err(e) = capture.committed(frames, self.page_size as u32, snapshot, &wal) {
                // The commit stands; the store gets the object's whole database at its next one.
                tracing::warn!(database = self.conn().path(), "backup: cannot take this commit: {e}");
            }
        }
        Ok(())
    }

    /// Whether the transaction has written (or begun to: a statement that writes).
    fn writing(&self) -> bool {
        // SAFETY: a valid connection handle; a null schema asks about every database.
        let state = unsafe { rusqlite::ffi::sqlite3_txn_state(self.conn().handle(), std::ptr::null()) };
        state == rusqlite::ffi::SQLITE_TXN_WRITE
    }

    /// Commits the batch, then checkpoints if the WAL grew past [`CHECKPOINT_WAL_BYTES`] (off the
    /// async worker: the checkpoint fsyncs). What owners of a batch call.
    pub fn commit_and_checkpoint(&self) -> rusqlite::Result<()> {
        self.commit()?;
        if self.checkpoint_due() {
            super::off_the_async_worker(|| self.checkpoint());
        }
        Ok(())
    }

    /// Whether the WAL is long enough that the owner should [`checkpoint`](Self::checkpoint).
    pub fn checkpoint_due(&self) -> bool {
        self.wal_frames.load(Ordering::Relaxed) >= checkpoint_frames(self.page_size)
    }

    /// Copies the WAL's pages into the database (fsyncing both), so that the next commit starts
    /// the WAL again from its beginning. Blocking: call it off the async threads. A failure only
    /// leaves the WAL longer; it is logged and tried again after the next commit.
    pub fn checkpoint(&self) {
        match self.conn().query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            Ok(0) => self.wal_frames.store(0, Ordering::Relaxed),
            Ok(_) => tracing::warn!(database = self.conn().path(), "the WAL checkpoint was blocked"),
            Err(e) => tracing::warn!(database = self.conn().path(), "could not checkpoint the WAL: {e}"),
        }
    }

    /// Abandons the batch (only when the transaction itself failed).
    pub fn rollback(&self) {
        if !self.conn().is_autocommit() {
            let _ = self.run("ROLLBACK");
        }
    }

    /// Opens the savepoint that brackets one event of a batch.
    pub fn begin_event(&self) -> rusqlite::Result<()> {
        self.savepoints.set(0);
        self.run("SAVEPOINT wdo_event")
    }

    /// Keeps the event's writes in the batch.
    pub fn end_event(&self) -> rusqlite::Result<()> {
        self.run("RELEASE wdo_event")
    }

    /// Guest savepoints open in the current event.
    pub fn open_savepoints(&self) -> u32 {
        self.savepoints.get()
    }

    /// The output gate of a request leaving in the middle of an event: commits what the batch
    /// wrote so far (this event's writes included) and goes on in a new transaction, inside a
    /// new event savepoint, so a later failure rolls back only what follows. Only with no guest
    /// savepoint open. Blocking (it may fsync): call it off the async threads.
    pub fn commit_so_far(&self) -> rusqlite::Result<()> {
        debug_assert_eq!(self.savepoints.get(), 0);
        self.end_event()?;
        self.commit_and_checkpoint()?;
        self.begin()?;
        self.begin_event()
    }

    /// Undoes every write of the event (the batch's other events keep theirs).
    pub fn undo_event(&self) -> rusqlite::Result<()> {
        self.run("ROLLBACK TO wdo_event")?;
        self.run("RELEASE wdo_event")
    }

    /// The object's name as its database remembers it. A `known` name is stored, if the
    /// database has none yet, by the first commit that writes: an object only read keeps no file.
    pub fn remember_name(&self, known: Option<&str>) -> rusqlite::Result<Option<String>> {
        use rusqlite::OptionalExtension;
        if let Some(name) = known {
            *self.unsaved_name.borrow_mut() = Some(name.to_string());
            return Ok(Some(name.to_string()));
        }
        self.conn()
            .prepare_cached("SELECT value FROM _wdo_meta WHERE key = 'name'")?
            .query_row([], |r| r.get::<_, String>(0))
            .optional()
    }

    /// The object's alarm (ms since the epoch), as of the current transaction.
    pub fn alarm(&self) -> rusqlite::Result<Option<i64>> {
        self.meta_integer("alarm")
    }

    /// Sets or clears the object's alarm inside the current transaction.
    pub fn set_alarm(&self, at_ms: Option<i64>) -> rusqlite::Result<()> {
        self.set_meta_integer("alarm", at_ms)
    }

    /// An integer the host keeps in `_wdo_meta` under `key`, as of the current transaction.
    fn meta_integer(&self, key: &str) -> rusqlite::Result<Option<i64>> {
        use rusqlite::OptionalExtension;
        self.conn()
            .prepare_cached("SELECT value FROM _wdo_meta WHERE key = ?1")?
            .query_row([key], |r| r.get::<_, i64>(0))
            .optional()
    }

    /// Sets (or, with `None`, removes) an integer the host keeps in `_wdo_meta`, inside the
    /// current transaction.
    fn set_meta_integer(&self, key: &str, value: Option<i64>) -> rusqlite::Result<()> {
        match value {
            Some(value) => self
                .conn()
                .prepare_cached(
                    "INSERT INTO _wdo_meta (key, value) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute(rusqlite::params![key, value])
                .map(drop),
            None => self.conn().prepare_cached("DELETE FROM _wdo_meta WHERE key = ?1")?.execute([key]).map(drop),
        }
    }

    /// True while a batch transaction is open.
    pub fn in_transaction(&self) -> bool {
        !self.conn().is_autocommit()
    }
}

impl ObjectDb {
    /// Gives back what the connection keeps only for speed: its cached pages and the host's
    /// prepared statements (a counter's connection holds ~77 KiB of SQLite's memory, ~30 KiB
    /// of it these). For an object whose instance idled out: it stays open (no reopen, no
    /// schema read on its next event) for less, and its next event reads its few pages and
    /// prepares its statements again. Nothing happens inside a transaction.
    pub fn release_memory(&self) {
        if self.in_transaction() {
            return;
        }
        let conn = self.conn();
        conn.flush_prepared_statement_cache();
        // SAFETY: the handle is this open connection's, and nothing else uses the connection
        // meanwhile (`&self`: its owner, the actor, is here).
        unsafe { rusqlite::ffi::sqlite3_db_release_memory(conn.handle()) };
    }

    /// Closes the database of an object that went idle: SQLite checkpoints the WAL into the
    /// database on close and deletes it, so an idle object is one file of its own pages (three
    /// for a counter: 3 KiB) instead of that and up to [`WAL_FRAMES_AT_CLOSE`] frames. It costs
    /// a sync of the database, so it runs off the async threads, and only for idleness: closes
    /// that make room (the open-database bound) stay cheap.
    pub fn close_idle(self) {
        let conn = self.conn();
        let kept = conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false);
        persist_wal(conn, false);
        if let Err(e) = kept {
            tracing::warn!(database = conn.path(), "closing without a checkpoint: {e}");
        }
        super::off_the_async_worker(|| drop(self));
    }
}

impl Drop for ObjectDb {
    /// Closing skips the checkpoint (it must be cheap: hibernation, the open-file bound), but
    /// the WAL must not grow without end. SQLite restarts a WAL from its start only in the
    /// connection that checkpointed it, at that connection's next write; an object that opens,
    /// writes once and closes never gets there, so its WAL kept every event ever written and
    /// each open replayed all of it (measured: a wake took 0.25 ms after 250 such cycles and
    /// 5 ms after 3,000). So a close that leaves a WAL file longer than
    /// [`WAL_FRAMES_AT_CLOSE`] frames checkpoints it and truncates it: one fsync per ~64
    /// frames written, and an open replays at most that much.
    fn drop(&mut self) {
        if !self.in_transaction()
            && let Some(capture) = self.backup.borrow_mut().as_mut()
        {
            capture.closing(self.page_size as u32, || self.serialize());
        }
        let Some(path) = self.conn().path().filter(|p| !p.is_empty()) else { return };
        // The WAL file's length as this connection knows it: looking the file up again cost a
        // path lookup each close (strace, traffic past the open bound: 4.1 `statx` a request
        // before, 3.3 after).
        if u64::from(self.wal_file_frames.load(Ordering::Relaxed)) > WAL_FRAMES_AT_CLOSE
            && !self.in_transaction()
            && let Err(e) =
                super::off_the_async_worker(|| self.conn().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
        {
            tracing::warn!(database = path, "could not checkpoint the WAL on close: {e}");
        }
    }
}

#[path = "db_backup.rs"]
mod backup_hooks;
pub use backup_hooks::{alarm_of, put_database, replace_database, serialize_closed};

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;
