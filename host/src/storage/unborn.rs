//! Objects that were never written have no files.
//!
//! # Design
//!
//! Most objects a host ever hears of are touched once, and many only read (a presence check, a
//! counter looked at). Making their databases cost every first touch a file created, its schema
//! written through SQLite, a WAL made beside it and a folder looked up: three quarters of a new
//! object's cost, and files that hold nothing.
//!
//! So the VFS (`vfs.rs`) opens a database that does not exist yet (or is empty: a crash right
//! after its creation) as *unborn*: no descriptor, reads answered from [`template`] (the bytes
//! of an empty WAL-mode database with the host's tables, made once per process), its file size
//! the template's. Its WAL, when that does not exist either, is unborn too: empty. A read-only
//! event on a new object creates nothing, and neither does a read on an idle object whose WAL
//! was removed when it closed.
//!
//! The first commit makes the database file, with the commit in it, and no WAL (`held.rs`):
//! the WAL of an unborn database is held in memory and becomes a file at the next commit. A
//! first commit too large for that makes the files as the next ones do: the database first
//! (the template, in one write), then the WAL. Every state a crash can leave between the steps
//! is one SQLite opens as an empty object: no file, an empty file (made again from the
//! template), the template with no WAL.
//!
//! **Durability.** Nothing is synced when the files are made; the WAL that made the database
//! syncs it (and its folder) at its own first sync, before SQLite's. SQLite syncs the WAL at
//! every commit with `--durability full` (a held WAL's sync syncs the database its commit
//! made), so an acknowledged first write survives power loss with its database file; with
//! `normal` it survives a crash of the process, as every commit does.
//!
//! **What an unborn database rules out.** While a connection is being opened ([`opening`]), a
//! main database that opened unborn is remembered on the thread, and so are its neighbours'
//! absence: the host makes a WAL only after its database (and removes it first), so neither a
//! `-wal` nor a `-journal` can stand beside a database that does not exist. SQLite's checks for
//! them at open (`xAccess`) and the WAL's own at open are answered without a path lookup: each
//! was a lookup of a name the kernel had never seen (a directory search), together ~5% of the
//! host's CPU making new objects (perf, December 4). A WAL that something else left beside a
//! missing database is then not replayed over the template, as stock SQLite does not replay
//! one beside an empty database: its frames belong to another database (a held commit removes
//! such a WAL before it makes the database, `make_database_with`).

use std::cell::RefCell;
use std::ffi::{CStr, c_int, c_void};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

use rusqlite::ffi;

static TEMPLATE: OnceLock<Box<[u8]>> = OnceLock::new();

/// Sets the bytes a new database starts as (once; later calls change nothing).
pub fn set_template(make: impl FnOnce() -> Vec<u8>) {
    TEMPLATE.get_or_init(|| make().into_boxed_slice());
}

/// The bytes of a new database (empty until [`set_template`]).
pub fn template() -> &'static [u8] {
    TEMPLATE.get().map_or(&[], |t| t)
}

/// The unix VFS's sector size (it is a constant on Linux) and device characteristics (what its
/// files report, given the power-safe-overwrite flag), for files that are not open.
pub const SECTOR_SIZE: c_int = 4096;

pub fn device_characteristics(powersafe_overwrite: bool) -> c_int {
    let overwrite = if powersafe_overwrite { ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE } else { 0 };
    overwrite | ffi::SQLITE_IOCAP_SUBPAGE_READ
}

/// Whether a database or WAL file SQLite is about to open (with CREATE) is absent: a database
/// that does not exist or is empty, a WAL that does not exist.
pub fn absent(path: &CStr, main_database: bool) -> bool {
    let Ok(path) = path.to_str() else { return false };
    match std::fs::metadata(path) {
        Ok(meta) => main_database && meta.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

thread_local! {
    /// Inside [`opening`]: the main database this thread opened unborn, if any.
    static OPENING: RefCell<Option<Option<Box<[u8]>>>> = const { RefCell::new(None) };
}

/// Runs `open` (a connection's open and set-up) remembering whether its main database opened
/// unborn, which it returns too.
pub fn opening<T>(open: impl FnOnce() -> T) -> (T, bool) {
    struct Forget;
    impl Drop for Forget {
        fn drop(&mut self) {
            OPENING.with(|o| *o.borrow_mut() = None);
        }
    }
    OPENING.with(|o| *o.borrow_mut() = Some(None));
    let _forget = Forget;
    let result = open();
    let unborn = OPENING.with(|o| matches!(&*o.borrow(), Some(Some(_))));
    (result, unborn)
}

/// The VFS opened the main database at `path`, unborn or not.
pub fn opened_main_database(path: &CStr, unborn: bool) {
    OPENING.with(|o| {
        if let Some(known) = &mut *o.borrow_mut() {
            *known = unborn.then(|| path.to_bytes().into());
        }
    });
}

/// The database at `path` was made: it is unborn no more.
pub fn made(database: &[u8]) {
    OPENING.with(|o| {
        if let Some(known) = &mut *o.borrow_mut()
            && known.as_deref() == Some(database)
        {
            *known = None;
        }
    });
}

/// Whether `path` is the WAL or rollback journal of the database this thread's connection is
/// opening unborn, and so cannot exist.
pub fn known_absent(path: &CStr) -> bool {
    let path = path.to_bytes();
    let database = path.strip_suffix(b"-wal").or_else(|| path.strip_suffix(b"-journal"));
    let absent = database
        .is_some_and(|database| OPENING.with(|o| matches!(&*o.borrow(), Some(Some(known)) if &**known == database)));
    #[cfg(test)]
    KNOWN_ABSENT_HERE.with(|n| n.set(n.get() + usize::from(absent)));
    absent
}

#[cfg(test)]
thread_local! {
    /// Files this thread answered for without a lookup ([`known_absent`]).
    pub static KNOWN_ABSENT_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The database file a WAL belongs to.
pub fn database_of_wal(wal: &str) -> &str {
    wal.strip_suffix("-wal").unwrap_or(wal)
}

/// SQLite's `xRead` of an unborn file: the template's bytes (a database) or none (a WAL), and a
/// short read past them.
///
/// # Safety
/// `buf` is valid for `amount` bytes.
pub unsafe fn read(main_database: bool, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    let content = if main_database { template() } else { &[] };
    let amount = amount.max(0) as usize;
    // SAFETY: per the contract.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), amount) };
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(content.len());
    let have = content[start..].len().min(amount);
    buf[..have].copy_from_slice(&content[start..start + have]);
    if have == amount {
        return ffi::SQLITE_OK;
    }
    // SQLite requires the rest zeroed on a short read.
    buf[have..].fill(0);
    ffi::SQLITE_IOERR_SHORT_READ
}

/// Makes the database file at `path` from the template unless it already has content (its
/// folder too); says whether it wrote it. With `sync`, a file it wrote is synced, and its folder.
pub fn make_database(path: &Path, sync: bool) -> std::io::Result<bool> {
    let Some(file) = create_empty(path)? else { return Ok(false) };
    file.write_all_at(template(), 0)?;
    if sync {
        file.sync_all()?;
        sync_folder(path)?;
    }
    Ok(true)
}

/// Makes the database file at `path` with `bytes` (a held commit's, `held.rs`: at most one
/// page of the page cache, written at once) unless it already has content (its folder too);
/// says whether it wrote it. Not synced. A WAL that something other than the host left at
/// `wal` goes first: its frames belong to another database, and with the database made, the
/// next open would replay them (a WAL made as a file starts again with new salts instead).
pub fn make_database_with(path: &Path, wal: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    match std::fs::remove_file(wal) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let Some(file) = create_empty(path)? else { return Ok(false) };
    file.write_all_at(bytes, 0)?;
    Ok(true)
}

/// Opens the file at `path` for writing if it is new or empty (a crash right after it was
/// created), creating it and its folder; `None` if it has content.
fn create_empty(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(path);
    let file = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            make_folders(path.parent().unwrap_or(Path::new(".")))?;
            create()
        }
        result => result,
    };
    match file {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            Ok((file.metadata()?.len() == 0).then_some(file))
        }
        Err(e) => Err(e),
    }
}

/// Makes the folder `dir` and those missing above it, syncing the folder each new one is in:
/// a database's sync covers its own folder's entry for it, not the entries of folders made for
/// it (its two-hex folder, once per 256 objects of a class; the class's folder, once).
fn make_folders(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|folder| !folder.exists()).collect();
    std::fs::create_dir_all(dir)?;
    missing.into_iter().rev().try_for_each(sync_folder)
}

/// Syncs the database file at `path` and its folder (a WAL that made it, at its first sync).
pub fn sync_database(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    sync_folder(path)
}

fn sync_folder(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
#[path = "unborn_tests.rs"]
mod tests;
