//! Which objects this host holds, and what happens to an event for one it does not.
//!
//! Each object is in one of three states here: *held* (claimed under this host's lease: its
//! events run here), *waiting* (a claim or a release is under way: events queue in order behind
//! it, up to the mailbox's capacity) or absent. An event for an absent object is forwarded to
//! the host rendezvous hashing picks, or, when that is this host (or the event was forwarded
//! here), starts a claim. Everything that touches etcd or the backup store runs in a task of
//! its own; the table's lock is never held across an await.

use super::etcd::{self, Claim, Member};
use super::{Cluster, placement};
use crate::error::Error;
use crate::object::{Directory, Envelope, ObjectKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

pub(super) enum State {
    /// `alarm`: the due time last recorded in etcd for the object (`etcd.rs`); `None`: not
    /// known since this claim. `anchored`: when its anchor last moved (`anchor.rs`); `ran`: an
    /// event was let through since.
    Held { token: u64, used: Instant, alarm: Option<Option<i64>>, anchored: Instant, ran: bool },
    /// Events that arrived while a claim or release runs; `true`: forwarded by another host.
    Waiting(Vec<(Envelope, bool)>),
}

impl State {
    /// Held under `token` from now; `ran`: events are about to run.
    pub(super) fn held(token: u64, ran: bool) -> State {
        State::Held { token, used: Instant::now(), alarm: None, anchored: Instant::now(), ran }
    }
}

#[derive(Default)]
pub(super) struct Ownership {
    pub(super) table: Mutex<HashMap<ObjectKey, State>>,
    /// Owners learnt from claims that found the object held, so later events go straight there.
    hints: Mutex<HashMap<ObjectKey, String>>,
    /// The stored copy the anchor of each object held here names (`anchor.rs`).
    bases: Mutex<HashMap<ObjectKey, String>>,
    /// Objects paused while still held (a checkpoint, a drain): their token and lease. Events
    /// their actor had queued before the pause run under that claim before it closes.
    paused: Mutex<HashMap<ObjectKey, (u64, Option<i64>)>>,
}

/// A held object whose events wait ([`Cluster::pause`]).
pub(super) struct Paused {
    pub token: u64,
    /// It ran an event since its anchor last moved.
    pub ran: bool,
    /// The lease it was held under: it is held again only under the same one.
    lease: Option<i64>,
}

/// Hints kept at most (they are only shortcuts: a wrong one costs a retry).
const MAX_HINTS: usize = 65_536;

impl Ownership {
    /// Forgets every object held (the lease is gone): their actors are asked to close.
    pub(super) fn drop_all(&self, directory: &Directory) {
        let held: Vec<ObjectKey> = {
            let mut table = self.table.lock().unwrap();
            let held: Vec<ObjectKey> =
                table.iter().filter(|(_, s)| matches!(s, State::Held { .. })).map(|(k, _)| k.clone()).collect();
            for key in &held {
                table.remove(key);
            }
            held
        };
        let mut bases = self.bases.lock().unwrap();
        for key in &held {
            // The next holder reads that copy (and deletes it).
            bases.remove(key);
        }
        drop(bases);
        for key in &held {
            directory.retire(key);
            directory.limits.sockets.close_object(key, 1012, "the object moved to another host: reconnect");
        }
    }

    pub(super) fn base(&self, key: &ObjectKey) -> Option<String> {
        self.bases.lock().unwrap().get(key).cloned()
    }

    pub(super) fn set_base(&self, key: &ObjectKey, base: Option<String>) {
        let mut bases = self.bases.lock().unwrap();
        match base {
            Some(base) => drop(bases.insert(key.clone(), base)),
            None => drop(bases.remove(key)),
        }
    }

    fn hint(&self, key: &ObjectKey) -> Option<String> {
        self.hints.lock().unwrap().get(key).cloned()
    }

    fn learn(&self, key: &ObjectKey, host: Option<&str>) {
        let mut hints = self.hints.lock().unwrap();
        match host {
            Some(host) => {
                if hints.len() >= MAX_HINTS {
                    hints.clear();
                }
                hints.insert(key.clone(), host.to_string());
            }
            None => drop(hints.remove(key)),
        }
    }
}

impl Cluster {
    /// Whether this host holds `key` now.
    pub(crate) fn holds(&self, key: &ObjectKey) -> bool {
        matches!(self.ownership.table.lock().unwrap().get(key), Some(State::Held { .. }))
    }

    /// The lease this host holds `key` under: `None` when it does not hold it, or holds no
    /// valid lease now. A host that loses its lease lets go of the lease first, then of its
    /// objects (`lost_lease`), so a claim from before the loss never reads the lease after it.
    /// A paused object (`pause`) counts as held under the lease it was paused under, while that
    /// lease lasts.
    pub(crate) fn held_under(&self, key: &ObjectKey) -> Option<i64> {
        if self.holds(key) {
            return self.lease_id();
        }
        let paused = self.ownership.paused.lock().unwrap().get(key).and_then(|(_, lease)| *lease)?;
        (self.lease_id() == Some(paused)).then_some(paused)
    }

    /// `Err` unless this host still holds the lease `lease` (what [`Cluster::held_under`] said
    /// when the object's database opened): an object's write is committed and acknowledged only
    /// under the lease its claim was made under. The error says why; the caller says what became
    /// of the write.
    pub(crate) fn check_held_under(&self, lease: Option<i64>) -> Result<(), String> {
        match (lease, self.lease_id()) {
            (Some(then), Some(now)) if then == now => Ok(()),
            _ => Err(format!(
                "this host ({}) no longer holds the cluster lease it held the object under (it could not renew \
                 it in time): the object may be held by another host now",
                self.me.id
            )),
        }
    }

    /// Stops a held object's events from running: they queue behind it until [`Cluster::resume`].
    /// `None` if it is not held here. The caller must get to the resume: it runs in a task
    /// nothing cancels (the checkpoint loop, a drain's own task).
    pub(super) fn pause(&self, key: &ObjectKey) -> Option<Paused> {
        let lease = self.lease_id();
        let mut table = self.ownership.table.lock().unwrap();
        let Some(State::Held { token, ran, .. }) = table.get(key) else { return None };
        let paused = Paused { token: *token, ran: *ran, lease };
        table.insert(key.clone(), State::Waiting(Vec::new()));
        self.ownership.paused.lock().unwrap().insert(key.clone(), (paused.token, lease));
        Some(paused)
    }

    /// Closes a paused object's actor (`sockets`: its WebSockets too, code 1012), waiting up to
    /// 30 s for it to close; whether it did.
    pub(super) async fn close_paused(&self, directory: &Directory, key: &ObjectKey, sockets: bool) -> bool {
        if sockets {
            directory.limits.sockets.close_object(key, 1012, "the object moved to another host: reconnect");
        }
        let until = Instant::now() + Duration::from_secs(30);
        while directory.has_actor(key) && Instant::now() < until {
            directory.retire(key);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        !directory.has_actor(key)
    }

    /// Ends a pause: the object is held again (`hold`, and only if this host's lease is still
    /// the one it was held under) or let go. `anchored`: its anchor moved during the pause.
    /// Returns the events that queued, and whether it is held.
    pub(super) fn resume(
        &self,
        key: &ObjectKey,
        paused: &Paused,
        hold: bool,
        anchored: bool,
    ) -> (Vec<(Envelope, bool)>, bool) {
        let mut table = self.ownership.table.lock().unwrap();
        self.ownership.paused.lock().unwrap().remove(key);
        let queue = match table.remove(key) {
            Some(State::Waiting(queue)) => queue,
            _ => Vec::new(),
        };
        let held = hold && paused.lease.is_some() && self.lease_id() == paused.lease;
        if held {
            let mut state = State::held(paused.token, !queue.is_empty() || (paused.ran && !anchored));
            if let (State::Held { anchored: at, .. }, false) = (&mut state, anchored) {
                // Not moved: due again in a tenth of the period, not at once.
                *at = Instant::now() - self.checkpoint_every.mul_f64(0.9);
            }
            table.insert(key.clone(), state);
        }
        (queue, held)
    }

    /// The fencing token this host holds `key` under, paused or not (0 if it does not hold it).
    pub(crate) fn token(&self, key: &ObjectKey) -> u64 {
        match self.ownership.table.lock().unwrap().get(key) {
            Some(State::Held { token, .. }) => *token,
            _ => self.ownership.paused.lock().unwrap().get(key).map_or(0, |(token, _)| *token),
        }
    }

    /// The object's alarm is now due at `at_ms` (`None`: it has none): etcd is told when that
    /// makes it due earlier than etcd knows, or when it appears or goes, so that another host
    /// fires it if this one dies (`alarm_scan`). Later times are not written: an alarm etcd
    /// believes due too early only wakes its object early, to find it not due. The write is
    /// returned to wait on: the event that changed the alarm is not acknowledged before etcd
    /// has it (a crash right after must not leave an alarm no other host knows of).
    pub(crate) fn alarm_changed(self: &Arc<Self>, key: &ObjectKey, at_ms: Option<i64>) -> Option<AlarmRecorded> {
        let publish = {
            let mut table = self.ownership.table.lock().unwrap();
            let Some(State::Held { alarm, .. }) = table.get_mut(key) else { return None };
            let publish = match (*alarm, at_ms) {
                (Some(None), None) => false,
                (Some(Some(known)), Some(at)) => at < known,
                _ => true,
            };
            if publish {
                *alarm = Some(at_ms);
            }
            publish
        };
        if !publish {
            return None;
        }
        let (cluster, key) = (self.clone(), key.clone());
        Some(AlarmRecorded(tokio::spawn(async move {
            let recorded = etcd::set_alarm(&cluster.etcd, &key.class, &key.id.to_hex(), at_ms).await;
            if recorded.is_err() {
                // Written again at the next change.
                if let Some(State::Held { alarm, .. }) = cluster.ownership.table.lock().unwrap().get_mut(&key) {
                    *alarm = None;
                }
            }
            recorded.map_err(|e| format!("the cluster could not record the object's alarm: {e}"))
        })))
    }

    /// The host a WebSocket upgrade for `key` is proxied to (`gateway/upgrade.rs`): `None` when
    /// the object is held (or being claimed) here, or should be claimed here.
    pub(crate) fn remote_owner(&self, key: &ObjectKey) -> Option<Member> {
        if self.ownership.table.lock().unwrap().contains_key(key) {
            return None;
        }
        self.preferred_owner(key)
    }

    /// The other host an event for an object not held here goes to: the owner a claim learnt,
    /// else the one rendezvous hashing picks; `None` when that is this host.
    fn preferred_owner(&self, key: &ObjectKey) -> Option<Member> {
        let owner = self.ownership.hint(key).and_then(|host| self.member(&host));
        let owner = owner.or_else(|| placement::choose(&self.members.load(), &key.class, key.id.as_bytes()).cloned());
        owner.filter(|owner| owner.id != self.me.id)
    }

    /// Decides where an event goes: here (the object is held here: the envelope comes back),
    /// or queued behind a claim, or forwarded to the object's owner (`None`: the reply comes
    /// back through the envelope).
    /// `forwarded`: another host sent it here; it is served here or answered with the owner,
    /// never forwarded again.
    pub(crate) fn admit(
        self: &Arc<Self>,
        directory: &Arc<Directory>,
        key: ObjectKey,
        envelope: Envelope,
        forwarded: bool,
    ) -> Result<Option<Envelope>, Error> {
        let mut table = self.ownership.table.lock().unwrap();
        match table.get_mut(&key) {
            Some(State::Held { used, ran, .. }) => {
                *used = Instant::now();
                *ran = true;
                return Ok(Some(envelope));
            }
            Some(State::Waiting(queue)) => {
                if queue.len() >= directory.config.mailbox_capacity {
                    return Err(Error::Overloaded {
                        object: label(&key, &envelope),
                        queued: directory.config.mailbox_capacity,
                    });
                }
                queue.push((envelope, forwarded));
                return Ok(None);
            }
            None => {}
        }
        let draining = self.draining.load(std::sync::atomic::Ordering::Relaxed);
        if !forwarded || draining {
            if let Some(owner) = self.preferred_owner(&key) {
                drop(table);
                self.forward(owner, key, envelope, true);
                return Ok(None);
            }
            if draining {
                return Err(Error::Unavailable {
                    object: label(&key, &envelope),
                    reason: "this host is being drained and no other host of the cluster is live".into(),
                });
            }
        }
        table.insert(key.clone(), State::Waiting(vec![(envelope, forwarded)]));
        drop(table);
        tokio::spawn(self.clone().claim(directory.clone(), key));
        Ok(None)
    }

    /// Forwards an event to `owner`; when it answers that another host holds the object, tries
    /// there once (`retry`).
    fn forward(self: &Arc<Self>, owner: Member, key: ObjectKey, envelope: Envelope, retry: bool) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let Envelope { event, name, reply, chain, deadline, held, request_id } = envelope;
            let live = || cluster.member(&owner.id).is_some();
            let to = super::forward::Addressed {
                key: &key,
                name: name.as_deref(),
                chain: &chain,
                deadline,
                request_id: request_id.as_deref(),
            };
            let outcome = cluster.forwarder.send(&owner, to, event, live).await;
            let answer = match outcome {
                Ok(super::forward::Outcome::Reply(answer)) => answer,
                Ok(super::forward::Outcome::Misdirected { host, event }) => {
                    cluster.ownership.learn(&key, (!host.is_empty()).then_some(host.as_str()));
                    let next = if retry && !host.is_empty() && host != cluster.me.id {
                        cluster.member_now(&host).await
                    } else {
                        None
                    };
                    match next {
                        Some(next) => {
                            let envelope = Envelope { event, name, reply, chain, deadline, held, request_id };
                            cluster.forward(next, key, envelope, false);
                            return;
                        }
                        None => Err(Error::Unavailable {
                            object: label_of(&key, name.as_deref()),
                            reason: format!(
                                "the cluster is moving this object (host {} does not hold it); nothing ran, retry",
                                owner.id
                            ),
                        }),
                    }
                }
                Err(e) => {
                    cluster.ownership.learn(&key, None);
                    Err(e)
                }
            };
            let _ = reply.send(answer);
        });
    }

    /// Claims `key` for this host, restores it if another host held it since this one did,
    /// then lets its queued events run (or sends them where the object is held).
    async fn claim(self: Arc<Self>, directory: Arc<Directory>, key: ObjectKey) {
        let outcome = self.try_claim(&directory, &key).await;
        let queue = {
            let mut table = self.ownership.table.lock().unwrap();
            let queue = match table.remove(&key) {
                Some(State::Waiting(queue)) => queue,
                other => {
                    // Dropped meanwhile (the lease was lost): nothing is queued.
                    if let Some(state) = other {
                        table.insert(key.clone(), state);
                    }
                    Vec::new()
                }
            };
            if let Ok(Some(token)) = outcome {
                // As if it ran: what its anchor names may not be all it holds (`anchor.rs`).
                table.insert(key.clone(), State::held(token, true));
            }
            queue
        };
        match outcome {
            Ok(Some(_)) => {
                self.ownership.learn(&key, None);
                for (envelope, _) in queue {
                    directory.send_here(&key, envelope);
                }
            }
            Ok(None) => {
                let owner = match self.ownership.hint(&key) {
                    Some(host) => self.member_now(&host).await,
                    None => None,
                };
                for (envelope, forwarded) in queue {
                    match (&owner, forwarded) {
                        (Some(owner), false) => self.forward(owner.clone(), key.clone(), envelope, true),
                        _ => {
                            let host = self.ownership.hint(&key).unwrap_or_default();
                            let object = label(&key, &envelope);
                            let _ = envelope.reply.send(Err(Error::Misdirected { object, host }));
                        }
                    }
                }
            }
            Err(reason) => {
                for (envelope, _) in queue {
                    let object = label(&key, &envelope);
                    let _ = envelope.reply.send(Err(Error::Unavailable { object, reason: reason.clone() }));
                }
            }
        }
    }

    /// `Ok(Some(token))`: held here now; `Ok(None)`: held elsewhere (the hint names the host).
    async fn try_claim(&self, directory: &Arc<Directory>, key: &ObjectKey) -> Result<Option<u64>, String> {
        let id_hex = key.id.to_hex();
        let backup = directory.backup.clone().ok_or("cluster hosts need a backup store")?;
        // Not before this host has what the cluster deployed (`changes.rs`); bounded, for a
        // host whose start-up never finishes.
        let _ = tokio::time::timeout(Duration::from_secs(120), self.changes.caught_up()).await;
        let give_up = Instant::now() + self.ttl * 2;
        loop {
            let Some(lease) = self.lease_id() else {
                return Err(format!("host {} is rejoining the cluster (its lease lapsed); retry", self.me.id));
            };
            let fresh = self.anchor_here(&backup, 0, None);
            match etcd::claim(&self.etcd, &key.class, &id_hex, &self.me.id, lease, &fresh).await? {
                Claim::Claimed { token, previous } => {
                    self.settle(directory, &backup, key, token, previous).await?;
                    return Ok(Some(token));
                }
                // Held by this host under an earlier lease (a restart, or a lease that lapsed):
                // it goes when that lease expires.
                Claim::Held { host, lease: held_under, .. } if host == self.me.id && held_under != lease => {}
                // This claim, applied by a member that failed before answering.
                Claim::Held { host, token, .. } if host == self.me.id => {
                    let previous = etcd::anchor(&self.etcd, &key.class, &id_hex).await?;
                    self.settle(directory, &backup, key, token, previous).await?;
                    return Ok(Some(token));
                }
                Claim::Held { host, .. } if host.is_empty() => {}
                Claim::Held { host, .. } => {
                    self.ownership.learn(key, Some(&host));
                    return Ok(None);
                }
            }
            if Instant::now() > give_up {
                return Err("the object's earlier claim did not expire in time; retry".into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// After a claim under `token`: unless this run of the host holds the object's latest state
    /// already (it was the last to hold it, or nobody ever did), takes it over from where
    /// `previous` says it is; a failure lets the claim go.
    async fn settle(
        &self,
        directory: &Arc<Directory>,
        backup: &Arc<crate::backup::Backup>,
        key: &ObjectKey,
        token: u64,
        previous: Option<etcd::Anchor>,
    ) -> Result<(), String> {
        let previous = match previous {
            Some(previous) if !self.is_mine(backup, &previous) => previous,
            mine_or_none => {
                self.ownership.set_base(key, mine_or_none.and_then(|p| p.stored));
                return Ok(());
            }
        };
        match self.take_over(directory, backup, key, token, &previous).await {
            Ok(read) => {
                let stored = previous.stored.as_deref().unwrap_or("none");
                match read {
                    Some(batches) => tracing::info!(class = %key.class, object = %key.id, from = %previous.host,
                        token, stored, batches,
                        "cluster: took an object over (its stored copy and this many batches of the log read)"),
                    None => tracing::info!(class = %key.class, object = %key.id, from = %previous.host, token,
                        "cluster: took an object over (from the store's latest snapshot and the log after it: its \
                         anchor is older than the history kept)"),
                }
                Ok(())
            }
            Err(e) => {
                let _ = etcd::set_anchor(&self.etcd, &key.class, &key.id.to_hex(), token, None, true).await;
                Err(format!("cannot take the object over from host {}: {e}", previous.host))
            }
        }
    }
}

/// Every lease period: objects with an alarm due soon that no host holds (their host died, or
/// let them go idle) are claimed by the host rendezvous hashing picks, which restores them and
/// so indexes their alarm.
pub(super) async fn alarm_scan(cluster: Weak<Cluster>) {
    loop {
        let Some(period) = cluster.upgrade().map(|c| c.ttl) else { return };
        tokio::time::sleep(period).await;
        let Some(cluster) = cluster.upgrade() else { return };
        let Some(directory) = cluster.directory() else { continue };
        if cluster.lease_id().is_none() || cluster.draining.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        let orphans = match etcd::orphan_alarms(&cluster.etcd).await {
            Ok(orphans) => orphans,
            Err(e) => {
                tracing::debug!("cluster: {e}");
                continue;
            }
        };
        let soon = crate::alarms::now_ms() + 2 * period.as_millis() as i64;
        let members = cluster.members.load_full();
        for (class, id, due) in orphans.into_iter().filter(|(_, _, due)| *due <= soon) {
            let (Ok(served), Some(id)) = (directory.registry.get(&class), crate::ids::ObjectId::from_hex(&id)) else {
                continue;
            };
            let key = ObjectKey { class: served.name.clone(), id };
            let chosen = placement::choose(&members, &key.class, key.id.as_bytes());
            if chosen.is_some_and(|m| m.id == cluster.me.id) {
                let mut table = cluster.ownership.table.lock().unwrap();
                if table.contains_key(&key) {
                    continue;
                }
                table.insert(key.clone(), State::Waiting(Vec::new()));
                drop(table);
                tracing::info!(class, object = %key.id, due, "cluster: claiming an object whose alarm no host holds");
                tokio::spawn(cluster.clone().claim(directory.clone(), key));
            }
        }
    }
}

/// Releases objects idle past `--object-idle-timeout` (no actor, no WebSocket), once a second.
pub(super) async fn release_idle(cluster: Weak<Cluster>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(cluster) = cluster.upgrade() else { return };
        let Some(directory) = cluster.directory() else { continue };
        let grace = directory.config.object_idle_timeout;
        let is_idle = |key: &ObjectKey, state: &State| match state {
            State::Held { token, used, .. } if used.elapsed() >= grace => {
                (!directory.has_actor(key) && directory.limits.sockets.count(key) == 0).then_some(*token)
            }
            _ => None,
        };
        let idle: Vec<ObjectKey> = {
            let table = cluster.ownership.table.lock().unwrap();
            table.iter().filter(|(key, state)| is_idle(key, state).is_some()).map(|(key, _)| key.clone()).collect()
        };
        // A few at a time, together: an event for one of them waits for its group only.
        for group in idle.chunks(RELEASES_AT_ONCE) {
            let group: Vec<(ObjectKey, u64)> = {
                let mut table = cluster.ownership.table.lock().unwrap();
                let still: Vec<(ObjectKey, u64)> =
                    group.iter().filter_map(|key| Some((key.clone(), is_idle(key, table.get(key)?)?))).collect();
                for (key, _) in &still {
                    table.insert(key.clone(), State::Waiting(Vec::new()));
                }
                still
            };
            if group.is_empty() {
                continue;
            }
            // Their commits ship first: the next owner restores from the store.
            let shipped = shipped(&directory).await;
            let releases = group.iter().map(|(key, token)| {
                let (cluster, directory) = (&cluster, &directory);
                async move { shipped && cluster.store_and_anchor(directory, key, *token, true).await.is_ok() }
            });
            let released = futures_util::future::join_all(releases).await;
            for ((key, token), released) in group.into_iter().zip(released) {
                cluster.released(&directory, key, token, released);
            }
        }
    }
}

/// Objects released together by [`release_idle`].
const RELEASES_AT_ONCE: usize = 32;

impl Cluster {
    /// After trying to release `key` (held under `token`): what queued meanwhile runs here if
    /// it is still held, or goes to whoever claims it next.
    fn released(self: &Arc<Self>, directory: &Arc<Directory>, key: ObjectKey, token: u64, released: bool) {
        let mut table = self.ownership.table.lock().unwrap();
        let queue = match table.remove(&key) {
            Some(State::Waiting(queue)) => queue,
            _ => Vec::new(),
        };
        // Still held, unless the lease went meanwhile (then nothing is held here).
        if !released && self.lease_id().is_some() {
            table.insert(key.clone(), State::held(token, true));
            drop(table);
            for (envelope, _) in queue {
                directory.send_here(&key, envelope);
            }
        } else if !queue.is_empty() {
            table.insert(key.clone(), State::Waiting(queue));
            drop(table);
            tokio::spawn(self.clone().claim(directory.clone(), key));
        }
    }
}

/// An object's alarm being recorded in etcd ([`Cluster::alarm_changed`]).
pub(crate) struct AlarmRecorded(tokio::task::JoinHandle<Result<(), String>>);

impl AlarmRecorded {
    /// Waits until etcd has it; `Err` says why it could not.
    pub(crate) async fn done(self) -> Result<(), String> {
        self.0.await.unwrap_or_else(|e| Err(format!("recording the object's alarm failed: {e}")))
    }
}

/// Ships what the backup has queued: whether the store took it (the next holder of an object
/// this host lets go restores from there).
pub(super) async fn shipped(directory: &Directory) -> bool {
    match &directory.backup {
        Some(backup) => backup.flush_checked().await.is_ok(),
        None => true,
    }
}

pub(super) fn label(key: &ObjectKey, envelope: &Envelope) -> String {
    label_of(key, envelope.name.as_deref())
}

fn label_of(key: &ObjectKey, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{}/{name}", key.class),
        None => format!("{}/{}", key.class, key.id.to_hex()),
    }
}
