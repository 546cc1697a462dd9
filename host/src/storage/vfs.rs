//! The VFS object databases open through: SQLite's `unix-none`, with a bound on the files it
//! holds open at once.
//!
//! # Design
//!
//! A connection is cheap to keep (its parsed schema, its prepared statements, a few cached
//! pages and the WAL index: tens of KiB) and costly to make: opening a database parses its
//! schema and the open-time pragmas, reads the WAL back into an index, and every host statement
//! is prepared again. With traffic spread over more objects than stay open, that was over half
//! of the host's CPU. What limits how many connections a process may keep is not memory but
//! file descriptors: each WAL database holds two.
//!
//! So connections stay open and their files are *parked*: when opening a file would take the
//! process past its budget ([`set_file_budget`]), this VFS closes the descriptor of a file that
//! has not been used for a while, and a parked file reopens by itself on its next access.
//! SQLite never notices: with exclusive locking (every object database uses it) the connection
//! is the file's only user, holds no POSIX locks (`unix-none`) and keeps its WAL index in its own
//! memory, so nothing about the file lives in the descriptor but the descriptor. What the unix
//! VFS keeps per open file and SQLite sets through file controls (the persistent-WAL flag,
//! power-safe overwrite) is remembered here and set again after a reopen.
//!
//! What needs no descriptor is answered without one, so a parked file stays parked: the locks
//! (no-ops in `unix-none`), the sector size and device characteristics (read at open), and the
//! hints SQLite gives that the unix VFS ignores. Closing a connection whose files are parked
//! reopens nothing.
//!
//! Only main databases and WAL files are parked; other files (journals, temporary files that
//! are unlinked as soon as they are open) pass through untouched.
//!
//! A database or WAL that does not exist yet opens *unborn* (`unborn.rs`): like a parked file
//! it has no descriptor, its reads are answered from a template, and its first write makes it.
//! The WAL of an unborn database is *held* (`held.rs`): its bytes stay in memory, its first
//! commit makes the database file, and it becomes a file itself at the next write.
//!
//! **Threads.** SQLite calls a file's methods from its connection's thread, one call at a time,
//! but a park comes from whichever thread needs room. Each file's inner handle sits behind a
//! mutex that every method holds for its call; the parker only `try_lock`s, so a file in use is
//! skipped, never waited for. The victim is found by a clock (second chance): every access sets
//! the file's `used` bit, and the hand parks the first open file whose bit is already clear.
//! The slots, the clock and the budget are in `parking.rs`; this file is what SQLite calls.
//!
//! A reopen that fails (the file is gone, the process is out of descriptors anyway) fails the
//! SQLite call with an I/O error: the event fails and rolls back, and the file is tried again
//! on the next access.

use super::held::{HeldWal, Made, Written};
#[cfg(test)]
use super::parking::{BUDGET, REOPENS_HERE, park_all_idle};
use super::parking::{Slot, State, count_open, inner_layout, make_room, register, unregister};
pub use super::parking::{file_counts, set_file_budget};
use rusqlite::ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// The name object databases open with (`Connection::open_with_flags_and_vfs`).
pub const NAME: &CStr = c"wdo-parking";

/// Registers the VFS (once). Returns false if SQLite has no `unix-none` VFS to wrap.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find returns SQLite's static VFS or null; the copy we register
        // lives for the process (leaked), as SQLite requires.
        unsafe {
            let inner = ffi::sqlite3_vfs_find(c"unix-none".as_ptr());
            if inner.is_null() {
                return false;
            }
            let mut vfs: ffi::sqlite3_vfs = *inner;
            vfs.iVersion = (*inner).iVersion;
            vfs.szOsFile = std::mem::size_of::<ParkingFile>() as c_int;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = NAME.as_ptr();
            vfs.pAppData = inner.cast();
            vfs.xOpen = Some(open);
            vfs.xFullPathname = Some(full_pathname);
            vfs.xAccess = Some(access);
            // The other methods (delete, randomness, time) are the unix VFS's own, which use
            // neither the VFS's app data nor its files.
            let vfs = Box::leak(Box::new(vfs));
            ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
        }
    })
}

/// An absolute path as it is. The unix VFS resolves symbolic links in every component (a
/// `lstat` each, six per database open here), which only matters to tell two names of one file
/// apart: an object's database has one name, and one connection.
unsafe extern "C" fn full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    path: *const c_char,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: SQLite's arguments: a C string, and `size` bytes at `out`; the app data is the
    // unix VFS.
    unsafe {
        let name = CStr::from_ptr(path).to_bytes_with_nul();
        if name.first() == Some(&b'/') && name.len() <= size as usize {
            std::ptr::copy_nonoverlapping(name.as_ptr().cast(), out, name.len());
            return ffi::SQLITE_OK;
        }
        let inner: *mut ffi::sqlite3_vfs = (*vfs).pAppData.cast();
        ((*inner).xFullPathname.expect("unix VFS has it"))(inner, path, size, out)
    }
}

/// Whether a file exists (SQLite asks of a database's `-journal` and `-wal` at open): the unix
/// VFS's answer, unless the database is opening unborn (`unborn.rs`), when neither can exist.
unsafe extern "C" fn access(vfs: *mut ffi::sqlite3_vfs, path: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    // SAFETY: SQLite's arguments: a C string and an int to set; the app data is the unix VFS.
    unsafe {
        if flags == ffi::SQLITE_ACCESS_EXISTS && !path.is_null() && super::unborn::known_absent(CStr::from_ptr(path)) {
            *out = 0;
            return ffi::SQLITE_OK;
        }
        let inner: *mut ffi::sqlite3_vfs = (*vfs).pAppData.cast();
        ((*inner).xAccess.expect("unix VFS has it"))(inner, path, flags, out)
    }
}

/// What SQLite allocates for each file (`szOsFile`): the base struct, then our handle.
#[repr(C)]
struct ParkingFile {
    base: ffi::sqlite3_file,
    slot: *const Slot,
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    path: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY (whole function): SQLite hands us `szOsFile` bytes at `file` and a VFS we
    // registered, whose app data is the unix VFS.
    unsafe {
        let inner_vfs: *mut ffi::sqlite3_vfs = (*vfs).pAppData.cast();
        let inner_size = (*inner_vfs).szOsFile as usize;
        let layout = inner_layout(inner_size);
        let inner = std::alloc::alloc_zeroed(layout).cast::<ffi::sqlite3_file>();
        if inner.is_null() {
            return ffi::SQLITE_NOMEM;
        }
        let parkable = flags & (ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL) != 0
            && flags & (ffi::SQLITE_OPEN_DELETEONCLOSE | ffi::SQLITE_OPEN_EXCLUSIVE) == 0
            && !path.is_null();
        let main_database = flags & ffi::SQLITE_OPEN_MAIN_DB != 0;
        // A WAL whose database is opening unborn is held (`held.rs`).
        let creating = parkable && flags & ffi::SQLITE_OPEN_CREATE != 0;
        let held = creating && !main_database && super::unborn::known_absent(CStr::from_ptr(path));
        let unborn = held || creating && super::unborn::absent(CStr::from_ptr(path), main_database);
        if parkable && main_database {
            super::unborn::opened_main_database(CStr::from_ptr(path), unborn);
        }
        let parking = file.cast::<ParkingFile>();
        // What differs between an unborn file and an opened one: whether it has a descriptor,
        // and the settings and characteristics answered without one (`persist_wal`,
        // `powersafe_overwrite`, sector size, device characteristics).
        let (open, settings) = if unborn {
            if !out_flags.is_null() {
                *out_flags = flags;
            }
            // What the unix VFS starts a file with.
            (false, (0, 1, super::unborn::SECTOR_SIZE, super::unborn::device_characteristics(true)))
        } else {
            if parkable {
                make_room(None);
            }
            let rc = ((*inner_vfs).xOpen.expect("unix VFS opens"))(inner_vfs, path, inner, flags, out_flags);
            if rc != ffi::SQLITE_OK {
                std::alloc::dealloc(inner.cast(), layout);
                (*parking).base.pMethods = std::ptr::null();
                return rc;
            }
            count_open();
            let methods = &*(*inner).pMethods;
            let query = |op: c_int| {
                let mut value: c_int = -1;
                (methods.xFileControl.expect("unix files"))(inner, op, (&raw mut value).cast());
                value.max(0)
            };
            let settings = (
                query(ffi::SQLITE_FCNTL_PERSIST_WAL),
                query(ffi::SQLITE_FCNTL_POWERSAFE_OVERWRITE),
                (methods.xSectorSize.expect("unix files"))(inner),
                (methods.xDeviceCharacteristics.expect("unix files"))(inner),
            );
            (true, settings)
        };
        let (persist_wal, powersafe_overwrite, sector_size, device_characteristics) = settings;
        let state = State {
            inner,
            inner_size,
            vfs: inner_vfs,
            open,
            unborn,
            database_unsynced: false,
            fresh_wal: false,
            held: held.then(Default::default),
            path,
            flags,
            persist_wal,
            powersafe_overwrite,
            sector_size,
            device_characteristics,
            frames: Default::default(),
        };
        (*parking).slot = Arc::into_raw(register(state, parkable));
        (*parking).base.pMethods = &METHODS;
        ffi::SQLITE_OK
    }
}

/// The slot of one of our files.
///
/// # Safety
/// `file` is one of ours, opened and not yet closed.
unsafe fn slot<'a>(file: *mut ffi::sqlite3_file) -> &'a Slot {
    // SAFETY: per the contract, the slot is alive until xClose.
    unsafe { &*(*file.cast::<ParkingFile>()).slot }
}

/// Runs a method of the inner file, opening it first if it is parked or unborn.
///
/// # Safety
/// `file` is one of ours, opened and not yet closed.
unsafe fn with_inner(
    file: *mut ffi::sqlite3_file,
    call: impl FnOnce(&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) -> c_int,
) -> c_int {
    // SAFETY: per the contract.
    let slot = unsafe { slot(file) };
    slot.used.store(true, Ordering::Relaxed);
    let mut state = slot.state.lock().unwrap();
    let own = slot.own();
    let mut rc = state.ensure_open(own);
    if rc == ffi::SQLITE_OK {
        // What SQLite wrote is in the file before anything looks at it (`frames.rs`).
        rc = state.write_frame_header(own);
    }
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    call(state.methods(), state.inner)
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file once; the slot was leaked from an Arc at open.
    unsafe {
        let parking = file.cast::<ParkingFile>();
        let slot = Arc::from_raw((*parking).slot);
        (*parking).base.pMethods = std::ptr::null();
        unregister(&slot);
        let mut state = slot.state.lock().unwrap();
        let rc = state.close_inner();
        let layout = inner_layout(state.inner_size);
        std::alloc::dealloc(state.inner.cast(), layout);
        state.inner = std::ptr::null_mut();
        rc
    }
}

macro_rules! forward {
    ($name:ident, $method:ident ( $($arg:ident : $ty:ty),* )) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite calls methods only on files we opened; the inner file is open.
            unsafe { with_inner(file, |m, inner| (m.$method.expect("unix files have it"))(inner, $($arg),*)) }
        }
    };
}

forward!(forward_write, xWrite(buf: *const c_void, amount: c_int, offset: ffi::sqlite3_int64));
forward!(forward_read, xRead(buf: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));
forward!(forward_truncate, xTruncate(size: ffi::sqlite3_int64));
forward!(forward_file_size, xFileSize(size: *mut ffi::sqlite3_int64));

/// The WAL at `wal` (a path SQLite gave, valid until the file's `xClose`) and its database.
///
/// # Safety
/// `wal` is a valid C string that outlives `'a`.
unsafe fn wal_and_database<'a>(wal: *const c_char) -> (&'a Path, &'a Path) {
    // SAFETY: per the contract.
    let wal = unsafe { CStr::from_ptr(wal) }.to_str().unwrap_or_default();
    (Path::new(wal), Path::new(super::unborn::database_of_wal(wal)))
}

/// The held WAL of a file, while it is held (`held.rs`).
fn held(state: &mut State) -> Option<&mut HeldWal> {
    state.held.as_mut().filter(|_| state.unborn)
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite's arguments for xWrite, on a file of ours: `amount` bytes at `buf`.
    unsafe {
        let slot = slot(file);
        let mut state = slot.state.lock().unwrap();
        let wal = state.path;
        if let Some(held) = held(&mut state) {
            let data = std::slice::from_raw_parts(buf.cast::<u8>(), amount.max(0) as usize);
            let landed = match held.write(data, offset as u64, super::unborn::template()) {
                Written::Held => return ffi::SQLITE_OK,
                Written::Spill => false,
                Written::Lands => true,
                Written::Commits(database) => {
                    let (wal, path) = wal_and_database(wal);
                    match super::unborn::make_database_with(path, wal, &database) {
                        Ok(true) => {
                            super::unborn::made(path.as_os_str().as_encoded_bytes());
                            held.made = Some(Made::Unsynced);
                            return ffi::SQLITE_OK;
                        }
                        // Something made it meanwhile: the commit goes in the WAL, as before.
                        Ok(false) => true,
                        Err(e) => {
                            tracing::error!("cannot make the database file {}: {e}", path.display());
                            return ffi::SQLITE_IOERR_WRITE;
                        }
                    }
                }
            };
            // The WAL becomes a file, with what was held (this write too, if it landed).
            slot.used.store(true, Ordering::Relaxed);
            let rc = state.ensure_open(slot.own());
            if rc != ffi::SQLITE_OK || landed {
                return rc;
            }
        }
        if state.joins_frames() {
            slot.used.store(true, Ordering::Relaxed);
            let data = std::slice::from_raw_parts(buf.cast::<u8>(), amount.max(0) as usize);
            return state.write_wal(data, offset, slot.own());
        }
        drop(state);
        forward_write(file, buf, amount, offset)
    }
}

/// Answers a call without a descriptor when the file has none to give: `held` for a held WAL
/// (`held.rs`), `unborn` for an unborn file (given whether it is a main database), under the
/// file's lock, taken once; `None` when the call goes to the file.
///
/// # Safety
/// As [`with_inner`].
unsafe fn without_descriptor<T>(
    file: *mut ffi::sqlite3_file,
    held: impl FnOnce(&mut HeldWal) -> T,
    unborn: impl FnOnce(bool) -> Option<T>,
) -> Option<T> {
    // SAFETY: per the contract.
    let mut state = unsafe { slot(file) }.state.lock().unwrap();
    let (main_database, unborn_file) = (state.main_database(), state.unborn);
    match self::held(&mut state) {
        Some(wal) => Some(held(wal)),
        None if unborn_file => unborn(main_database),
        None => None,
    }
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite's arguments for xRead, on a file of ours: `amount` bytes at `buf`.
    unsafe {
        let from_held = |held: &mut HeldWal| {
            let buf = std::slice::from_raw_parts_mut(buf.cast::<u8>(), amount.max(0) as usize);
            if held.read(buf, offset as u64) { ffi::SQLITE_OK } else { ffi::SQLITE_IOERR_SHORT_READ }
        };
        let from_template = |main_database| Some(super::unborn::read(main_database, buf, amount, offset));
        without_descriptor(file, from_held, from_template).unwrap_or_else(|| forward_read(file, buf, amount, offset))
    }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: SQLite's arguments for xFileSize, on a file of ours.
    unsafe {
        let known = without_descriptor(
            file,
            |held| held.len() as i64,
            |main_database| Some(if main_database { super::unborn::template().len() as i64 } else { 0 }),
        );
        match known {
            Some(known) => {
                *size = known;
                ffi::SQLITE_OK
            }
            None => forward_file_size(file, size),
        }
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: SQLite's arguments for xTruncate, on a file of ours.
    unsafe {
        let done = without_descriptor(
            file,
            |held| held.truncate(size.max(0) as u64),
            // An empty WAL stays empty (SQLite resets and truncates WALs it has not written).
            |main_database| (!main_database && size == 0).then_some(()),
        );
        match done {
            Some(()) => ffi::SQLITE_OK,
            None => forward_truncate(file, size),
        }
    }
}

/// Whether a WAL is open and holds its header and nothing else (parked: not known, so no).
fn only_a_wal_header(state: &mut State) -> bool {
    if !state.open {
        return false;
    }
    let mut size: i64 = -1;
    // SAFETY: open, so its methods are set.
    unsafe { (state.methods().xFileSize.expect("unix files have it"))(state.inner, &mut size) };
    size == 32
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: as in `forward!`.
    unsafe {
        let slot = slot(file);
        let mut state = slot.state.lock().unwrap();
        let wal = state.path;
        if let Some(held) = held(&mut state) {
            // A held WAL is synced after a commit (`--durability full`): the database file that
            // commit made is what must be on disk.
            if held.made == Some(Made::Unsynced) {
                let (_, database) = wal_and_database(wal);
                if let Err(e) = super::unborn::sync_database(database) {
                    tracing::error!("cannot sync the new database file {}: {e}", database.display());
                    return ffi::SQLITE_IOERR_FSYNC;
                }
                held.made = Some(Made::Synced);
            }
            return ffi::SQLITE_OK;
        }
        if state.unborn {
            return ffi::SQLITE_OK; // nothing was written
        }
        // Before the size is looked at below (`with_inner` would do it only after).
        let rc = state.write_frame_header(slot.own());
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if std::mem::take(&mut state.fresh_wal) && only_a_wal_header(&mut state) {
            // SQLite syncs a new WAL's header before its first frames so that a crash cannot
            // leave new frames behind an old header. A WAL this process just made has no old
            // frames: the sync protects nothing, and would cost each new object an fsync.
            return ffi::SQLITE_OK;
        }
        if state.database_unsynced {
            let database = Path::new(super::unborn::database_of_wal(state.path())).to_path_buf();
            if let Err(e) = super::unborn::sync_database(&database) {
                tracing::error!("cannot sync the new database file {}: {e}", database.display());
                return ffi::SQLITE_IOERR_FSYNC;
            }
            state.database_unsynced = false;
        }
        drop(state);
        with_inner(file, |m, inner| (m.xSync.expect("unix files have it"))(inner, flags))
    }
}
// `unix-none`'s locks do nothing, so neither do these, and a parked file (a connection closing
// calls `xUnlock`) stays parked.
unsafe extern "C" fn lock(_file: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn unlock(_file: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn check_reserved_lock(_file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: SQLite passes a pointer to an int for the answer.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

/// Hints SQLite gives routinely that the unix VFS does not handle (it answers `NOTFOUND`), so a
/// parked file answers them the same without a descriptor.
const HINTS: [c_int; 9] = [
    ffi::SQLITE_FCNTL_PRAGMA,
    ffi::SQLITE_FCNTL_BUSYHANDLER,
    ffi::SQLITE_FCNTL_PDB,
    ffi::SQLITE_FCNTL_SYNC,
    ffi::SQLITE_FCNTL_COMMIT_PHASETWO,
    ffi::SQLITE_FCNTL_OVERWRITE,
    ffi::SQLITE_FCNTL_CKPT_START,
    ffi::SQLITE_FCNTL_CKPT_DONE,
    ffi::SQLITE_FCNTL_RESET_CACHE,
];

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: as in `forward!`; the two remembered controls take a pointer to an int.
    unsafe {
        let slot = &*(*file.cast::<ParkingFile>()).slot;
        if matches!(op, ffi::SQLITE_FCNTL_PERSIST_WAL | ffi::SQLITE_FCNTL_POWERSAFE_OVERWRITE) {
            // Kept here, and in the unix file while it is open (set again at a reopen).
            let mut state = slot.state.lock().unwrap();
            let arg = arg.cast::<c_int>();
            let kept = match op {
                ffi::SQLITE_FCNTL_PERSIST_WAL => &mut state.persist_wal,
                _ => &mut state.powersafe_overwrite,
            };
            if *arg >= 0 {
                *kept = *arg;
            }
            *arg = *kept;
            let mut value = *kept;
            if state.open {
                (state.methods().xFileControl.expect("unix files have it"))(state.inner, op, (&raw mut value).cast());
            }
            return ffi::SQLITE_OK;
        }
        let (open, unborn) = {
            let state = slot.state.lock().unwrap();
            (state.open, state.unborn)
        };
        if HINTS.contains(&op) && !open {
            return ffi::SQLITE_NOTFOUND;
        }
        if op == ffi::SQLITE_FCNTL_HAS_MOVED && unborn {
            *arg.cast::<c_int>() = 0; // a file that is not there yet has not moved
            return ffi::SQLITE_OK;
        }
        with_inner(file, |m, inner| (m.xFileControl.expect("unix files have it"))(inner, op, arg))
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the slot is alive until xClose.
    unsafe { (*(*file.cast::<ParkingFile>()).slot).state.lock().unwrap().sector_size }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the slot is alive until xClose.
    unsafe { (*(*file.cast::<ParkingFile>()).slot).state.lock().unwrap().device_characteristics }
}

/// Version 1: no shared memory and no memory mapping, which exclusive locking does not need and
/// which would tie the file to its descriptor.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
#[path = "vfs_tests.rs"]
mod tests;
