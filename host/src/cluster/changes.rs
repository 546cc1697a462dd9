//! Deploys, rollbacks and secrets reach every host of a cluster, and every host makes them in
//! the same order, including a host that was down when they were made.
//!
//! # Design
//!
//! etcd keeps the cluster's **journal** of changes (`wdo/changes/…`, ordered by their create
//! revisions). A change made through a host (an admin request) goes:
//!
//! 1. the host takes the cluster's change lock (`wdo/change-lock`, under its lease, so a host
//!    that dies lets go): one change at a time in the whole cluster;
//! 2. it catches up with the journal (below), so it changes what every host has;
//! 3. it makes the change (validated and compiled like any deploy: bad input stops here, and
//!    nothing is recorded) and ships it to the backup store (components included, under
//!    `components/<sha256>.wasm`);
//! 4. it records the change in the journal, notes its revision as applied, lets go of the lock;
//! 5. it tells every other live host (`POST /_wdo/cluster/change` with the revision,
//!    authenticated like forwarded events), which catches up; the admin request answers once
//!    every host did, or with an error naming each host that did not.
//!
//! **Catching up** applies, in order, every change of the journal after the revision this host
//! applied last (kept in `<data>/cluster/changes`), taking missing components from the store.
//! A host catches up when told, every few seconds, and when it joins, before it claims any
//! object: a host that missed changes (down, cut off) serves what the cluster deployed, never
//! what it had. A host that applied a change restarts into what it had deployed: its manifest
//! is not deployed again over the cluster's changes ([`Journal::follows`]). A change that cannot
//! be applied (its component cannot be read from the store) stops the catching up there, loudly,
//! until it can: later changes may depend on it.

use super::{Cluster, etcd};
use crate::Host;
use crate::deploy::{Plan, Target};
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A change every host of the cluster makes.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Deploy { plan: Plan },
    Rollback { target: String, version: Option<u32> },
    Secret { owner: String, name: String, value: Option<String> },
}

impl Change {
    fn describe(&self) -> &'static str {
        match self {
            Change::Deploy { .. } => "the deploy",
            Change::Rollback { .. } => "the rollback",
            Change::Secret { .. } => "the secret's change",
        }
    }
}

/// A change as the journal keeps it.
#[derive(Serialize, Deserialize)]
struct Journaled {
    /// The host it was made through.
    host: String,
    change: Change,
}

/// What the change route (`POST /_wdo/cluster/change`) is told: catch up to `revision`.
#[derive(Serialize, Deserialize)]
pub(crate) struct CatchUp {
    pub revision: u64,
}

/// How often a host looks for changes it missed (a host that could not be told).
const CATCH_UP_EVERY: Duration = Duration::from_secs(3);

/// How long a change waits for the one being made through another host.
const LOCK_PATIENCE: Duration = Duration::from_secs(120);

/// This host's place in the cluster's journal.
pub(super) struct Journal {
    /// The revision of the last change applied here; held while applying.
    applied: Arc<tokio::sync::Mutex<u64>>,
    /// What `applied` holds, read without waiting (`wdo cluster status`).
    latest: std::sync::atomic::AtomicU64,
    /// Whether this host had applied changes of the journal when it started.
    follows: bool,
    file: PathBuf,
    /// Whether this host tried to catch up once since it joined (claims wait for it).
    caught_up: tokio::sync::watch::Sender<bool>,
    /// One change through this host at a time.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Journal {
    /// The journal as `<data>/cluster/changes` says this host left it.
    pub(super) fn open(folder: &std::path::Path) -> Result<Journal, Error> {
        let file = folder.join("changes");
        let applied = match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().parse::<u64>().map_err(|_| {
                Error::Internal(format!("{} holds `{}`, not the revision of a change", file.display(), text.trim()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(format!("read {}", file.display()), e)),
        };
        Ok(Journal {
            applied: Arc::new(tokio::sync::Mutex::new(applied)),
            latest: applied.into(),
            follows: applied > 0,
            file,
            caught_up: tokio::sync::watch::Sender::new(false),
            turn: Arc::default(),
        })
    }

    /// Whether this host applied changes of the cluster's journal before it started: then
    /// what it deployed is the cluster's, and its manifest is not deployed again.
    pub(super) fn follows(&self) -> bool {
        self.follows
    }

    /// The revision of the last change applied here.
    pub(super) fn applied_now(&self) -> u64 {
        self.latest.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until this host tried once to catch up with the journal since it started.
    pub(super) async fn caught_up(&self) {
        let _ = self.caught_up.subscribe().wait_for(|done| *done).await;
    }

    fn record(&self, applied: &mut u64, revision: u64) -> Result<(), Error> {
        *applied = revision;
        self.latest.store(revision, std::sync::atomic::Ordering::Relaxed);
        crate::files::write_atomically(&self.file, revision.to_string().as_bytes(), 0o600)
            .map_err(|e| Error::io(format!("write {}", self.file.display()), e))
    }
}

/// A change being made through this host: holds the cluster's change lock
/// ([`begin`] .. [`finish`]); dropped early, it lets the lock go.
pub(crate) struct Turn {
    cluster: Arc<Cluster>,
    applied: tokio::sync::OwnedMutexGuard<u64>,
    locked: bool,
    /// This host's own turn: while it is held, a change lock in etcd naming this host is this
    /// turn's (or one a failed release left behind). Let go only after the lock in etcd.
    here: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.locked {
            let (cluster, here) = (self.cluster.clone(), self.here.take());
            tokio::spawn(async move {
                if let Err(e) = etcd::release_change_lock(&cluster.etcd, &cluster.me.id).await {
                    tracing::warn!(
                        "cluster: could not let go of the change lock (the next change here takes it back): {e}"
                    );
                }
                drop(here);
            });
        }
    }
}

/// Before a change through this host: takes the change lock and catches up (`None` outside a
/// cluster).
pub(crate) async fn begin(host: &Host) -> Result<Option<Turn>, Error> {
    let Some(cluster) = host.cluster().cloned() else { return Ok(None) };
    let unavailable = |reason: String| Error::Unavailable { object: "the cluster".into(), reason };
    let here = cluster.changes.turn.clone().lock_owned().await;
    let give_up = tokio::time::Instant::now() + LOCK_PATIENCE;
    loop {
        let lease = cluster.lease_id().ok_or_else(|| {
            unavailable(format!("host {} is rejoining the cluster (its lease lapsed); retry", cluster.me.id))
        })?;
        match etcd::try_change_lock(&cluster.etcd, &cluster.me.id, lease).await.map_err(unavailable)? {
            Ok(()) => break,
            // Left by a change of this host whose release failed: no other turn of it runs.
            Err(holder) if holder == cluster.me.id => {
                etcd::release_change_lock(&cluster.etcd, &cluster.me.id).await.map_err(unavailable)?;
            }
            Err(holder) if tokio::time::Instant::now() > give_up => {
                return Err(Error::Busy(format!(
                    "another change is being made through host {holder}; nothing was changed: try again when it is done"
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let applied = cluster.changes.applied.clone().lock_owned().await;
    let mut turn = Turn { cluster, applied, locked: true, here: Some(here) };
    catch_up_locked(host, &turn.cluster, &mut turn.applied).await.map_err(|e| {
        Error::Busy(format!(
            "this host ({}) has not caught up with the changes made through other hosts ({e}); nothing was changed",
            turn.cluster.me.id
        ))
    })?;
    Ok(Some(turn))
}

/// After a change through this host (made here already): records it in the journal and gets
/// it to every other live host; an error names each host that did not make it.
pub(crate) async fn finish(turn: Option<Turn>, change: Change) -> Result<(), Error> {
    let Some(mut turn) = turn else { return Ok(()) };
    let cluster = turn.cluster.clone();
    let what = change.describe();
    let entry = serde_json::to_string(&Journaled { host: cluster.me.id.clone(), change }).expect("serializable");
    let revision = etcd::journal(&cluster.etcd, &entry).await.map_err(|e| Error::Unavailable {
        object: "the cluster".into(),
        reason: format!(
            "{what} is done on this host ({}), but could not be recorded for the other hosts ({e}): make it again",
            cluster.me.id
        ),
    })?;
    cluster.changes.record(&mut turn.applied, revision)?;
    if etcd::release_change_lock(&cluster.etcd, &cluster.me.id).await.is_ok() {
        turn.locked = false;
    }
    drop(turn);
    tracing::info!(revision, "{what} is recorded for every host of the cluster");
    cluster.broadcast(what, revision).await
}

/// Catches up with the journal (`POST /_wdo/cluster/change`): returns the revision applied,
/// at least `revision` unless a change failed.
pub(crate) async fn catch_up_to(host: &Host, revision: u64) -> Result<u64, Error> {
    let cluster = host.cluster().ok_or_else(|| Error::BadRequest("this host is not in a cluster".into()))?;
    let mut applied = cluster.changes.applied.lock().await;
    if *applied < revision {
        catch_up_locked(host, cluster, &mut applied).await.map_err(Error::Busy)?;
    }
    if *applied < revision {
        return Err(Error::Busy(format!(
            "host {} finds no change {revision} in the cluster's journal (it applied up to {})",
            cluster.me.id, *applied
        )));
    }
    Ok(*applied)
}

/// Applies every change of the journal after `applied`, in order.
async fn catch_up_locked(host: &Host, cluster: &Cluster, applied: &mut u64) -> Result<(), String> {
    loop {
        let (changes, more) = etcd::changes_after(&cluster.etcd, *applied, 32).await?;
        for (revision, value) in changes {
            let entry: Journaled = serde_json::from_str(&value)
                .map_err(|e| format!("change {revision} of the journal is not understood ({e}): {value}"))?;
            let what = entry.change.describe();
            apply(host, entry.change)
                .await
                .map_err(|e| format!("{what} made through host {} (change {revision}) fails here: {e}", entry.host))?;
            cluster.changes.record(applied, revision).map_err(|e| e.to_string())?;
            tracing::info!(revision, from = %entry.host, "cluster: {what} made through another host is applied here");
        }
        if !more {
            return Ok(());
        }
    }
}

/// Catches up when this host joins (after its startup deploy), when told, and every few
/// seconds (a host that missed being told).
pub(crate) async fn follow(host: crate::host::WeakHost) {
    let mut first = true;
    loop {
        let Some(now) = host.upgrade() else { return };
        let Some(cluster) = now.cluster().cloned() else { return };
        {
            let mut applied = cluster.changes.applied.lock().await;
            if let Err(e) = catch_up_locked(&now, &cluster, &mut applied).await {
                tracing::error!("cluster: this host cannot catch up with the cluster's changes: {e}");
            }
        }
        if first {
            first = false;
            cluster.changes.caught_up.send_replace(true);
        }
        drop(now);
        tokio::time::sleep(CATCH_UP_EVERY).await;
    }
}

impl Cluster {
    /// Tells every other live host to catch up to `revision`; an error names each host that
    /// did not.
    async fn broadcast(&self, what: &str, revision: u64) -> Result<(), Error> {
        let body = serde_json::to_vec(&CatchUp { revision }).expect("serializable");
        // The live hosts as etcd has them now, not as last read: a host whose lease just
        // expired is not waited for (it catches up when it rejoins).
        if let Err(e) = self.refresh_members().await {
            tracing::debug!("cluster: cannot read the members: {e}");
        }
        let others: Vec<_> = self.members().into_iter().filter(|m| m.id != self.me.id).collect();
        let sends = others.iter().map(|member| self.forwarder.post(member, "/_wdo/cluster/change", body.clone()));
        let answers = futures_util::future::join_all(sends).await;
        let failed: Vec<String> = others
            .iter()
            .zip(answers)
            .filter_map(|(member, answer)| match answer {
                Ok((200, _)) => None,
                Ok((status, body)) => Some(format!(
                    "host {} ({}) answered {status}: {}",
                    member.id,
                    member.advertise,
                    String::from_utf8_lossy(&body).trim()
                )),
                Err(e) => Some(format!("host {} ({}) did not answer: {e}", member.id, member.advertise)),
            })
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        Err(Error::Busy(format!(
            "{what} is done on this host ({}){}, but not everywhere yet: {}; the hosts that did not switch keep \
             serving what they had until they catch up (they look every few seconds, and when they rejoin)",
            self.me.id,
            match others.len() - failed.len() {
                0 => String::new(),
                n => format!(" and on {n} other host(s)"),
            },
            failed.join("; ")
        )))
    }
}

/// Makes one change of the journal on this host.
async fn apply(host: &Host, change: Change) -> Result<(), Error> {
    let what = change.describe();
    match change {
        Change::Deploy { plan } => {
            let hashes = plan.classes.iter().map(|c| c.hash.clone()).chain(plan.worker.clone());
            for hash in hashes {
                if host.component_size(&hash).is_some() {
                    continue;
                }
                let bytes = host.component_from_backup(&hash).await?;
                let kept = host.clone();
                blocking(move || kept.upload_component(&bytes)).await?;
            }
            let deploying = host.clone();
            blocking(move || deploying.deploy(&plan)).await?;
        }
        Change::Rollback { target, version } => {
            let rolling_back = host.clone();
            let target = Target::parse(&target);
            blocking(move || rolling_back.rollback(&target, version)).await?;
        }
        Change::Secret { owner, name, value } => {
            host.set_secret(&Target::parse(&owner), &name, value.as_deref())?;
        }
    }
    host.replicate_change(what).await
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Error::Internal(format!("a deploy task failed: {e}"))))
}
