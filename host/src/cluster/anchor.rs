//! Where each object's latest state is in the backup store, so that a host taking it over
//! reads little of the store, however long the cluster has run.
//!
//! # Design
//!
//! Every host ships its commits to one shared log (`backup/`), batches of many objects each.
//! Walking the whole log to rebuild one object would make a failover slower with every day the
//! cluster runs. Instead etcd keeps, per object, an *anchor* (`last/<class>/<id>`,
//! [`etcd::Anchor`]): a whole copy of the database stored apart (or none), plus "the commits
//! of this object that run R of host H shipped after time T under token K or later". A
//! restore reads the copy and lists only R's batches named after T: S3 lists from a name on
//! (`start-after`), and a batch's name carries its run.
//!
//! - A claim of an object no host ever held writes a fresh anchor in the claim's transaction
//!   (no copy; this run's batches from now on).
//! - A host claiming an object whose anchor is another host's (or an earlier run's) restores
//!   it from the anchor, ships it as its first snapshot under its token (`Backup::fence`), and
//!   only then moves the anchor to itself ("my run from before that snapshot"), guarded by its
//!   claim. A host that crashes before moving it never ran the object, so the old anchor is
//!   still the truth.
//! - A host claiming back an object whose anchor is its own run's keeps it: its copy on disk is
//!   the latest state, and what it ships next lands in the same run's batches.
//! - Releasing an idle object stores its closed database apart and moves the anchor there, in
//!   the transaction that lets the claim go.
//! - *Checkpoints*: an object held longer than `--cluster-checkpoint` is paused (its events
//!   queue), closed, stored apart, re-anchored and resumed. So a crash takeover reads one copy
//!   and at most one checkpoint period of the dead host's batches.
//!
//! The copy an anchor named is deleted from the store once the anchor moved past it (only the
//! holder moves an anchor, and nobody else reads it meanwhile). Batch names use the shipping
//! host's clock, and so do its anchors: hosts' clocks never meet here. A clock that steps back
//! is covered for `restore::ANCHOR_CLOCK_MARGIN_MS`.

use super::Cluster;
use super::etcd::{self, Anchor};
use super::ownership::{State, shipped};
use crate::backup::Backup;
use crate::backup::format::ObjectRef;
use crate::backup::restore::Since;
use crate::object::{Directory, ObjectKey};
use futures_util::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Checkpoints written at once.
const CHECKPOINTS_AT_ONCE: usize = 4;

impl Cluster {
    /// An anchor in this run of the host from now on.
    pub(super) fn anchor_here(&self, backup: &Backup, token: u64, stored: Option<String>) -> Anchor {
        Anchor {
            host: self.me.id.clone(),
            run: Some(backup.run_id().to_string()),
            token,
            since_ms: crate::backup::now_ms(),
            batch: backup.next_batch(),
            stored,
        }
    }

    /// Whether `anchor` is this run's: the object's database here is its latest state.
    pub(super) fn is_mine(&self, backup: &Backup, anchor: &Anchor) -> bool {
        anchor.host == self.me.id && anchor.run.as_deref() == Some(backup.run_id())
    }

    /// Puts the object's state from the backup store in place (another host, or an earlier run
    /// of this one, held it last), then ships it under this host's token before anything runs,
    /// and moves its anchor here.
    pub(super) async fn take_over(
        &self,
        directory: &Arc<Directory>,
        backup: &Arc<Backup>,
        key: &ObjectKey,
        token: u64,
        previous: &Anchor,
    ) -> Result<Option<usize>, String> {
        let object = ObjectRef::new(&key.class, &key.id);
        let (database, batches) = restore(backup, &object, previous).await?;
        // An actor of an earlier claim may still be closing the old copy.
        let until = Instant::now() + Duration::from_secs(10);
        while directory.has_actor(key) {
            if Instant::now() > until {
                return Err("the object's earlier actor here did not close".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let path = crate::storage::object_db_path(&directory.config.data_dir, &key.class, &key.id);
        let bytes = database.clone();
        let alarm = crate::storage::off_the_async_worker(move || crate::storage::put_database(&path, bytes.as_deref()))
            .map_err(|e| format!("cannot put its database in place: {e}"))?;
        let id_hex = key.id.to_hex();
        let indexed = match &alarm {
            Some((name, at_ms)) => directory.alarms.upsert(&key.class, &id_hex, name.as_deref(), *at_ms),
            None => directory.alarms.remove(&key.class, &id_hex),
        };
        indexed.map_err(|e| format!("cannot index its alarm: {e}"))?;
        directory.alarms.wake.notify_one();
        if alarm.is_none() {
            // What etcd says of an alarm the object no longer has would wake it for nothing.
            let _ = etcd::set_alarm(&self.etcd, &key.class, &id_hex, None).await;
        }
        let anchor = self.anchor_here(backup, token, None);
        backup.fence(&object, token, database).await?;
        self.move_anchor(backup, key, token, previous.stored.clone(), &anchor, false).await?;
        Ok(batches)
    }

    /// Stores the closed database of an object held under `token` apart and anchors it there
    /// (`release`: and lets go of the claim in the same transaction). Its commits shipped
    /// already. `base`: the copy its anchor names now (deleted once the anchor moved).
    pub(super) async fn store_and_anchor(
        &self,
        directory: &Arc<Directory>,
        key: &ObjectKey,
        token: u64,
        release: bool,
    ) -> Result<(), String> {
        let backup = directory.backup.clone().ok_or("cluster hosts need a backup store")?;
        let path = crate::storage::object_db_path(&directory.config.data_dir, &key.class, &key.id);
        let database = crate::storage::off_the_async_worker(move || crate::storage::serialize_closed(&path))
            .map_err(|e| format!("cannot read the object's database: {e}"))?;
        let object = ObjectRef::new(&key.class, &key.id);
        let anchor = self.anchor_here(&backup, token, None);
        let stored = backup.put_object(&object, &format!("{token}-{}", anchor.since_ms), database).await?;
        let base = self.ownership.base(key);
        let anchor = Anchor { stored, ..anchor };
        self.move_anchor(&backup, key, token, base, &anchor, release).await
    }

    /// Moves the anchor of an object held under `token` to `anchor` (guarded by the claim), and
    /// deletes the copy the old one named (`old`).
    async fn move_anchor(
        &self,
        backup: &Backup,
        key: &ObjectKey,
        token: u64,
        old: Option<String>,
        anchor: &Anchor,
        release: bool,
    ) -> Result<(), String> {
        let id_hex = key.id.to_hex();
        if !etcd::set_anchor(&self.etcd, &key.class, &id_hex, token, Some(anchor), release).await? {
            if let Some(stored) = &anchor.stored {
                let _ = backup.delete_object(stored).await;
            }
            return Err("the claim was lost meanwhile".into());
        }
        self.ownership.set_base(key, anchor.stored.clone().filter(|_| !release));
        if let Some(old) = old.filter(|old| Some(old) != anchor.stored.as_ref())
            && let Err(e) = backup.delete_object(&old).await
        {
            tracing::warn!(object = %key.id, "cluster: {e}");
        }
        Ok(())
    }

    /// Writes a checkpoint of one held object: its events wait meanwhile. One that ran no event
    /// since its anchor moved, whose anchor names a stored copy, only has the anchor's time
    /// moved: no commit came after the copy.
    async fn checkpoint(self: &Arc<Self>, directory: &Arc<Directory>, backup: &Arc<Backup>, key: ObjectKey) {
        let Some(paused) = self.pause(&key) else { return };
        let anchored = match self.ownership.base(&key) {
            Some(base) if !paused.ran => {
                let anchor = self.anchor_here(backup, paused.token, Some(base.clone()));
                self.move_anchor(backup, &key, paused.token, Some(base), &anchor, false).await
            }
            _ if self.close_paused(directory, &key, false).await && shipped(directory).await => {
                self.store_and_anchor(directory, &key, paused.token, false).await
            }
            _ => Err("the object did not close or its commits did not ship".into()),
        };
        if let Err(e) = &anchored {
            tracing::warn!(object = %key.id, "cluster: no checkpoint this time: {e}");
        }
        let (queue, _) = self.resume(&key, &paused, true, anchored.is_ok());
        for (envelope, _) in queue {
            directory.send_here(&key, envelope);
        }
    }
}

/// The state an anchor names, and how many batches of its run's log that read (`None`: it was
/// read from the latest snapshot and the whole log after it instead).
async fn restore(
    backup: &Backup,
    object: &ObjectRef,
    anchor: &Anchor,
) -> Result<(Option<Vec<u8>>, Option<usize>), String> {
    let base = match &anchor.stored {
        Some(name) => Some(backup.get_object(name).await?),
        None => None,
    };
    match &anchor.run {
        Some(run) => {
            // Retention may have removed batches the anchor names (an object nobody held for
            // that long): the latest snapshot and the log after it have its state.
            let margin = crate::backup::restore::ANCHOR_CLOCK_MARGIN_MS;
            if backup.removed_through().await?.is_some_and(|removed| anchor.since_ms <= removed + margin) {
                return Ok((backup.latest(object).await?, None));
            }
            let since = Since { batch: anchor.batch, since_ms: anchor.since_ms, token: anchor.token };
            let (database, batches) = backup.object_since(object, base, run, since).await?;
            Ok((database, Some(batches)))
        }
        // An anchor of a version that kept no run: a release's copy is the whole state; else
        // the whole log is walked.
        None if base.is_some() => Ok((base, Some(0))),
        None => Ok((backup.latest(object).await?, None)),
    }
}

/// Checkpoints, a few at a time, the objects whose anchor is older than `--cluster-checkpoint`.
pub(super) async fn checkpoints(cluster: Weak<Cluster>) {
    loop {
        let Some(every) = cluster.upgrade().map(|c| c.checkpoint_every) else { return };
        tokio::time::sleep((every / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))).await;
        let Some(cluster) = cluster.upgrade() else { return };
        let Some(directory) = cluster.directory() else { continue };
        if cluster.draining.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        let Some(backup) = directory.backup.clone() else { continue };
        let due: Vec<ObjectKey> = {
            let table = cluster.ownership.table.lock().unwrap();
            let due = table.iter().filter_map(|(key, state)| match state {
                State::Held { anchored, .. } if anchored.elapsed() >= every => Some(key.clone()),
                _ => None,
            });
            due.collect()
        };
        futures_util::stream::iter(due)
            .for_each_concurrent(CHECKPOINTS_AT_ONCE, |key| {
                let (cluster, directory, backup) = (cluster.clone(), directory.clone(), backup.clone());
                async move { cluster.checkpoint(&directory, &backup, key).await }
            })
            .await;
    }
}
