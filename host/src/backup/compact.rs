//! Snapshots and retention: what keeps a backup store from growing with time.
//!
//! # Design
//!
//! The log (`log/`) grows with every commit. Once the batches written since the last snapshot
//! weigh more than that snapshot (and at least `--backup-snapshot-every`), the host writes a new
//! one: it rebuilds, in a folder of its own (`<data>/.backup-snapshot`), the state the store
//! holds (the last snapshot and the batches after it, exactly as `wdo restore` does), then stores
//! every object's database and every data-folder file as batches of their own under
//! `snapshots/<the last batch it covers>/part-NNNNN.wdob`, and a `manifest.json` last: a
//! snapshot without its manifest is unfinished and ignored. It is built from the store, not from
//! the live databases, so it is exactly "every batch up to this one" and needs no pause of any
//! object. A restore then starts from the latest snapshot whose newest commit is not after the
//! asked time and reads only the batches after it: what it reads is bounded by about twice the
//! data (the snapshot, and batches that together weigh less than it) plus the threshold.
//!
//! Retention (`--backup-retention`, 30 days by default): a restore to any time inside the window
//! needs the newest snapshot whose commits all precede the window's start, and what came after
//! it. Everything older (earlier snapshots, the batches that snapshot covers) is deleted, after
//! `retention.json` records the earliest time a restore can reach. What the store keeps grows
//! with the data and the changes inside the window, not with time.
//!
//! **In a cluster** several hosts write the log, each naming its batches by its own clock, so a
//! batch may land after one named later. One host writes the snapshots (the live one with the
//! lowest id, `HostLease::snapshot_settle`), counting every host's batches (re-read from the
//! store once a minute, or once per retention when that is shorter), and a snapshot covers only
//! the batches named `settle` (three leases) ago or earlier; a host does not acknowledge a batch
//! that took longer than a lease to land (`HostLease::upload_bound`), so no acknowledged batch
//! lands behind a snapshot that should have held it. A takeover whose anchor is older than the
//! retained history restores from the latest snapshot instead (`cluster/anchor.rs`).

use super::format::{self, Entry, ObjectRef};
use super::{Backup, BackupStore};
use crate::ids::ObjectId;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Raw bytes of entries in one part of a snapshot at most.
const PART_BYTES: usize = 64 << 20;

/// What `snapshots/<name>/manifest.json` says.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(super) struct Snapshot {
    /// The last batch of the log it covers (`log/....wdob`).
    pub through: String,
    /// The latest commit time in it: a restore to an earlier time cannot start from it.
    pub max_time_ms: u64,
    pub parts: u32,
    pub objects: u64,
    /// Bytes stored (compressed).
    pub bytes: u64,
}

impl Snapshot {
    fn folder(through: &str) -> String {
        let stem = through.trim_start_matches("log/").trim_end_matches(".wdob");
        format!("snapshots/{stem}")
    }

    /// The names of its parts, in order.
    pub fn parts(&self) -> Vec<String> {
        let folder = Snapshot::folder(&self.through);
        (0..self.parts).map(|n| format!("{folder}/part-{n:05}.wdob")).collect()
    }
}

/// What `retention.json` says: history before this cannot be restored.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(super) struct Retained {
    pub earliest_ms: u64,
    /// The time in the name of the last batch removed: every batch named up to it is gone.
    #[serde(default)]
    pub removed_through_ms: u64,
}

/// The time in a batch's name (`log/<ms>-<run>-<number>.wdob`).
fn batch_time(name: &str) -> Option<u64> {
    name.strip_prefix("log/")?.split('-').next()?.parse().ok()
}

/// The finished snapshots in the store, oldest first.
pub(super) async fn snapshots(store: &BackupStore) -> Result<Vec<Snapshot>, String> {
    let names = store.list("snapshots/").await.map_err(|e| format!("cannot list {}: {e}", store.url))?;
    let mut snapshots = Vec::new();
    for name in names.iter().filter(|n| n.ends_with("/manifest.json")) {
        let bytes = store.get(name).await.map_err(|e| format!("cannot read {name} from {}: {e}", store.url))?;
        let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|e| format!("{name}: {e}"))?;
        snapshots.push(snapshot);
    }
    snapshots.sort_by(|a, b| a.through.cmp(&b.through));
    Ok(snapshots)
}

/// The store's `retention.json`, if it has been trimmed.
pub(super) async fn retained(store: &BackupStore) -> Result<Option<Retained>, String> {
    match store.get("retention.json").await {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("retention.json: {e}")),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(format!("cannot read retention.json from {}: {e}", store.url)),
    }
}

impl Backup {
    /// How much the log weighs past the last snapshot, and that snapshot: read from the store
    /// when the host starts, so restarts do not forget what is owed.
    pub(super) async fn learn_log_size(&self) -> Result<(), String> {
        let last = snapshots(&self.store).await?.pop();
        let log = self.store.list_sized("log/").await.map_err(|e| e.to_string())?;
        let since: u64 =
            log.iter().filter(|(name, _)| last.as_ref().is_none_or(|s| *name > s.through)).map(|(_, size)| size).sum();
        self.log_since_snapshot.store(since, Ordering::Relaxed);
        self.last_snapshot_bytes.store(last.map_or(0, |s| s.bytes), Ordering::Relaxed);
        Ok(())
    }

    /// After a batch was written: starts a snapshot (in the background, one at a time) when the
    /// log since the last one outweighs it. In a cluster only the host the cluster picks writes
    /// them, from what every host shipped (re-read from the store once a minute, or once per
    /// retention), and a snapshot leaves out the newest batches (see the module's note).
    pub(super) fn snapshot_if_due(self: &Arc<Self>) {
        let settle = match self.lease.get() {
            None => None,
            Some(lease) => match lease.snapshot_settle() {
                Some(settle) => Some(settle),
                None => return,
            },
        };
        let since = self.log_since_snapshot.load(Ordering::Relaxed);
        let due = since >= self.snapshot_every.max(self.last_snapshot_bytes.load(Ordering::Relaxed));
        let now = super::now_ms();
        let relearn =
            settle.is_some() && now.saturating_sub(self.log_learnt_ms.load(Ordering::Relaxed)) >= self.relearn_ms();
        let waiting = now < self.snapshot_after_ms.load(Ordering::Relaxed);
        if !(due || relearn) || waiting || self.snapshotting.swap(true, Ordering::AcqRel) {
            return;
        }
        let backup = self.clone();
        tokio::spawn(async move {
            if !due {
                // The other hosts' batches count too.
                backup.log_learnt_ms.store(now, Ordering::Relaxed);
                let learnt = backup.learn_log_size().await;
                let since = backup.log_since_snapshot.load(Ordering::Relaxed);
                if learnt.is_err()
                    || since < backup.snapshot_every.max(backup.last_snapshot_bytes.load(Ordering::Relaxed))
                {
                    backup.snapshotting.store(false, Ordering::Release);
                    return;
                }
            }
            let started = std::time::Instant::now();
            let written = backup.write_snapshot(settle).await;
            if let Some(settle) = settle.filter(|_| !matches!(written, Ok(Some(_)))) {
                // Nothing old enough yet (or the store failed): the batches named since wait.
                backup.snapshot_after_ms.store(super::now_ms() + settle.as_millis() as u64 / 2, Ordering::Relaxed);
            }
            match written {
                Ok(Some(snapshot)) => tracing::info!(
                    store = %backup.store.url,
                    objects = snapshot.objects,
                    bytes = snapshot.bytes,
                    millis = started.elapsed().as_millis() as u64,
                    "backup: snapshot written"
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(store = %backup.store.url, "backup: cannot write a snapshot (will retry): {e}")
                }
            }
            if let Err(e) = backup.trim().await {
                tracing::warn!(store = %backup.store.url, "backup: cannot remove history past the retention: {e}");
            }
            backup.snapshotting.store(false, Ordering::Release);
        });
    }

    /// How often a cluster's snapshot writer re-reads the size of every host's batches: once a
    /// minute, or once per retention when that is shorter (history past it is due for removal,
    /// which takes a snapshot, which takes knowing the other hosts' batches).
    fn relearn_ms(&self) -> u64 {
        (self.retention.as_millis() as u64).clamp(1_000, 60_000)
    }

    /// Rebuilds what the store holds (in a cluster: its batches named `settle` ago or earlier)
    /// and stores it as a snapshot; `None` when there is no log past the last snapshot.
    async fn write_snapshot(&self, settle: Option<std::time::Duration>) -> Result<Option<Snapshot>, String> {
        let dir = self.data_dir.join(".backup-snapshot");
        let _ = std::fs::remove_dir_all(&dir);
        crate::files::make_private_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let since_at_start = self.log_since_snapshot.load(Ordering::Relaxed);
        let until =
            settle.map(|settle| format!("log/{:013}", super::now_ms().saturating_sub(settle.as_millis() as u64)));
        let result = self.store_snapshot(&dir, until.as_deref()).await;
        let _ = std::fs::remove_dir_all(&dir);
        let snapshot = result?;
        if let Some(snapshot) = &snapshot {
            self.log_since_snapshot
                .fetch_sub(since_at_start.min(self.log_since_snapshot.load(Ordering::Relaxed)), Ordering::Relaxed);
            self.last_snapshot_bytes.store(snapshot.bytes, Ordering::Relaxed);
        }
        Ok(snapshot)
    }

    /// Once retention removed history: the time up to which batches (by the time in their
    /// names) may be gone.
    pub(crate) async fn removed_through(&self) -> Result<Option<u64>, String> {
        Ok(retained(&self.store).await?.map(|kept| kept.earliest_ms.max(kept.removed_through_ms)))
    }

    async fn store_snapshot(&self, dir: &Path, until: Option<&str>) -> Result<Option<Snapshot>, String> {
        let rebuilt = super::restore::rebuild(&self.store, dir, None, until).await?;
        let Some(through) = rebuilt.through.filter(|t| t.starts_with("log/")) else { return Ok(None) };
        if snapshots(&self.store).await?.last().is_some_and(|last| last.through >= through) {
            // Nothing old enough past the last snapshot (a cluster's newest batches wait).
            return Ok(None);
        }
        let folder = Snapshot::folder(&through);
        let time_ms = rebuilt.max_time_ms;
        let mut snapshot = Snapshot { through, max_time_ms: time_ms, parts: 0, objects: 0, bytes: 0 };
        let mut part: Vec<Entry> = Vec::new();
        let mut part_bytes = 0;
        let mut entries: Vec<Box<dyn FnOnce() -> std::io::Result<Entry> + Send>> = Vec::new();
        for path in super::control_files(dir).map_err(|e| e.to_string())? {
            let relative = path.strip_prefix(dir).expect("under the folder").to_string_lossy().into_owned();
            entries.push(Box::new(move || {
                Ok(match relative.strip_prefix("deploy/components/").filter(|f| f.ends_with(".wasm")) {
                    // Components are in the store already, under their content's name.
                    Some(file) => Entry::StoredFile { time_ms, name: format!("components/{file}"), path: relative },
                    None => Entry::File { time_ms, bytes: Some(std::fs::read(&path)?), path: relative },
                })
            }));
        }
        for (class, id) in rebuilt.objects {
            let token = rebuilt.tokens.get(&(class.clone(), id)).copied().unwrap_or(0);
            let path = crate::storage::object_db_path(dir, &class, &ObjectId::from_bytes(&id));
            snapshot.objects += 1;
            entries.push(Box::new(move || {
                let bytes = std::fs::read(&path)?;
                if bytes.len() < 100 {
                    let what = format!("{} is too short to be a database", path.display());
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
                }
                let page_size = super::page_size_of(&bytes);
                Ok(Entry::Snapshot { time_ms, object: ObjectRef { class, id }, token, page_size, bytes })
            }));
        }
        let count = entries.len();
        for (n, entry) in entries.into_iter().enumerate() {
            let entry = crate::storage::off_the_async_worker(entry).map_err(|e| e.to_string())?;
            part_bytes += entry.size();
            part.push(entry);
            if part_bytes >= PART_BYTES || n + 1 == count {
                let name = format!("{folder}/part-{:05}.wdob", snapshot.parts);
                let encoded = crate::storage::off_the_async_worker(|| format::encode(&part))
                    .map_err(|e| format!("cannot encode {name}: {e}"))?;
                snapshot.bytes += encoded.len() as u64;
                self.store.put(&name, encoded).await.map_err(|e| format!("cannot write {name}: {e}"))?;
                snapshot.parts += 1;
                (part, part_bytes) = (Vec::new(), 0);
            }
        }
        let manifest = serde_json::to_vec_pretty(&snapshot).expect("serializable");
        let name = format!("{folder}/manifest.json");
        self.store.put(&name, manifest).await.map_err(|e| format!("cannot write {name}: {e}"))?;
        Ok(Some(snapshot))
    }

    /// Deletes what no restore inside `--backup-retention` needs.
    async fn trim(&self) -> Result<(), String> {
        let cutoff = super::now_ms().saturating_sub(self.retention.as_millis() as u64);
        let snapshots = snapshots(&self.store).await?;
        let Some(kept) = snapshots.iter().rposition(|s| s.max_time_ms <= cutoff) else { return Ok(()) };
        let oldest = &snapshots[kept];
        let removed_through_ms = batch_time(&oldest.through).unwrap_or(0);
        let retained = Retained { earliest_ms: oldest.max_time_ms, removed_through_ms };
        let retained = serde_json::to_vec(&retained).expect("serializable");
        self.store.put("retention.json", retained).await.map_err(|e| format!("cannot write retention.json: {e}"))?;
        for old in &snapshots[..kept] {
            let folder = Snapshot::folder(&old.through);
            // The manifest first: a snapshot missing parts must not look finished.
            self.store.delete(&format!("{folder}/manifest.json")).await.map_err(|e| e.to_string())?;
            for part in old.parts() {
                self.store.delete(&part).await.map_err(|e| e.to_string())?;
            }
        }
        let log = self.store.list("log/").await.map_err(|e| e.to_string())?;
        for name in log.iter().filter(|name| **name <= oldest.through) {
            self.store.delete(name).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
