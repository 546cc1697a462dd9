//! Parking: each file's slot (open, parked or unborn) and the clock that parks idle files so
//! that object databases stay within their file budget. The design is the VFS's (`vfs.rs`);
//! this is its bookkeeping, apart from the C callbacks SQLite calls.
//!
//! Every access sets a file's `used` bit; when a file must open and the budget is full, the
//! hand walks the registry, clearing set bits and parking the first open file whose bit was
//! already clear (second chance). The walk only `try_lock`s a file, so a file in use is
//! skipped, never waited for.

use super::frames::{Frames, Plan};
use super::held::{HeldWal, Made};
use rusqlite::ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Files (not databases: a WAL database is two) the VFS keeps open before it parks one.
pub(super) static BUDGET: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Files open now (parked ones not counted).
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// Files parked since the process started, for tests and the stats page.
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// Sets how many files object databases may hold open at once. At least 4 (a database and
/// its WAL, twice, so an event that reaches another object's database does not park its own).
pub fn set_file_budget(files: usize) {
    BUDGET.store(files.max(4), Ordering::Relaxed);
}

/// What the VFS holds (for the stats page and tests).
pub struct FileCounts {
    /// Files of object databases open now.
    pub open: usize,
    /// Files it keeps open before it parks one.
    pub budget: usize,
    /// Files parked since the process started.
    pub parked: usize,
}

pub fn file_counts() -> FileCounts {
    FileCounts {
        open: OPEN.load(Ordering::Relaxed),
        budget: BUDGET.load(Ordering::Relaxed),
        parked: PARKED.load(Ordering::Relaxed),
    }
}

pub(super) struct Slot {
    pub(super) state: Mutex<State>,
    pub(super) used: AtomicBool,
    /// Its index in the registry (parkable files only; `usize::MAX` for the others).
    pub(super) index: usize,
}

impl Slot {
    /// Its index in the registry, if it has one: what a reopen must not park (`make_room`).
    pub(super) fn own(&self) -> Option<usize> {
        (self.index != usize::MAX).then_some(self.index)
    }

    /// Parks the file unless it is in use or already parked; says whether it did.
    fn try_park(&self) -> bool {
        let Ok(mut state) = self.state.try_lock() else { return false };
        if !state.open {
            return false;
        }
        state.close_inner();
        PARKED.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// How the unix VFS's file of `size` bytes is allocated (and freed).
pub(super) fn inner_layout(size: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(size.max(8), 16).expect("a small file struct")
}

pub(super) struct State {
    /// The unix VFS's file, `szOsFile` bytes of its own.
    pub(super) inner: *mut ffi::sqlite3_file,
    pub(super) inner_size: usize,
    pub(super) vfs: *mut ffi::sqlite3_vfs,
    pub(super) open: bool,
    /// No file yet (`unborn.rs`): reads see the template; a write makes the file.
    pub(super) unborn: bool,
    /// A WAL that made its database file: the database is synced at the WAL's first sync.
    pub(super) database_unsynced: bool,
    /// A WAL made from unborn and not yet synced (see `sync`).
    pub(super) fresh_wal: bool,
    /// The WAL of a database that was unborn when its connection opened: its bytes, until it
    /// becomes a file (`held.rs`).
    pub(super) held: Option<HeldWal>,
    /// Valid until the file's `xClose` (SQLite's promise to a VFS).
    pub(super) path: *const c_char,
    pub(super) flags: c_int,
    /// File controls that set state in the unix VFS's file: read at open, kept up to date,
    /// answered from here while parked and set again after a reopen.
    pub(super) persist_wal: c_int,
    pub(super) powersafe_overwrite: c_int,
    /// Constant for a file: read at open, answered from here.
    pub(super) sector_size: c_int,
    pub(super) device_characteristics: c_int,
    /// A WAL's frame header waiting to be written with its page (`frames.rs`).
    pub(super) frames: Frames,
}

// SAFETY: the raw pointers are owned by the slot (inner) or outlive it (path, vfs), and every
// use goes through the mutex.
unsafe impl Send for State {}

impl State {
    pub(super) fn methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: called only while open, when the inner file's methods are set.
        unsafe { &*(*self.inner).pMethods }
    }

    pub(super) fn path(&self) -> &str {
        // SAFETY: valid until xClose; SQLite's full path names are UTF-8 (ours come from Rust).
        unsafe { CStr::from_ptr(self.path) }.to_str().unwrap_or_default()
    }

    pub(super) fn main_database(&self) -> bool {
        self.flags & ffi::SQLITE_OPEN_MAIN_DB != 0
    }

    /// Opens the file if it is not: makes it (unborn) or reopens it (parked). A held WAL's
    /// bytes are written to the file it becomes before anything else.
    pub(super) fn ensure_open(&mut self, own: Option<usize>) -> c_int {
        if self.open {
            return ffi::SQLITE_OK;
        }
        if self.unborn {
            let rc = self.make();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let rc = self.reopen(own);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if let Some(held) = &self.held {
            let rc = self.write_open(held.bytes(), 0);
            if rc != ffi::SQLITE_OK {
                // Still held: the next access opens the file and writes them again.
                self.close_inner();
                return rc;
            }
            self.held = None;
        }
        ffi::SQLITE_OK
    }

    /// Makes an unborn file: its database from the template (a WAL's too, if it has none and no
    /// held commit made it). The WAL itself is created by the reopen that follows.
    fn make(&mut self) -> c_int {
        let path = self.path().to_string();
        let made_by_commit = self.held.as_ref().and_then(|held| held.made);
        let made = if self.main_database() {
            // Only a write-like call the template cannot answer gets here before the WAL's first
            // commit (which makes the database itself): rare, so it syncs at once.
            super::unborn::make_database(Path::new(&path), true).map(drop)
        } else if let Some(made) = made_by_commit {
            self.database_unsynced = made == Made::Unsynced;
            self.fresh_wal = true;
            Ok(())
        } else {
            let database = Path::new(super::unborn::database_of_wal(&path));
            super::unborn::make_database(database, false).map(|made| {
                self.database_unsynced = made;
                self.fresh_wal = true;
            })
        };
        if let Err(e) = made {
            tracing::error!("cannot create the database file for {path}: {e}");
            return ffi::SQLITE_IOERR;
        }
        let database = if self.main_database() { &path } else { super::unborn::database_of_wal(&path) };
        super::unborn::made(database.as_bytes());
        self.unborn = false;
        ffi::SQLITE_OK
    }

    /// Reopens a parked file, making room first.
    fn reopen(&mut self, own: Option<usize>) -> c_int {
        make_room(own);
        let mut out_flags = 0;
        // SAFETY: the inner buffer is szOsFile bytes for this VFS, closed (xOpen initializes it).
        let rc = unsafe {
            ((*self.vfs).xOpen.expect("unix VFS opens"))(
                self.vfs,
                self.path,
                self.inner,
                self.reopen_flags(),
                &mut out_flags,
            )
        };
        if rc != ffi::SQLITE_OK {
            // SAFETY: path is valid until xClose.
            let path = unsafe { CStr::from_ptr(self.path) }.to_string_lossy();
            tracing::error!(rc, "cannot reopen a parked database file {path}");
            return ffi::SQLITE_IOERR;
        }
        self.open = true;
        OPEN.fetch_add(1, Ordering::Relaxed);
        #[cfg(test)]
        REOPENS_HERE.with(|n| n.set(n.get() + 1));
        for (op, value) in [
            (ffi::SQLITE_FCNTL_PERSIST_WAL, self.persist_wal),
            (ffi::SQLITE_FCNTL_POWERSAFE_OVERWRITE, self.powersafe_overwrite),
        ] {
            let mut value = value;
            // SAFETY: open; both controls take a pointer to an int.
            unsafe { (self.methods().xFileControl.expect("unix files"))(self.inner, op, (&raw mut value).cast()) };
        }
        ffi::SQLITE_OK
    }

    /// A main database reopens without CREATE: if it vanished, that is an error, not an empty
    /// database under a connection that has cached its pages.
    fn reopen_flags(&self) -> c_int {
        if self.flags & ffi::SQLITE_OPEN_MAIN_DB != 0 { self.flags & !ffi::SQLITE_OPEN_CREATE } else { self.flags }
    }

    /// Writes `bytes` at `offset`, opening the file first if it is parked or unborn.
    fn write_inner(&mut self, bytes: &[u8], offset: i64, own: Option<usize>) -> c_int {
        let rc = self.ensure_open(own);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        #[cfg(test)]
        WRITES_HERE.with(|n| n.set(n.get() + 1));
        self.write_open(bytes, offset)
    }

    /// Writes `bytes` at `offset` of the open file.
    fn write_open(&self, bytes: &[u8], offset: i64) -> c_int {
        // SAFETY: open, so its methods are set; the bytes outlive the call.
        unsafe {
            (self.methods().xWrite.expect("unix files"))(
                self.inner,
                bytes.as_ptr().cast::<c_void>(),
                bytes.len() as c_int,
                offset,
            )
        }
    }

    /// SQLite's write to a WAL that exists: a frame's header waits for its page, and the two
    /// are written in one call (`frames.rs`).
    pub(super) fn write_wal(&mut self, data: &[u8], offset: i64, own: Option<usize>) -> c_int {
        thread_local! {
            /// Where a frame's header and page are joined: one buffer per thread, not per file.
            static JOINED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let held = self.frames.held();
        let rc = JOINED.with_borrow_mut(|joined| {
            let Plan { first, then } = self.frames.write(data, offset, joined);
            let mut rc = ffi::SQLITE_OK;
            if let Some((header, at)) = first {
                rc = self.write_inner(&header, at, own);
            }
            if let Some((bytes, at)) = then
                && rc == ffi::SQLITE_OK
            {
                rc = self.write_inner(bytes, at, own);
            }
            rc
        });
        if rc != ffi::SQLITE_OK {
            self.frames.restore(held);
        }
        rc
    }

    /// Writes a WAL frame header that waits for its page, before any other call reaches the
    /// file (`frames.rs`). The file is open.
    pub(super) fn write_frame_header(&mut self, own: Option<usize>) -> c_int {
        let Some((header, at)) = self.frames.take_header() else { return ffi::SQLITE_OK };
        let rc = self.write_inner(&header, at, own);
        if rc != ffi::SQLITE_OK {
            self.frames.restore(Some((header, at)));
        }
        rc
    }

    /// Whether this is a WAL whose frame headers wait for their pages: one that exists (an
    /// unborn one's first write makes it; a held one keeps everything in memory anyway).
    pub(super) fn joins_frames(&self) -> bool {
        self.flags & ffi::SQLITE_OPEN_WAL != 0 && !self.unborn
    }

    pub(super) fn close_inner(&mut self) -> c_int {
        if !self.open {
            return ffi::SQLITE_OK;
        }
        self.open = false;
        OPEN.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: open, so its methods are set; xClose releases the descriptor.
        unsafe { (self.methods().xClose.expect("unix files"))(self.inner) }
    }
}

/// The parkable files, in clock order.
struct Registry {
    slots: Vec<Option<Arc<Slot>>>,
    free: Vec<usize>,
    hand: usize,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry { slots: Vec::new(), free: Vec::new(), hand: 0 }))
}

/// Parks files until one more fits in the budget, or until a full sweep found none to park
/// (all in use: the budget is then exceeded for a moment rather than waited on).
pub(super) fn make_room(own: Option<usize>) {
    if OPEN.load(Ordering::Relaxed) < BUDGET.load(Ordering::Relaxed) {
        return;
    }
    let mut registry = registry().lock().unwrap();
    let len = registry.slots.len();
    // Two turns: the first may only clear `used` bits.
    for _ in 0..len.saturating_mul(2) {
        if OPEN.load(Ordering::Relaxed) < BUDGET.load(Ordering::Relaxed) {
            return;
        }
        let at = registry.hand % len.max(1);
        registry.hand = at + 1;
        let Some(slot) = &registry.slots[at] else { continue };
        if Some(at) == own || slot.used.swap(false, Ordering::Relaxed) {
            continue;
        }
        slot.try_park();
    }
}

/// Parks every open file not in use right now; returns how many. Tests use it to park a file
/// for sure (other tests' files are parked too, which they cannot tell).
#[cfg(test)]
pub fn park_all_idle() -> usize {
    let registry = registry().lock().unwrap();
    registry.slots.iter().flatten().filter(|slot| slot.try_park()).count()
}

#[cfg(test)]
thread_local! {
    /// Reopens on this thread: exact for a test, whatever other tests do meanwhile.
    pub static REOPENS_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Writes to WAL files that exist, on this thread (a frame's header and page joined count
    /// once; other files' writes are not counted).
    pub static WRITES_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a file the VFS opened with a descriptor (`close_inner` uncounts it).
pub(super) fn count_open() {
    OPEN.fetch_add(1, Ordering::Relaxed);
}

/// Makes the slot of a file just opened; a parkable one joins the clock.
pub(super) fn register(state: State, parkable: bool) -> Arc<Slot> {
    let mut registry = registry().lock().unwrap();
    let index = if parkable { registry.free.pop().unwrap_or(registry.slots.len()) } else { usize::MAX };
    let slot = Arc::new(Slot { state: Mutex::new(state), used: AtomicBool::new(true), index });
    if parkable {
        if index == registry.slots.len() {
            registry.slots.push(Some(slot.clone()));
        } else {
            registry.slots[index] = Some(slot.clone());
        }
    }
    slot
}

/// Takes a closing file's slot off the clock.
pub(super) fn unregister(slot: &Slot) {
    if slot.index != usize::MAX {
        let mut registry = registry().lock().unwrap();
        registry.slots[slot.index] = None;
        registry.free.push(slot.index);
    }
}
