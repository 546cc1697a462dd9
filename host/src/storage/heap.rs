//! SQLite's memory, counted and bounded per object.
//!
//! # Design
//!
//! SQLite's own limits are process-wide (`sqlite3_hard_heap_limit64`): one object sorting a
//! huge result would make every other object's SQL fail. So the host installs SQLite's
//! allocator (`SQLITE_CONFIG_MALLOC`, once, before SQLite starts) and charges each block
//! allocated while a guest's storage call runs on the thread ([`HeapMeter::scope`]) to that
//! object's connection. A block that would take the connection past its limit is refused:
//! SQLite answers `SQLITE_NOMEM`, and the event fails and rolls back (`wit.rs`). Temporary
//! tables and sorts are kept in memory (`temp_store=MEMORY`), so they count too and never
//! reach the disk.
//!
//! Each block carries a 16-byte header: its size and the meter it was charged to (holding a
//! strong reference), so a block freed later, after the call or on another thread, is
//! credited back to the same meter. Blocks allocated outside guest calls (the host's own
//! statements, the commit) are not charged, and growing a charged block is refused only inside
//! its owner's guest call, so a host statement never fails for a guest's usage.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What one object's connection has allocated during guest calls, against its limit.
#[derive(Debug)]
pub struct HeapMeter {
    used: AtomicUsize,
    limit: usize,
    exceeded: AtomicBool,
}

thread_local! {
    /// The meter of the guest call running on this thread, if any.
    static CURRENT: Cell<*const HeapMeter> = const { Cell::new(ptr::null()) };
}

/// While alive, SQLite's allocations on this thread are charged to a meter.
pub struct HeapScope {
    previous: *const HeapMeter,
}

impl Drop for HeapScope {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
    }
}

impl HeapMeter {
    pub fn new(limit: usize) -> Arc<HeapMeter> {
        Arc::new(HeapMeter { used: AtomicUsize::new(0), limit, exceeded: AtomicBool::new(false) })
    }

    /// Charges SQLite's allocations on this thread to this meter until the scope is dropped.
    /// The meter must stay alive meanwhile (its owner holds it for the call).
    pub fn scope(self: &Arc<Self>) -> HeapScope {
        self.exceeded.store(false, Ordering::Relaxed);
        let previous = CURRENT.with(|current| current.replace(Arc::as_ptr(self)));
        HeapScope { previous }
    }

    /// Whether an allocation was refused since the last [`HeapMeter::scope`].
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn try_charge(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            self.exceeded.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn credit(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Installs the allocator; must run before SQLite is first used in the process. Returns false
/// when SQLite had already started (an embedding program used it first): memory is then not
/// bounded per object.
pub fn install() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSTALLED.get_or_init(|| {
        use rusqlite::ffi;
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: ptr::null_mut(),
        };
        // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to a `sqlite3_mem_methods`, which SQLite
        // copies before it returns; the functions below keep SQLite's contract (8-byte
        // alignment, sizes).
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods) };
        // SQLite's own statistics take one process-wide mutex around every allocation and
        // free: with many objects opening and closing databases on several threads, that
        // mutex was the host's hottest lock. The meters above do the counting that matters.
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes an int, before SQLite starts (as above).
        unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
        // A host keeps thousands of connections open (see `vfs.rs`), most of them to databases
        // of a few pages, so what each costs before it has done anything counts: by default a
        // connection starts with 120 KiB of lookaside slots and its page cache with 20 pages
        // allocated in bulk (~88 KiB). Without them a connection takes pages as it needs them,
        // and small allocations come from the global allocator, which is fast anyway.
        // SAFETY: both take (pointer, int, int), before SQLite starts (as above).
        unsafe {
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_PAGECACHE, ptr::null_mut::<c_void>(), 0 as c_int, 0 as c_int);
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_LOOKASIDE, 0 as c_int, 0 as c_int);
        }
        if rc != ffi::SQLITE_OK {
            tracing::warn!("SQLite was started before the host: SQL memory is not bounded per object");
        }
        rc == ffi::SQLITE_OK
    })
}

/// The header in front of every block: its usable size and the meter it is charged to.
#[repr(C, align(16))]
struct Header {
    size: usize,
    owner: *const HeapMeter,
}

const HEADER: usize = std::mem::size_of::<Header>();

/// The layout of a block of `size` bytes and its header. Blocks come from Rust's global
/// allocator: the binary's (mimalloc), or whatever an embedding program chose.
fn block(size: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(HEADER + size, std::mem::align_of::<Header>())
        .expect("a block under isize::MAX")
}

/// The meter to charge a new block to, if a guest call runs on this thread and has room.
/// `Err` when the meter refuses.
fn charge_current(bytes: usize) -> Result<*const HeapMeter, ()> {
    let current = CURRENT.with(Cell::get);
    if current.is_null() {
        return Ok(ptr::null());
    }
    // SAFETY: a meter set by `scope` is kept alive by its owner while the scope lasts.
    let meter = unsafe { &*current };
    if !meter.try_charge(bytes) {
        return Err(());
    }
    // SAFETY: the block holds a strong reference of its own, released in `release`.
    unsafe { Arc::increment_strong_count(current) };
    Ok(current)
}

/// Credits a freed block to its meter and drops the block's reference to it.
unsafe fn release(owner: *const HeapMeter, bytes: usize) {
    if !owner.is_null() {
        // SAFETY: the block held a strong reference (`charge_current`).
        let meter = unsafe { Arc::from_raw(owner) };
        meter.credit(bytes);
    }
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Ok(size) = usize::try_from(n) else { return ptr::null_mut() };
    let Ok(owner) = charge_current(size) else { return ptr::null_mut() };
    // SAFETY: a layout of non-zero size (the header's at least).
    let base = unsafe { std::alloc::alloc(block(size)) }.cast::<Header>();
    if base.is_null() {
        unsafe { release(owner, size) };
        return ptr::null_mut();
    }
    // SAFETY: `base` points to at least HEADER writable bytes.
    unsafe {
        base.write(Header { size, owner });
        base.add(1).cast()
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: `p` came from `x_malloc`/`x_realloc`, so a header sits right before it.
    unsafe {
        let base = p.cast::<Header>().sub(1);
        let Header { size, owner } = base.read();
        std::alloc::dealloc(base.cast(), block(size));
        release(owner, size);
    }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        return unsafe { x_malloc(n) };
    }
    let Ok(size) = usize::try_from(n) else { return ptr::null_mut() };
    // SAFETY: as in `x_free`.
    let base = unsafe { p.cast::<Header>().sub(1) };
    let Header { size: old, owner } = unsafe { base.read() };
    if !owner.is_null() && size > old {
        // SAFETY: the block holds a reference to its meter.
        let meter = unsafe { &*owner };
        // Refused only inside the owner's own guest call; elsewhere (a host statement) counted.
        let refusing = CURRENT.with(Cell::get) == owner;
        if refusing && !meter.try_charge(size - old) {
            return ptr::null_mut();
        }
        if !refusing {
            meter.used.fetch_add(size - old, Ordering::Relaxed);
        }
    }
    // SAFETY: `base` came from `alloc`/`realloc` with the layout of `old` bytes.
    let grown = unsafe { std::alloc::realloc(base.cast(), block(old), HEADER + size) }.cast::<Header>();
    if grown.is_null() {
        if !owner.is_null() && size > old {
            unsafe { &*owner }.credit(size - old);
        }
        return ptr::null_mut();
    }
    if !owner.is_null() && size < old {
        unsafe { &*owner }.credit(old - size);
    }
    // SAFETY: `grown` points to at least HEADER writable bytes.
    unsafe {
        grown.write(Header { size, owner });
        grown.add(1).cast()
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: as in `x_free`.
    unsafe { p.cast::<Header>().sub(1).read().size as c_int }
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    (n.saturating_add(7)) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    rusqlite::ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}
