//! Cranelift's incremental cache on disk: machine code of single functions, by a hash of their
//! code.
//!
//! # Design
//!
//! A component built by componentize-js or componentize-py carries a whole language runtime
//! (StarlingMonkey, CPython): ~13,000 functions, byte for byte the same in every component of
//! that runtime and version (the app itself is data in the runtime's snapshot). Compiling one
//! takes ~10 s of CPU on a 2-core machine, and a project has many: every class, its worker,
//! every redeploy of changed JavaScript. Cranelift can key each function's compiled code by a
//! SHA-256 of its IR together with the target, its flags and Cranelift's version
//! (`Config::enable_incremental_compilation`), so the next component of the same runtime only
//! compiles what differs. The component cache (`mod.rs`) still keeps whole components; this
//! one is below it, for components it has not seen.
//!
//! The store is one SQLite file, `functions.sqlite`, in the compile cache's root: shared by
//! every host and `wdo compile` that use that root, whatever their engine settings (the key
//! covers them). Every failure is a miss, so the cache can only make compiling faster:
//!
//! - each entry keeps a SHA-256 of its value, checked on every read; a damaged entry is
//!   compiled again, never loaded as code (as with the `.cwasm` files);
//! - the file is bounded ([`MAX_BYTES`], SQLite's `max_page_count`); an insert that finds it
//!   full empties it and starts over, so an old runtime's functions do not crowd out a new
//!   one's for good;
//! - other processes writing at the same time wait briefly (`busy_timeout`), then the entry is
//!   dropped; WAL mode keeps readers off the writers' way.

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The file's name in the compile cache's root.
pub const FILE_NAME: &str = "functions.sqlite";
/// The most the file may hold: each language runtime takes ~40-80 MB (the examples and the
/// tests' JavaScript, TypeScript and Python together ~170 MB).
pub const MAX_BYTES: u64 = 512 << 20;

/// How many functions came from the cache and how many were compiled and added to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionCacheStats {
    pub hits: u64,
    pub added: u64,
}

#[derive(Debug)]
pub struct FunctionCache {
    db: Mutex<Connection>,
    hits: AtomicU64,
    added: AtomicU64,
}

impl FunctionCache {
    /// Opens (or creates) the cache in `root`, holding at most `max_bytes`.
    pub fn open(root: &Path, max_bytes: u64) -> Result<FunctionCache, String> {
        let path = root.join(FILE_NAME);
        let open = || -> rusqlite::Result<Connection> {
            crate::storage::heap::install(); // before SQLite starts: see `storage/heap.rs`
            let db = Connection::open(&path)?;
            db.busy_timeout(Duration::from_secs(2))?;
            db.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
                 CREATE TABLE IF NOT EXISTS functions (key BLOB PRIMARY KEY, sum BLOB NOT NULL, value BLOB NOT NULL);",
            )?;
            let page_size: i64 = db.query_row("PRAGMA page_size", [], |row| row.get(0))?;
            let pages = (max_bytes / page_size.max(512) as u64).clamp(16, i64::MAX as u64) as i64;
            db.pragma_update(None, "max_page_count", pages)?;
            Ok(db)
        };
        // Created readable by this user only, like the compiled components beside it; SQLite
        // gives its `-wal` and `-shm` files the same mode.
        let create = || {
            crate::files::make_private_dir(root)?;
            std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)
        };
        create().map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let db = match open() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) =>
            {
                // Nothing in it is worth more than the time to compile it again.
                tracing::warn!("{} is damaged: starting a new compiled-function cache", path.display());
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
                create().and_then(|_| open().map_err(std::io::Error::other))
            }
            other => other.map_err(std::io::Error::other),
        }
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(FunctionCache { db: Mutex::new(db), hits: AtomicU64::new(0), added: AtomicU64::new(0) })
    }

    pub fn stats(&self) -> FunctionCacheStats {
        FunctionCacheStats { hits: self.hits.load(Ordering::Relaxed), added: self.added.load(Ordering::Relaxed) }
    }

    fn read(&self, key: &[u8]) -> rusqlite::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let db = self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut select = db.prepare_cached("SELECT sum, value FROM functions WHERE key = ?1")?;
        select.query_row([key], |row| Ok((row.get(0)?, row.get(1)?))).optional()
    }

    fn write(&self, key: &[u8], sum: &[u8], value: &[u8]) -> rusqlite::Result<()> {
        let db = self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let insert = |db: &Connection| {
            db.prepare_cached("INSERT OR REPLACE INTO functions (key, sum, value) VALUES (?1, ?2, ?3)")?
                .execute(params![key, sum, value])
        };
        match insert(&db) {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::DiskFull => {
                // Full (or the disk is): start over. The freed pages are reused, so the file
                // stays within its bound.
                tracing::info!("the compiled-function cache is full: emptying it");
                db.execute("DELETE FROM functions", [])?;
                insert(&db).map(drop)
            }
            other => other.map(drop),
        }
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let (sum, value) = match self.read(key) {
            Ok(found) => found?,
            Err(e) => {
                tracing::debug!("compiled-function cache: cannot read: {e}");
                return None;
            }
        };
        if Sha256::digest(&value).as_slice() != sum.as_slice() {
            tracing::warn!("compiled-function cache: a damaged entry is compiled again");
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(Cow::Owned(value))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let sum = Sha256::digest(&value);
        match self.write(key, &sum, &value) {
            Ok(()) => {
                self.added.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::debug!("compiled-function cache: cannot add: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
#[path = "function_cache_tests.rs"]
mod tests;
