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
use crate::backup::format::ObjectRef;
use crate::error::Error;
use crate::object::{Directory, Envelope, ObjectKey};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

enum State {
    /// `alarm`: the due time last recorded in etcd for the object (`etcd.rs`); `None`: not
    /// known since this claim.
    Held { token: u64, used: Instant, alarm: Option<Option<i64>> },
    /// Events that arrived while a claim or release runs; `true`: forwarded by another host.
    Waiting(Vec<(Envelope, bool)>),
}

#[derive(Default)]
pub(super) struct Ownership {
    table: Mutex<HashMap<ObjectKey, State>>,
    /// Owners learnt from claims that found the object held, so later events go straight there.
    hints: Mutex<HashMap<ObjectKey, String>>,
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
        for key in &held {
            directory.retire(key);
            directory.limits.sockets.close_object(key, 1012, "the object moved to another host: reconnect");
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

    /// The fencing token this host holds `key` under (0 if it does not hold it).
    pub(crate) fn token(&self, key: &ObjectKey) -> u64 {
        match self.ownership.table.lock().unwrap().get(key) {
            Some(State::Held { token, .. }) => *token,
            _ => 0,
        }
    }

    /// The object's alarm is now due at `at_ms` (`None`: it has none): etcd is told when that
    /// makes it due earlier than etcd knows, or when it appears or goes, so that another host
    /// fires it if this one dies (`alarm_scan`). Later times are not written: an alarm etcd
    /// believes due too early only wakes its object early, to find it not due.
    pub(crate) fn alarm_changed(self: &Arc<Self>, key: &ObjectKey, at_ms: Option<i64>) {
        let publish = {
            let mut table = self.ownership.table.lock().unwrap();
            let Some(State::Held { alarm, .. }) = table.get_mut(key) else { return };
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
        if publish {
            let (cluster, key) = (self.clone(), key.clone());
            tokio::spawn(async move {
                if let Err(e) = etcd::set_alarm(&cluster.etcd, &key.class, &key.id.to_hex(), at_ms).await {
                    tracing::warn!(object = %key.id, "cluster: {e}");
                    // Written again at the next change.
                    if let Some(State::Held { alarm, .. }) = cluster.ownership.table.lock().unwrap().get_mut(&key) {
                        *alarm = None;
                    }
                }
            });
        }
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
            Some(State::Held { used, .. }) => {
                *used = Instant::now();
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
            let Envelope { event, name, reply, chain, deadline, held } = envelope;
            let live = || cluster.member(&owner.id).is_some();
            let to = super::forward::Addressed { key: &key, name: name.as_deref(), chain: &chain, deadline };
            let outcome = cluster.forwarder.send(&owner, to, event, live).await;
            let answer = match outcome {
                Ok(super::forward::Outcome::Reply(answer)) => answer,
                Ok(super::forward::Outcome::Misdirected { host, event }) => {
                    cluster.ownership.learn(&key, (!host.is_empty()).then_some(host.as_str()));
                    match cluster.member(&host).filter(|_| retry && host != cluster.me.id) {
                        Some(next) => {
                            let envelope = Envelope { event, name, reply, chain, deadline, held };
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
                table.insert(key.clone(), State::Held { token, used: Instant::now(), alarm: None });
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
                let owner = self.ownership.hint(&key).and_then(|host| self.member(&host));
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
        let give_up = Instant::now() + self.ttl * 2;
        loop {
            let Some(lease) = self.lease_id() else {
                return Err(format!("host {} is rejoining the cluster (its lease lapsed); retry", self.me.id));
            };
            match etcd::claim(&self.etcd, &key.class, &id_hex, &self.me.id, lease).await? {
                Claim::Claimed { token, previous, stored } => {
                    if previous.as_deref().is_some_and(|p| p != self.me.id) {
                        if let Err(e) = self.take_over(directory, key, token, stored.as_deref()).await {
                            let _ = etcd::release(&self.etcd, &key.class, &id_hex, token, None).await;
                            return Err(format!("cannot take the object over from host {}: {e}", previous.unwrap()));
                        }
                        tracing::debug!(object = %key.id, from = ?previous, token, "took an object over");
                    }
                    return Ok(Some(token));
                }
                // Held by this host under an earlier lease (a restart, or a lease that lapsed):
                // it goes when that lease expires.
                Claim::Held { host, lease: held_under, .. } if host == self.me.id && held_under != lease => {}
                // This claim, applied by a member that failed before answering: whoever held the
                // object before is not known, so it is restored from the store.
                Claim::Held { host, token, .. } if host == self.me.id => {
                    self.take_over(directory, key, token, None).await?;
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

    /// Lets go of an object whose actor is gone here and whose commits shipped: its whole
    /// database goes to the store first, for the next holder (`etcd::release`).
    async fn release(&self, directory: &Arc<Directory>, key: &ObjectKey, token: u64) -> bool {
        let stored = match &directory.backup {
            Some(backup) => {
                let path = crate::storage::object_db_path(&directory.config.data_dir, &key.class, &key.id);
                match crate::storage::off_the_async_worker(move || crate::storage::serialize_closed(&path)) {
                    Ok(database) => {
                        let object = ObjectRef::new(&key.class, &key.id);
                        backup.put_released(&object, token, database).await.ok()
                    }
                    Err(e) => {
                        tracing::warn!(object = %key.id, "cluster: cannot read a released object's database: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        let released = stored.as_deref().map(|stored| (self.me.id.as_str(), stored));
        etcd::release(&self.etcd, &key.class, &key.id.to_hex(), token, released).await.is_ok()
    }

    /// Puts the object's state from the backup store in place (the last host that held it was
    /// another), then ships it under this host's token before anything runs.
    /// `stored`: where the previous holder put the object's database when it released it; else
    /// its latest state comes from the log.
    async fn take_over(
        &self,
        directory: &Arc<Directory>,
        key: &ObjectKey,
        token: u64,
        stored: Option<&str>,
    ) -> Result<(), String> {
        let backup = directory.backup.clone().ok_or("cluster hosts need a backup store")?;
        let object = ObjectRef::new(&key.class, &key.id);
        let database = match stored {
            Some(name) => backup.get_released(name).await?,
            None => backup.latest(&object).await?,
        };
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
        backup.fence(&object, token, database).await
    }
}

impl Cluster {
    /// Hands every object this host holds over to the others, without failing a request: the
    /// host leaves the members (so nobody picks it), then, a few objects at a time, closes each
    /// object (events arriving meanwhile wait), lets go of its claim once its commits shipped,
    /// and sends what waited to the host that takes it over. WebSockets are closed (1012) so their
    /// clients reconnect through any host. The host goes on forwarding whatever reaches it.
    /// Returns how many objects it handed over.
    pub(crate) async fn drain(self: &Arc<Self>) -> Result<usize, Error> {
        let directory = self.directory().ok_or_else(|| Error::Internal("the host is gone".into()))?;
        let unreachable = |e: String| Error::Unavailable { object: "the cluster".into(), reason: e };
        self.draining.store(true, std::sync::atomic::Ordering::Relaxed);
        let lease = self.lease_id().ok_or_else(|| unreachable("this host's lease lapsed; drain again".into()))?;
        etcd::register(&self.etcd, &self.listed(), lease).await.map_err(unreachable)?;
        self.refresh_members().await.map_err(unreachable)?;
        let held: Vec<(ObjectKey, u64)> = self
            .ownership
            .table
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(key, state)| match state {
                State::Held { token, .. } => Some((key.clone(), *token)),
                State::Waiting(_) => None,
            })
            .collect();
        let count = held.len();
        let handovers = futures_util::stream::iter(held)
            .map(|(key, token)| {
                let (cluster, directory) = (self.clone(), directory.clone());
                async move { cluster.hand_over(&directory, key, token).await }
            })
            .buffer_unordered(16);
        let failed: Vec<String> = handovers.filter_map(|r| async move { r.err() }).collect().await;
        if let Some(first) = failed.first() {
            return Err(Error::Busy(format!(
                "{} of {count} objects could not be handed over (the first: {first}); drain again",
                failed.len()
            )));
        }
        tracing::info!(objects = count, "cluster: drained: this host holds no object and forwards what reaches it");
        Ok(count)
    }

    async fn hand_over(self: &Arc<Self>, directory: &Arc<Directory>, key: ObjectKey, token: u64) -> Result<(), String> {
        {
            let mut table = self.ownership.table.lock().unwrap();
            if !matches!(table.get(&key), Some(State::Held { .. })) {
                return Ok(());
            }
            table.insert(key.clone(), State::Waiting(Vec::new()));
        }
        directory.limits.sockets.close_object(&key, 1012, "the object moved to another host: reconnect");
        let until = Instant::now() + Duration::from_secs(30);
        while directory.has_actor(&key) {
            directory.retire(&key);
            if Instant::now() > until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let shipped = shipped(directory).await;
        let released = !directory.has_actor(&key) && shipped && self.release(directory, &key, token).await;
        let queue = {
            let mut table = self.ownership.table.lock().unwrap();
            let queue = match table.remove(&key) {
                Some(State::Waiting(queue)) => queue,
                _ => Vec::new(),
            };
            if !released {
                table.insert(key.clone(), State::Held { token, used: Instant::now(), alarm: None });
            }
            queue
        };
        for (envelope, forwarded) in queue {
            if released {
                match self.admit(directory, key.clone(), envelope, forwarded) {
                    Ok(Some(envelope)) => directory.send_here(&key, envelope),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(object = %key.id, "cluster: an event waiting for a handover: {e}"),
                }
            } else {
                directory.send_here(&key, envelope);
            }
        }
        match released {
            true => Ok(()),
            false => Err(format!("{}/{} is still busy here or its commits did not ship", key.class, key.id.to_hex())),
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
        let idle: Vec<(ObjectKey, u64)> = {
            let mut table = cluster.ownership.table.lock().unwrap();
            let idle: Vec<(ObjectKey, u64)> = table
                .iter()
                .filter_map(|(key, state)| match state {
                    State::Held { token, used, .. } if used.elapsed() >= grace => Some((key.clone(), *token)),
                    _ => None,
                })
                .filter(|(key, _)| !directory.has_actor(key) && directory.limits.sockets.count(key) == 0)
                .collect();
            for (key, _) in &idle {
                table.insert(key.clone(), State::Waiting(Vec::new()));
            }
            idle
        };
        if idle.is_empty() {
            continue;
        }
        // Their commits ship first: the next owner restores from the store.
        let shipped = shipped(&directory).await;
        for (key, token) in idle {
            let released = shipped && cluster.release(&directory, &key, token).await;
            let mut table = cluster.ownership.table.lock().unwrap();
            let queue = match table.remove(&key) {
                Some(State::Waiting(queue)) => queue,
                _ => Vec::new(),
            };
            // Still held, unless the lease went meanwhile (then nothing is held here).
            if !released && cluster.lease_id().is_some() {
                table.insert(key.clone(), State::Held { token, used: Instant::now(), alarm: None });
                drop(table);
                for (envelope, _) in queue {
                    directory.send_here(&key, envelope);
                }
            } else if !queue.is_empty() {
                table.insert(key.clone(), State::Waiting(queue));
                drop(table);
                tokio::spawn(cluster.clone().claim(directory.clone(), key));
            }
        }
    }
}

/// Ships what the backup has queued: whether the store took it (the next holder of an object
/// this host lets go restores from there).
async fn shipped(directory: &Directory) -> bool {
    match &directory.backup {
        Some(backup) => backup.flush_checked().await.is_ok(),
        None => true,
    }
}

fn label(key: &ObjectKey, envelope: &Envelope) -> String {
    label_of(key, envelope.name.as_deref())
}

fn label_of(key: &ObjectKey, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{}/{name}", key.class),
        None => format!("{}/{}", key.class, key.id.to_hex()),
    }
}
