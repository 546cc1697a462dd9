//! Several hosts, one owner per object: wdo as a cluster on etcd and the backup store.
//!
//! # Design
//!
//! **Membership.** A host joining (`wdo serve --cluster etcd://...`) takes a lease in etcd
//! (`--cluster-lease`, 5 s by default) and lists itself under it with the URL other hosts reach
//! it at (`--advertise`). It renews the lease every third of its time; the hosts read the list of
//! live hosts every half second (`etcd.rs`).
//!
//! **One owner per object.** Before an object runs on a host, the host claims it in etcd: a
//! transaction creates `owners/<class>/<id>` under the host's lease only if nobody holds it. The
//! claim's revision is the object's *fencing token*: every entry the host ships to the backup
//! store for the object carries it (`backup/format.rs`), and a restore skips entries whose token
//! is lower than one it already applied. A host that takes an object over from another restores
//! it from the backup store (where sync mode put every acknowledged write) and ships that state
//! at once as a snapshot under its own token, before the object runs: whatever the old owner
//! still writes afterwards (paused, partitioned) is either under that snapshot or skipped.
//!
//! **Stopping before the lease ends.** A host knows its lease lasts at least until the time it
//! sent its last renewal plus the lease's length; it stops committing and acknowledging writes
//! (`backup::HostLease`) a margin before that, so no write is acknowledged by a host that may
//! have lost its objects. When renewal fails for good it drops every object it held (their
//! actors close), takes a new lease and claims again what it is asked for. An event that was
//! running across that (the host paused past its lease) is not committed under the new lease:
//! an object's writes are committed and acknowledged only while the lease it was held under when
//! its database opened lasts (`Cluster::held_under`). Committing it would leave the write in this
//! host's copy, which it keeps when it claims the object back as its last holder, although the
//! client was told to retry.
//!
//! **Any host, any request.** Events go through the object directory (`Directory::send`),
//! which asks the cluster first (`ownership.rs`): an object this host holds runs here; one
//! nobody holds is claimed by the live host rendezvous hashing picks (`placement.rs`), so load
//! spreads and every host agrees; an event for an object held elsewhere is forwarded to its
//! owner over HTTP (`forward.rs`, authenticated with the cluster's secret). A host that gets a
//! forwarded event for an object someone else holds answers with that owner, and the sender
//! tries once more there: a stale route is corrected, never served by the wrong host.
//!
//! **Letting go.** An object with no actor and no WebSocket for `--object-idle-timeout` is
//! released (its claim deleted, after its commits shipped); the next event claims it again,
//! possibly elsewhere. A host that claims back an object it was the last to hold keeps its own
//! copy; otherwise it restores from the store.
//!
//! **Changes.** Deploys, rollbacks and secrets are made one at a time and recorded in a
//! journal in etcd; every host makes them in the journal's order, catching up when told, every
//! few seconds and when it starts (`changes.rs`).
//!
//! Cluster mode needs `--backup-mode sync`: the store is how a write outlives its host. The
//! live host with the lowest id writes the store's snapshots and trims what retention no longer
//! needs (`backup/compact.rs`).

mod anchor;
mod changes;
mod drain;
mod etcd;
mod forward;
mod ownership;
mod placement;

pub(crate) use changes::{
    CatchUp, Change, Turn as ChangeTurn, begin as begin_change, catch_up_to, finish as finish_change,
    follow as follow_changes,
};
pub use etcd::Member;
pub(crate) use forward::{AUTH_HEADER, Incoming, serve_forwarded};
pub(crate) use ownership::AlarmRecorded;

/// Names the host that holds an object, on a 421 answer (an event or upgrade sent to a host
/// that does not hold it).
pub const OWNER_HEADER: &str = "x-wdo-owner";

use crate::error::{Error, Result};
use crate::object::Directory;
use arc_swap::ArcSwap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How a host joins a cluster (`wdo serve --cluster`).
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// etcd's client addresses (`host:port`).
    pub etcd: Vec<String>,
    /// The URL the other hosts reach this one at (`http://addr:port`).
    pub advertise: String,
    /// How long this host's lease lasts without renewal: how soon a dead host's objects move.
    pub lease: Duration,
    /// How often an object held that long is stored whole (`anchor.rs`): a host taking it over
    /// after a crash reads at most this much of the dead host's log.
    pub checkpoint: Duration,
}

impl ClusterSettings {
    /// Reads `etcd://host:port[,host:port...]`.
    pub fn parse_etcd(url: &str) -> std::result::Result<Vec<String>, String> {
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("`{url}` is not an etcd address: write etcd://HOST:PORT[,HOST:PORT...]"))?;
        let endpoints: Vec<String> =
            rest.trim_end_matches('/').split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect();
        if endpoints.is_empty() {
            return Err(format!("`{url}` names no etcd member: write etcd://HOST:PORT[,HOST:PORT...]"));
        }
        Ok(endpoints)
    }
}

/// The id secret of `class` when the data folder belongs to a cluster (`registry.rs`): derived
/// from the cluster's secret, so a name means the same object on every host. `None` outside a
/// cluster.
pub(crate) fn class_secret(data_dir: &Path, class: &str) -> Option<[u8; 32]> {
    use hmac::Mac;
    let secret = std::fs::read_to_string(data_dir.join("cluster").join("secret")).ok()?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.trim().as_bytes()).expect("any key size");
    mac.update(b"wdo class id secret\0");
    mac.update(class.as_bytes());
    Some(mac.finalize().into_bytes().into())
}

/// This host's lease: its id in etcd and until when it surely holds.
#[derive(Clone, Copy)]
struct Lease {
    id: i64,
    valid_until: Instant,
}

/// This host's membership in a cluster. Made by [`Cluster::join`], given to the host with
/// [`crate::HostBuilder::cluster`].
pub struct Cluster {
    etcd: etcd::Etcd,
    me: Member,
    ttl: Duration,
    checkpoint_every: Duration,
    lease: Mutex<Option<Lease>>,
    members: ArcSwap<Vec<Member>>,
    ownership: ownership::Ownership,
    /// Handing its objects over (`wdo cluster drain`): no claims, not among the members.
    draining: std::sync::atomic::AtomicBool,
    forwarder: forward::Forwarder,
    directory: OnceLock<Weak<Directory>>,
    /// This host's place in the cluster's journal of deploys and secrets (`changes.rs`).
    changes: changes::Journal,
}

impl Cluster {
    /// Joins the cluster whose etcd is at `settings.etcd`, as the host whose data folder is
    /// `data_dir` (which keeps this host's id and the cluster's secret).
    pub async fn join(settings: &ClusterSettings, data_dir: &Path) -> Result<Arc<Cluster>> {
        let lease_secs = settings.lease.as_secs();
        if !(2..=300).contains(&lease_secs) {
            return Err(Error::BadRequest(format!(
                "--cluster-lease {:?}: a lease lasts from 2 s to 5 min",
                settings.lease
            )));
        }
        let advertise = settings.advertise.trim_end_matches('/').to_string();
        if !advertise.starts_with("http://") {
            return Err(Error::BadRequest(format!(
                "--advertise {advertise}: give the URL the other hosts reach this one at, like http://10.0.0.5:8787"
            )));
        }
        crate::files::make_private_dir(data_dir).map_err(|e| Error::io(format!("create {}", data_dir.display()), e))?;
        let folder = data_dir.join("cluster");
        let id = crate::files::read_or_create_secret(&folder.join("host"), || {
            hex::encode(rand::random::<[u8; 8]>()).into_bytes()
        })
        .map_err(|e| Error::io(format!("read or create {}", folder.join("host").display()), e))?;
        let id = String::from_utf8_lossy(&id).trim().to_string();
        let unreachable = |e: String| Error::Unavailable {
            object: "the cluster".into(),
            reason: format!("{e} (etcd at {})", settings.etcd.join(",")),
        };
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(settings.lease / 2)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let etcd = etcd::Etcd::connect(&settings.etcd, options).await.map_err(unreachable)?;

        let secret_file = folder.join("secret");
        let local = std::fs::read_to_string(&secret_file).ok().map(|s| s.trim().to_string());
        let proposed = local.clone().unwrap_or_else(|| hex::encode(rand::random::<[u8; 32]>()));
        let secret = etcd::secret(&etcd, &proposed).await.map_err(unreachable)?;
        if local.as_ref().is_some_and(|local| *local != secret) {
            return Err(Error::BadRequest(format!(
                "the data folder {} belongs to another cluster (its cluster/secret differs from the one in etcd at {})",
                data_dir.display(),
                settings.etcd.join(",")
            )));
        }
        crate::files::write_atomically(&secret_file, secret.as_bytes(), 0o600)
            .map_err(|e| Error::io(format!("write {}", secret_file.display()), e))?;
        let secret: [u8; 32] = hex::decode(&secret)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| Error::Internal("the cluster's secret in etcd is not 32 bytes of hex".into()))?;

        let me = Member { id, advertise, draining: false };
        let cluster = Arc::new(Cluster {
            forwarder: forward::Forwarder::new(&secret),
            etcd,
            me,
            ttl: settings.lease,
            checkpoint_every: settings.checkpoint,
            lease: Mutex::new(None),
            members: ArcSwap::from_pointee(Vec::new()),
            ownership: ownership::Ownership::default(),
            draining: Default::default(),
            directory: OnceLock::new(),
            changes: changes::Journal::open(&folder)?,
        });
        cluster.take_lease().await.map_err(unreachable)?;
        cluster.refresh_members().await.map_err(unreachable)?;
        tracing::info!(host = %cluster.me.id, advertise = %cluster.me.advertise, lease = ?settings.lease, "joined the cluster");
        Ok(cluster)
    }

    /// This host's id in the cluster.
    pub fn host_id(&self) -> &str {
        &self.me.id
    }

    /// Whether this host applied deploys made through the cluster before it started: then it
    /// serves what it had deployed, not its manifest again (`changes.rs`).
    pub fn follows_changes(&self) -> bool {
        self.changes.follows()
    }

    /// The live hosts, as last read from etcd.
    pub fn members(&self) -> Vec<Member> {
        self.members.load().to_vec()
    }

    /// Starts the cluster's background work for `directory`: renewing the lease, reading the
    /// members, releasing idle objects.
    pub(crate) fn start(self: &Arc<Self>, directory: &Arc<Directory>) {
        let _ = self.directory.set(Arc::downgrade(directory));
        let weak = Arc::downgrade(self);
        tokio::spawn(keep_lease(weak.clone()));
        tokio::spawn(read_members(weak.clone()));
        tokio::spawn(ownership::release_idle(weak.clone()));
        tokio::spawn(ownership::alarm_scan(weak.clone()));
        tokio::spawn(anchor::checkpoints(weak));
    }

    /// The cluster as etcd sees it: every live host and how many objects each holds.
    pub async fn status(&self) -> Result<serde_json::Value> {
        let unreachable = |e: String| Error::Unavailable { object: "the cluster".into(), reason: e };
        let members = etcd::members(&self.etcd).await.map_err(unreachable)?;
        let owners = etcd::owners(&self.etcd).await.map_err(unreachable)?;
        let mut held: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for (_, host) in &owners {
            *held.entry(host.as_str()).or_default() += 1;
        }
        let hosts: Vec<serde_json::Value> = members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id,
                    "advertise": m.advertise,
                    "draining": m.draining,
                    "objects": held.get(m.id.as_str()).copied().unwrap_or(0),
                })
            })
            .collect();
        let newest_change = etcd::newest_change(&self.etcd).await.map_err(unreachable)?;
        Ok(serde_json::json!({
            "host": self.me.id,
            "lease_ok": self.lease_id().is_some(),
            "changes": { "newest": newest_change, "applied_here": self.changes.applied_now() },
            "hosts": hosts,
            "objects": owners.len(),
        }))
    }

    /// The host holding the object (`class`, `id`) now, if any host does.
    pub async fn owner_of(&self, class: &str, id: &crate::ids::ObjectId) -> Result<Option<Member>> {
        let unreachable = |e: String| Error::Unavailable { object: "the cluster".into(), reason: e };
        let host = etcd::owner(&self.etcd, class, &id.to_hex()).await.map_err(unreachable)?;
        Ok(host.map(|host| {
            self.member(&host).unwrap_or(Member { id: host, advertise: "(not a live host)".into(), draining: false })
        }))
    }

    /// Drains the host `id` of the cluster (this one, or another, asked over the cluster's
    /// route): see [`Cluster::drain`]. Returns what it answered.
    pub(crate) async fn drain_host(self: &Arc<Self>, id: &str) -> Result<serde_json::Value> {
        if id == self.me.id {
            let objects = self.drain().await?;
            return Ok(serde_json::json!({ "host": id, "objects": objects }));
        }
        let member = self.member(id).ok_or_else(|| {
            let known: Vec<String> = self.members().into_iter().map(|m| m.id).collect();
            Error::BadRequest(format!("no live host `{id}` in the cluster; the hosts are {}", known.join(", ")))
        })?;
        let (status, body) = self
            .forwarder
            .post(&member, "/_wdo/cluster/drain", Vec::new())
            .await
            .map_err(|e| Error::Unavailable { object: format!("host {id}"), reason: e })?;
        match status {
            200 => serde_json::from_slice(&body).map_err(|e| Error::Internal(format!("host {id} answered: {e}"))),
            status => Err(Error::Forwarded { status, message: String::from_utf8_lossy(&body).trim().to_string() }),
        }
    }

    /// Restores an object held by (or placed on) `owner` to its state at `at_ms` from the
    /// backup store, asking that host (`POST /_wdo/cluster/restore`); an owner that names
    /// another gets one retry there. Returns the database's size.
    pub(crate) async fn restore_elsewhere(
        &self,
        mut owner: Member,
        class: &str,
        name: &str,
        at_ms: Option<u64>,
    ) -> Result<usize> {
        let body = serde_json::to_vec(&serde_json::json!({ "class": class, "name": name, "at_ms": at_ms }))
            .expect("serializable");
        let mut retried = false;
        loop {
            let (status, answer) =
                self.forwarder.post(&owner, "/_wdo/cluster/restore", body.clone()).await.map_err(|e| {
                    Error::Unavailable {
                        object: format!("{class}/{name}"),
                        reason: format!("its host {} does not answer: {e}", owner.id),
                    }
                })?;
            let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_else(
                |_| serde_json::json!({ "message": String::from_utf8_lossy(&answer).trim().to_string() }),
            );
            if status == 421
                && !retried
                && let Some(next) = answer["host"].as_str().and_then(|id| self.member(id))
            {
                (owner, retried) = (next, true);
                continue;
            }
            return match (status, answer["bytes"].as_u64()) {
                (200, Some(bytes)) => Ok(bytes as usize),
                _ => Err(Error::Forwarded {
                    status,
                    message: answer["message"].as_str().unwrap_or_default().to_string(),
                }),
            };
        }
    }

    /// The live host `id`, if it is one.
    pub(crate) fn live_member(&self, id: &str) -> Option<Member> {
        self.member(id)
    }

    /// The value of the header that authenticates one host to another.
    pub(crate) fn forward_auth(&self) -> &str {
        &self.forwarder.auth
    }

    /// Whether `headers` carry the cluster's authentication of one host to another (compared
    /// in constant time).
    pub(crate) fn authenticates(&self, headers: &hyper::HeaderMap) -> bool {
        use sha2::{Digest, Sha256};
        let given = headers.get(AUTH_HEADER).map_or(&b""[..], |v| v.as_bytes());
        Sha256::digest(given) == Sha256::digest(self.forwarder.auth.as_bytes())
    }

    fn directory(&self) -> Option<Arc<Directory>> {
        self.directory.get()?.upgrade()
    }

    /// Grants a new lease and lists this host under it.
    async fn take_lease(&self) -> std::result::Result<(), String> {
        let asked = Instant::now();
        let id = etcd::grant(&self.etcd, self.ttl.as_secs() as i64).await?;
        etcd::register(&self.etcd, &self.listed(), id).await?;
        *self.lease.lock().unwrap() = Some(Lease { id, valid_until: asked + self.safe(self.ttl) });
        Ok(())
    }

    /// How long of a lease of `ttl` this host counts on: less a margin for the time between
    /// checking and answering, and for clocks that run at slightly different rates.
    fn safe(&self, ttl: Duration) -> Duration {
        ttl.saturating_sub((ttl / 5).max(Duration::from_millis(500)))
    }

    fn lease_id(&self) -> Option<i64> {
        let lease = (*self.lease.lock().unwrap())?;
        (Instant::now() < lease.valid_until).then_some(lease.id)
    }

    async fn refresh_members(&self) -> std::result::Result<(), String> {
        let members = etcd::members(&self.etcd).await?;
        if **self.members.load() != members {
            tracing::info!(hosts = ?members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), "cluster members");
            self.members.store(Arc::new(members));
        }
        Ok(())
    }

    /// This host as etcd lists it.
    fn listed(&self) -> Member {
        Member { draining: self.draining.load(std::sync::atomic::Ordering::Relaxed), ..self.me.clone() }
    }

    fn member(&self, id: &str) -> Option<Member> {
        self.members.load().iter().find(|m| m.id == id).cloned()
    }

    /// [`Self::member`], reading the members again first if `id` is not among them: a host
    /// that holds an object has joined, but perhaps so lately that the watch has not told this
    /// one yet.
    async fn member_now(&self, id: &str) -> Option<Member> {
        if let Some(member) = self.member(id) {
            return Some(member);
        }
        if let Err(e) = self.refresh_members().await {
            tracing::debug!("cluster: cannot read the members: {e}");
        }
        self.member(id)
    }

    /// The lease is gone (or may be): drops every object this host held.
    fn lost_lease(&self, why: &str) {
        let had = self.lease.lock().unwrap().take();
        if had.is_none() {
            return;
        }
        tracing::warn!("cluster: {why}; dropping every object this host held and joining again");
        if let Some(directory) = self.directory() {
            self.ownership.drop_all(&directory);
        }
    }

    /// Leaves the cluster at shutdown: the lease is revoked, so the objects this host held can
    /// be claimed elsewhere at once (their commits have shipped: the caller flushed the backup).
    pub async fn leave(&self) {
        let lease = self.lease.lock().unwrap().take();
        if let Some(lease) = lease
            && let Err(e) =
                self.etcd.run("revoke this host's lease", |mut c| async move { c.lease_revoke(lease.id).await }).await
        {
            tracing::warn!("cluster: could not revoke this host's lease (its objects move when it expires): {e}");
        }
    }
}

impl crate::backup::HostLease for Cluster {
    /// A batch that takes longer than a lease to land is not acknowledged, as if the host had
    /// lost its lease.
    fn upload_bound(&self) -> Duration {
        self.ttl
    }

    /// The live host with the lowest id writes the snapshots, from batches named three leases
    /// ago or earlier: every batch named before that landed (or will never be acknowledged),
    /// with hosts' clocks within a second of each other.
    fn snapshot_settle(&self) -> Option<Duration> {
        let members = self.members.load();
        let writer = members.iter().find(|m| !m.draining)?;
        (writer.id == self.me.id && self.lease_id().is_some()).then_some(self.ttl * 3)
    }

    fn check_held_under(&self, held_under: Option<i64>) -> std::result::Result<(), String> {
        Cluster::check_held_under(self, held_under)
    }

    fn check(&self) -> std::result::Result<(), String> {
        match self.lease_id() {
            Some(_) => Ok(()),
            None => Err(format!(
                "this host ({}) could not renew its cluster lease in time: its objects may be held by another \
                 host now, so what it committed is not acknowledged (it is kept only if no other host took the \
                 object over meanwhile)",
                self.me.id
            )),
        }
    }
}

/// Renews the lease every third of its time; on failure, tries again until the lease may have
/// expired, then drops the host's objects and takes a new lease.
async fn keep_lease(cluster: Weak<Cluster>) {
    let mut keeper: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    loop {
        let Some(cluster) = cluster.upgrade() else { return };
        let every = cluster.ttl / 3;
        let lease = *cluster.lease.lock().unwrap();
        match lease {
            None => {
                if let Err(e) = cluster.take_lease().await {
                    tracing::warn!("cluster: cannot take a new lease: {e}");
                    drop(cluster);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                keeper = None;
                tracing::info!(host = %cluster.me.id, "cluster: serving again under a new lease");
            }
            Some(lease) if Instant::now() >= lease.valid_until => {
                cluster.lost_lease("this host's lease could not be renewed in time");
                keeper = None;
                continue;
            }
            Some(lease) => {
                // A member that does not answer gets a sixth of the lease, so that the next
                // one still renews it in time.
                let patience = every / 2;
                if keeper.as_ref().is_none_or(|(k, _)| k.id() != lease.id) {
                    let client = cluster.etcd.client();
                    keeper = tokio::time::timeout(patience, client.clone().lease_keep_alive(lease.id))
                        .await
                        .ok()
                        .and_then(Result::ok);
                    if keeper.is_none() {
                        cluster.etcd.next_member();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                let sent = Instant::now();
                let renewed = match keeper.as_mut() {
                    Some((keeper, stream)) => match tokio::time::timeout(patience, keeper.keep_alive()).await {
                        Ok(Ok(())) => tokio::time::timeout(patience, stream.message()).await.ok(),
                        Ok(Err(e)) => Some(Err(e)),
                        Err(_) => None,
                    },
                    None => None,
                };
                match renewed {
                    Some(Ok(Some(response))) if response.ttl() > 0 => {
                        let ttl = Duration::from_secs(response.ttl() as u64);
                        let mut current = cluster.lease.lock().unwrap();
                        if let Some(current) = current.as_mut().filter(|l| l.id == lease.id) {
                            current.valid_until = current.valid_until.max(sent + cluster.safe(ttl));
                        }
                    }
                    Some(Ok(Some(_))) => {
                        cluster.lost_lease("etcd says this host's lease expired");
                        keeper = None;
                        continue;
                    }
                    _ => {
                        // No answer from this member: renew through the next one.
                        keeper = None;
                        cluster.etcd.next_member();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
        }
        drop(cluster);
        tokio::time::sleep(every).await;
    }
}

/// Reads the live hosts from etcd as soon as they change (a watch on their keys), and every
/// half second besides: a watch on an etcd member that died just goes quiet. Placement is only
/// as good as this list: a host that does not know a new one yet claims what the new one should
/// hold (still one owner; the object simply stays where it was claimed).
async fn read_members(cluster: Weak<Cluster>) {
    const EVERY: Duration = Duration::from_millis(500);
    let mut watch: Option<etcd_client::WatchStream> = None;
    loop {
        {
            let Some(cluster) = cluster.upgrade() else { return };
            if watch.is_none() {
                // Watch first, then read: a host that joins in between is in what is read.
                watch = etcd::watch_members(&cluster.etcd)
                    .await
                    .inspect_err(|e| tracing::debug!("cluster: cannot watch the members: {e}"))
                    .ok();
            }
            if let Err(e) = cluster.refresh_members().await {
                tracing::debug!("cluster: cannot read the members: {e}");
            }
        }
        match watch.as_mut() {
            Some(stream) => match tokio::time::timeout(EVERY, stream.message()).await {
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Ok(None) | Err(_)) => {
                    // Ended (its etcd member went away, say): watch again after a pause, so that
                    // a watch etcd ends at once cannot make this loop spin.
                    watch = None;
                    tokio::time::sleep(EVERY).await;
                }
            },
            None => tokio::time::sleep(EVERY).await,
        }
    }
}
