//! Continuous backup: every commit of every object, and the files that make the data folder
//! (class secrets, the deploy state, components), shipped to a backup store, from which
//! `wdo restore` rebuilds a data folder as of any time.
//!
//! # Design
//!
//! **What is shipped.** After each commit that wrote, the object's new WAL frames are read
//! (`capture.rs`: the host controls checkpoints, so they are all still there) and queued as one
//! *transaction* entry: the pages the commit wrote and the database's size after it. An object's
//! first commit in a run of the host queues a *snapshot* (its whole database) instead, so a
//! restore never depends on what an earlier run may not have shipped. The data folder's other
//! files are compared with what was shipped at every flush (size and modification time, then
//! content) and queued as *file* entries when they changed. Objects that did not change cost
//! nothing.
//!
//! **Batches.** A flusher task takes everything queued every `--backup-interval` and writes it as
//! one batch (`format.rs`) named so that batches sort in the order they were written
//! (`store.rs`). A failed upload keeps the entries queued and is tried again at the next
//! interval: the host keeps serving and catches up. The queue is bounded (`MAX_QUEUED`): an
//! object whose commit does not fit is marked stale and ships a snapshot at its next commit or
//! when its database closes, so the store catches up without holding every page in memory.
//!
//! **Sync mode** (`--backup-mode sync`). Each queued entry takes a ticket, a number that grows
//! with the queue; a batch written whole moves the *replicated* mark to its last ticket. The
//! actor keeps an event's replies, WebSocket messages and outbound requests until the mark
//! passes its commit's ticket (`wait_replicated`). An enqueue wakes the flusher at once, and what
//! is queued while a batch is being written goes out together in the next: a batch per store
//! round trip, not per commit (group commit). While the store does not answer, a batch that
//! wrote is rolled back rather than committed (`refusing_writes`: 503, nothing saved), reads go
//! on, and a probe each interval finds when the store is back.
//!
//! **Restore** (`restore.rs`) starts from the store's latest snapshot before the asked time
//! (`compact.rs`, which also trims what `--backup-retention` no longer needs), reads the batches
//! after it in order and applies, per object, its latest snapshot at or before the time and the
//! transactions after it up to that time: each object comes back exactly as one of its commits
//! left it, never part of one.

mod capture;
mod compact;
pub mod format;
mod http;
mod objects;
pub mod restore;
mod store;

pub use capture::{Capture, Unconfirmed};
pub use store::BackupStore;

use crate::config::BackupMode;
use format::{Entry, ObjectRef};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Bytes of entries the queue holds at most while the store is slow or away.
const MAX_QUEUED: usize = 256 << 20;

/// Restores of one object from the store that run at once (`Backup::object_at`).
const OBJECT_RESTORES: usize = 2;

/// A bookmark (`storage.current-bookmark`): the time it names, so that bookmarks sort in time
/// order.
pub fn bookmark(ms: u64) -> String {
    format!("wdo-{ms:016x}")
}

/// The time a bookmark names.
pub fn bookmark_time(bookmark: &str) -> Option<u64> {
    let hex = bookmark.strip_prefix("wdo-").filter(|h| h.len() == 16)?;
    u64::from_str_radix(hex, 16).ok()
}

/// The page size in a database's header (bytes 16-17; 1 means 65,536).
pub fn page_size_of(database: &[u8]) -> u32 {
    match u16::from_be_bytes([database[16], database[17]]) {
        1 => 65_536,
        size => u32::from(size),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Default)]
struct Queue {
    entries: Vec<Entry>,
    bytes: usize,
    /// The ticket of the last entry queued (`Backup::enqueue`).
    last_ticket: u64,
}

/// How far the store has come, for those waiting on it (sync mode).
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// Every entry with a ticket up to this one is in the store.
    replicated: u64,
    /// Flushes that failed since the start.
    failures: u64,
}

/// How the store answered last.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The last failure, while it lasts.
    pub failing: Option<String>,
    /// Batches written since the start.
    pub batches: u64,
    /// Bytes written since the start.
    pub bytes: u64,
    /// Commits queued or being written, not yet in the store.
    pub waiting: usize,
    pub mode: BackupMode,
}

/// A data-folder file as last shipped: its size, modification time and sha256.
type Shipped = (u64, SystemTime, [u8; 32]);

/// How a host backs up (`wdo serve --backup-*`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often queued commits ship (async mode), and how often a store that failed is asked
    /// again.
    pub interval: Duration,
    pub mode: BackupMode,
    /// The log bytes past the last snapshot that make a new one due, at least (`compact.rs`).
    pub snapshot_every: u64,
    /// How far back a restore can go.
    pub retention: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: Duration::from_secs(1),
            mode: BackupMode::Async,
            snapshot_every: 64 << 20,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

pub struct Backup {
    store: BackupStore,
    data_dir: PathBuf,
    interval: Duration,
    mode: BackupMode,
    snapshot_every: u64,
    retention: Duration,
    /// Bytes of batches written since the last snapshot, and that snapshot's.
    log_since_snapshot: AtomicU64,
    last_snapshot_bytes: AtomicU64,
    /// When a cluster's snapshot writer last read the log's size from the store.
    log_learnt_ms: AtomicU64,
    /// No snapshot is tried before this time (a cluster's newest batches are not old enough).
    snapshot_after_ms: AtomicU64,
    /// A snapshot is being written.
    snapshotting: std::sync::atomic::AtomicBool,
    /// Bounds the object restores running at once.
    object_restores: tokio::sync::Semaphore,
    /// No commit is dated before this: a bookmark handed out for time t (`bookmark_now`) names
    /// the state before every commit that follows it.
    commit_floor: AtomicU64,
    progress: tokio::sync::watch::Sender<Progress>,
    /// Something was queued: in sync mode the flusher starts a batch at once.
    queued: tokio::sync::Notify,
    queue: Mutex<Queue>,
    /// Bytes the queue may hold ([`MAX_QUEUED`]).
    max_queued: std::sync::atomic::AtomicUsize,
    stale: Mutex<HashSet<ObjectRef>>,
    /// The files of the data folder as shipped: (size, modification time, sha256).
    files: Mutex<HashMap<String, Shipped>>,
    run: String,
    sequence: AtomicU64,
    /// Commits queued or in a batch being written.
    waiting: std::sync::atomic::AtomicUsize,
    status: Mutex<Status>,
    /// One flush at a time: a failed batch goes back ahead of newer entries, and a flush running
    /// beside it would ship those first.
    flushing: tokio::sync::Mutex<()>,
    /// In a cluster: whether this host still holds its lease (nothing is acknowledged without).
    lease: std::sync::OnceLock<Arc<dyn HostLease>>,
    /// Objects whose latest state is asked for (`latest`), and where each answer goes.
    latest_asks: Mutex<Vec<(ObjectRef, LatestAnswer)>>,
    /// One walk of the store at a time answers every ask queued before it started.
    latest_walk: tokio::sync::Mutex<()>,
    /// Objects asked for from an anchor (`object_since`), by the run whose batches they are in.
    run_asks: Mutex<HashMap<String, Vec<(restore::RunAsk, RunAnswer)>>>,
    /// One walk of a run's batches at a time (per host: takeovers after a death are of one run).
    run_walk: tokio::sync::Mutex<()>,
}

type RunAnswer = tokio::sync::oneshot::Sender<Result<(Option<Vec<u8>>, usize), String>>;

type LatestAnswer = tokio::sync::oneshot::Sender<Result<Option<Vec<u8>>, String>>;

/// What a cluster (`cluster/`) tells the backup: whether this host may still acknowledge a
/// write. A host whose lease may have expired has lost its objects to others.
pub trait HostLease: Send + Sync {
    /// `Err` says why this host must not acknowledge (nor commit) now.
    fn check(&self) -> Result<(), String>;

    /// `Err` says why this host must not commit a write of an object it held under the lease
    /// `held_under` when the object's database opened: it holds another lease now, or none.
    fn check_held_under(&self, held_under: Option<i64>) -> Result<(), String>;

    /// How long after it is named a batch may land and still be acknowledged: a cluster's
    /// snapshots leave out only batches younger than [`HostLease::snapshot_settle`], so one
    /// landing later must not count (`compact.rs`).
    fn upload_bound(&self) -> Duration;

    /// `Some(settle)` when this host writes the cluster's snapshots (one host does), from the
    /// batches named at least `settle` ago.
    fn snapshot_settle(&self) -> Option<Duration>;
}

impl Backup {
    pub fn new(store: BackupStore, data_dir: &Path, settings: Settings) -> Arc<Backup> {
        Arc::new(Backup {
            store,
            data_dir: data_dir.to_path_buf(),
            interval: settings.interval,
            mode: settings.mode,
            snapshot_every: settings.snapshot_every,
            retention: settings.retention,
            log_since_snapshot: AtomicU64::new(0),
            log_learnt_ms: AtomicU64::new(0),
            snapshot_after_ms: AtomicU64::new(0),
            last_snapshot_bytes: AtomicU64::new(0),
            snapshotting: Default::default(),
            commit_floor: AtomicU64::new(0),
            object_restores: tokio::sync::Semaphore::new(OBJECT_RESTORES),
            progress: tokio::sync::watch::Sender::new(Progress::default()),
            queued: tokio::sync::Notify::new(),
            queue: Mutex::default(),
            max_queued: MAX_QUEUED.into(),
            stale: Mutex::default(),
            files: Mutex::default(),
            run: hex::encode(rand::random::<[u8; 4]>()),
            sequence: AtomicU64::new(0),
            waiting: Default::default(),
            status: Mutex::default(),
            flushing: tokio::sync::Mutex::new(()),
            lease: std::sync::OnceLock::new(),
            latest_asks: Mutex::default(),
            latest_walk: tokio::sync::Mutex::new(()),
            run_asks: Mutex::default(),
            run_walk: tokio::sync::Mutex::new(()),
        })
    }

    /// Joins the backup to a cluster: from now on a write is refused and not acknowledged while
    /// `lease` says this host may have lost its objects, and only the host `lease` names writes
    /// snapshots (several hosts write the log; see `compact.rs`).
    pub fn join_cluster(&self, lease: Arc<dyn HostLease>) {
        let _ = self.lease.set(lease);
    }

    pub fn url(&self) -> &str {
        &self.store.url
    }

    pub fn status(&self) -> Status {
        Status { waiting: self.waiting.load(Ordering::Relaxed), mode: self.mode, ..self.status.lock().unwrap().clone() }
    }

    pub fn mode(&self) -> BackupMode {
        self.mode
    }

    /// How far back a restore can go.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The time a commit made now is dated with (milliseconds since the Unix epoch).
    pub fn commit_time(&self) -> u64 {
        now_ms().max(self.commit_floor.load(Ordering::Relaxed))
    }

    /// A time that names the state as it is now: every commit so far is dated at or before it,
    /// every later one after it.
    pub fn bookmark_now(&self) -> u64 {
        let mut now = 0;
        let _ = self.commit_floor.fetch_update(Ordering::AcqRel, Ordering::Acquire, |floor| {
            now = now_ms().max(floor);
            Some(now + 1)
        });
        now
    }

    /// Queues an entry and returns its ticket; `None` (and the object marked stale) when the
    /// queue is full.
    pub fn enqueue(&self, entry: Entry) -> Option<u64> {
        let size = entry.size();
        let mut queue = self.queue.lock().unwrap();
        // A class's move is a few bytes, and a restore without it would put objects under a
        // name no class has: it always fits. An entry larger than the whole bound (the snapshot
        // of an object past it) fits an empty queue: it ships alone, or an object that large
        // could never be backed up (its size is bounded by --max-storage).
        let fits = matches!(entry, Entry::ClassMoved { .. })
            || queue.entries.is_empty()
            || queue.bytes + size <= self.max_queued.load(Ordering::Relaxed);
        if !fits {
            drop(queue);
            if let Entry::Snapshot { object, .. } | Entry::Transaction { object, .. } = entry {
                self.stale.lock().unwrap().insert(object);
            }
            return None;
        }
        queue.bytes += size;
        queue.entries.push(entry);
        queue.last_ticket += 1;
        let ticket = queue.last_ticket;
        drop(queue);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.mode == BackupMode::Sync {
            self.queued.notify_one();
        }
        Some(ticket)
    }

    /// Ships what is queued now; an error when the store did not take it.
    pub async fn flush_checked(&self) -> Result<(), String> {
        self.flush().await;
        match self.status().failing {
            Some(e) => Err(format!("the backup store {} does not answer: {e}", self.store.url)),
            None => Ok(()),
        }
    }

    /// In sync mode while the store does not answer, or in a cluster once the lease an object
    /// was held under (`held_under`) is gone: a batch that wrote must not commit.
    pub fn refusing_writes(&self, held_under: Option<i64>) -> Option<String> {
        if let Some(Err(e)) = self.lease.get().map(|lease| lease.check_held_under(held_under)) {
            return Some(e);
        }
        if self.mode != BackupMode::Sync {
            return None;
        }
        let failing = self.status.lock().unwrap().failing.clone()?;
        Some(format!(
            "the backup store {} does not answer ({failing}); with --backup-mode sync no write is taken \
             that cannot be replicated",
            self.store.url
        ))
    }

    /// Waits until the entry with `ticket` is in the store; an error when a batch fails first
    /// (the entry stays queued and ships when the store answers, but it is not acknowledged).
    pub async fn wait_replicated(&self, ticket: u64) -> Result<(), String> {
        let mut progress = self.progress.subscribe();
        let failures = progress.borrow().failures;
        // Read, then let go of the watch's guard before taking any other lock.
        let replicated = progress
            .wait_for(|p| p.replicated >= ticket || p.failures > failures)
            .await
            .is_ok_and(|p| p.replicated >= ticket);
        if replicated {
            return match self.lease.get() {
                Some(lease) => lease.check(),
                None => Ok(()),
            };
        }
        let failing = self.status.lock().unwrap().failing.clone().unwrap_or_default();
        Err(format!(
            "the backup store {} did not take this write ({failing}): it is kept on this host and \
             ships when the store answers, but with --backup-mode sync it is not acknowledged",
            self.store.url
        ))
    }

    /// Whether `object` must ship a snapshot (a commit of it did not fit the queue); clears it.
    pub fn take_stale(&self, object: &ObjectRef) -> bool {
        let mut stale = self.stale.lock().unwrap();
        !stale.is_empty() && stale.remove(object)
    }

    /// Writes what is queued every interval (in sync mode: as soon as something is queued)
    /// until the host stops (then [`Backup::flush`]).
    pub async fn run(self: Arc<Self>) {
        if let Err(e) = self.learn_log_size().await {
            tracing::warn!(store = %self.store.url, "backup: cannot read the store's log: {e}");
        }
        loop {
            let failing = self.status.lock().unwrap().failing.is_some();
            if self.mode == BackupMode::Sync && !failing {
                tokio::select! {
                    () = self.queued.notified() => {}
                    () = tokio::time::sleep(self.interval) => {}
                }
            } else {
                // A store that does not answer is asked again only each interval.
                tokio::time::sleep(self.interval).await;
            }
            self.flush().await;
            self.snapshot_if_due();
        }
    }

    /// Ships the changed files and everything queued, as one batch. A failure leaves the entries
    /// queued (in order, ahead of newer ones) for the next flush.
    pub async fn flush(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        // Reading and hashing files, and compressing a batch of up to MAX_QUEUED bytes, are long
        // blocking work: off the async worker.
        let files = match crate::storage::off_the_async_worker(|| self.changed_files()) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("backup: cannot read the data folder's files: {e}");
                Vec::new()
            }
        };
        let (mut entries, bytes, last_ticket) = {
            let mut queue = self.queue.lock().unwrap();
            (std::mem::take(&mut queue.entries), std::mem::take(&mut queue.bytes), queue.last_ticket)
        };
        let commits = entries.len();
        let shipped_files: Vec<(String, Option<Shipped>)> =
            files.iter().map(|(path, meta, _)| (path.clone(), *meta)).collect();
        // Files first: a class's secret before its objects' commits.
        let mut batch: Vec<Entry> = files.into_iter().map(|(_, _, entry)| entry).collect();
        batch.append(&mut entries);
        if batch.is_empty() {
            if self.status.lock().unwrap().failing.is_some() {
                self.probe().await;
            }
            return;
        }
        let result = self.store_components(&mut batch).await;
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!("log/{:013}-{}-{sequence:08}.wdob", now_ms(), self.run);
        let named = std::time::Instant::now();
        let encoded = result.and_then(|()| {
            crate::storage::off_the_async_worker(|| format::encode(&batch))
                .map_err(|e| format!("cannot encode a batch: {e}"))
        });
        let result = match encoded {
            Ok(encoded) => {
                let size = encoded.len() as u64;
                let put = self.store.put(&name, encoded);
                match self.lease.get().map(|lease| lease.upload_bound()) {
                    None => put.await.map(|_| size).map_err(|e| e.to_string()),
                    Some(bound) => match tokio::time::timeout(bound.saturating_sub(named.elapsed()), put).await {
                        Ok(put) => put.map(|_| size).map_err(|e| e.to_string()),
                        Err(_) => Err(format!("the store took more than {bound:?} to take a batch")),
                    },
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(size) => {
                let mut shipped = self.files.lock().unwrap();
                for (path, meta) in shipped_files {
                    match meta {
                        Some(meta) => shipped.insert(path, meta),
                        None => shipped.remove(&path),
                    };
                }
                let mut status = self.status.lock().unwrap();
                if status.failing.take().is_some() {
                    tracing::info!(store = %self.store.url, "backup: the store answers again; caught up");
                }
                status.batches += 1;
                status.bytes += size;
                self.log_since_snapshot.fetch_add(size, Ordering::Relaxed);
                drop(status);
                self.waiting.fetch_sub(commits, Ordering::Relaxed);
                self.progress.send_modify(|p| p.replicated = p.replicated.max(last_ticket));
            }
            Err(e) => {
                {
                    let mut status = self.status.lock().unwrap();
                    if status.failing.is_none() {
                        tracing::warn!(store = %self.store.url, "backup: cannot write to the store (will retry): {e}");
                    }
                    status.failing = Some(e);
                }
                self.progress.send_modify(|p| p.failures += 1);
                // Back in the queue, ahead of what came since; files are found changed again.
                batch.retain(|entry| !matches!(entry, Entry::File { .. } | Entry::StoredFile { .. }));
                let mut queue = self.queue.lock().unwrap();
                let newer = std::mem::take(&mut queue.entries);
                queue.entries = batch;
                queue.entries.extend(newer);
                queue.bytes += bytes;
            }
        }
    }

    /// With nothing to ship while the store failed: asks it whether it answers again.
    async fn probe(&self) {
        match self.store.exists("log").await {
            Ok(_) => {
                tracing::info!(store = %self.store.url, "backup: the store answers again");
                self.status.lock().unwrap().failing = None;
            }
            Err(e) => self.status.lock().unwrap().failing = Some(e.to_string()),
        }
    }

    /// A component stored apart (`components/<sha256>.wasm`), checked against its hash.
    pub async fn component(&self, hash: &str) -> Result<Vec<u8>, String> {
        use sha2::Digest;
        let name = format!("components/{hash}.wasm");
        let bytes =
            self.store.get(&name).await.map_err(|e| format!("cannot read {name} from {}: {e}", self.store.url))?;
        if hex::encode(sha2::Sha256::digest(&bytes)) != hash {
            return Err(format!("{name} in {} does not hash to its name: it is damaged", self.store.url));
        }
        Ok(bytes.to_vec())
    }

    /// Stores the components among `batch`'s files apart, under their content's name (once: a
    /// restart ships them again only if the store lacks them), and leaves a reference in the
    /// batch.
    async fn store_components(&self, batch: &mut [Entry]) -> Result<(), String> {
        for entry in batch.iter_mut() {
            let Entry::File { time_ms, path, bytes: Some(bytes) } = entry else { continue };
            let Some(file) = path.strip_prefix("deploy/components/").filter(|f| f.ends_with(".wasm")) else {
                continue;
            };
            let name = format!("components/{file}");
            if !self.store.exists(&name).await.map_err(|e| e.to_string())? {
                self.store.put(&name, std::mem::take(bytes)).await.map_err(|e| e.to_string())?;
            }
            *entry = Entry::StoredFile { time_ms: *time_ms, path: std::mem::take(path), name };
        }
        Ok(())
    }

    /// The data folder's files that changed since they were last shipped: their paths, what to
    /// remember once shipped (`None`: removed) and their entries.
    fn changed_files(&self) -> std::io::Result<Vec<(String, Option<Shipped>, Entry)>> {
        use sha2::{Digest, Sha256};
        let shipped = self.files.lock().unwrap().clone();
        let mut seen = HashSet::new();
        let mut changed = Vec::new();
        for path in control_files(&self.data_dir)? {
            let relative =
                path.strip_prefix(&self.data_dir).expect("under the data folder").to_string_lossy().into_owned();
            seen.insert(relative.clone());
            let meta = std::fs::metadata(&path)?;
            let (size, modified) = (meta.len(), meta.modified()?);
            if shipped.get(&relative).is_some_and(|(s, m, _)| *s == size && *m == modified) {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            if shipped.get(&relative).is_some_and(|(_, _, h)| *h == hash) {
                self.files.lock().unwrap().insert(relative, (size, modified, hash));
                continue;
            }
            // Dated when it was written, not when shipped: a class's id secret is made before its
            // first object's commit, and a restore to a time between them needs it.
            let time_ms = modified.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let entry = Entry::File { time_ms: time_ms.min(now_ms()), path: relative.clone(), bytes: Some(bytes) };
            changed.push((relative, Some((size, modified, hash)), entry));
        }
        for gone in shipped.keys().filter(|p| !seen.contains(*p)) {
            changed.push((gone.clone(), None, Entry::File { time_ms: now_ms(), path: gone.clone(), bytes: None }));
        }
        Ok(changed)
    }
}

/// The files of a data folder that a restore needs besides the objects' databases: each class's
/// id secret and secrets, the deploy state, the worker's secrets and the components.
fn control_files(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut add_if_file = |path: PathBuf| {
        if path.is_file() {
            files.push(path);
        }
    };
    let objects = data_dir.join("objects");
    if objects.is_dir() {
        for class in std::fs::read_dir(&objects)? {
            let class = class?.path();
            add_if_file(class.join("secret"));
            add_if_file(class.join("secrets.json"));
        }
    }
    let deploy = data_dir.join("deploy");
    add_if_file(deploy.join("state.json"));
    add_if_file(deploy.join("worker-secrets.json"));
    let components = deploy.join("components");
    if components.is_dir() {
        for component in std::fs::read_dir(&components)? {
            add_if_file(component?.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
