//! The host: classes, the object directory and the engine behind one cheap-to-clone handle.
//! How one starts (the builder, the data folder's lock and token, the first deploy) is `start.rs`.

use crate::alarms::{self, Delivery};
use crate::config::Config;
use crate::deploy::{Change, DeployState};
use crate::deploy::{Deployer, Plan, Target};
use crate::error::{Error, Result};
use crate::ids::ObjectId;
use crate::message::{Request, Response};
use crate::object::{Directory, Envelope, Event, ObjectKey, Reply};
use crate::registry::Registry;
use crate::sockets::Hub;
use crate::worker::Worker;
use arc_swap::ArcSwapOption;
use std::sync::Arc;
use tokio::sync::oneshot;

mod start;
pub use start::{HostBuilder, Startup, raise_open_file_limit};

/// What became of a WebSocket upgrade request.
pub(crate) enum Upgrade {
    /// The object answered with a plain response.
    Refused(Response),
    /// The object accepted: the connection belongs to this socket.
    Accepted(crate::sockets::AcceptedSocket),
}

/// A running wdo host. Clone it freely: clones share everything.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

/// A [`Host`] that does not keep it running (a background task's).
#[derive(Clone)]
pub(crate) struct WeakHost(std::sync::Weak<Inner>);

impl WeakHost {
    pub(crate) fn upgrade(&self) -> Option<Host> {
        self.0.upgrade().map(|inner| Host { inner })
    }
}

struct Inner {
    /// The worker, if one is deployed; a deploy swaps it.
    worker: ArcSwapOption<Worker>,
    deployer: Deployer,
    /// The bearer token of the admin API.
    admin_token: String,
    config: Config,
    registry: Arc<Registry>,
    directory: Arc<Directory>,
    /// The bound on client connections, shared by every listener.
    connections: Arc<crate::gateway::Connections>,
    /// The budget of buffered input (request bodies, WebSocket messages).
    budget: Arc<crate::budget::InputBudget>,
    /// Held for the host's life: one host per data folder.
    _lock: std::fs::File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.directory.shut_down();
        // The scheduler holds only a weak reference: wake it so it sees the host is gone.
        self.directory.alarms.wake.notify_one();
    }
}

impl Inner {
    /// Hands a due alarm to its object (for the alarm scheduler).
    fn deliver_alarm(&self, due: alarms::Due) -> Delivery {
        let Ok(class) = self.registry.get(&due.class) else {
            return Delivery::NotServed;
        };
        let Some(id) = ObjectId::from_hex(&due.id) else {
            tracing::error!(class = due.class, "dropping an alarm index row with a malformed id `{}`", due.id);
            let _ = self.directory.alarms.remove(&due.class, &due.id);
            return Delivery::Sent;
        };
        let key = ObjectKey { class: class.name.clone(), id };
        // In a cluster, the host that runs the event indexes the alarm (a takeover restores and
        // indexes it; an alarm event reconciles the index): a row here for an object held
        // elsewhere would fire again and again.
        if let Some(cluster) = self.directory.cluster.get()
            && !cluster.holds(&key)
        {
            let _ = self.directory.alarms.remove(&due.class, &due.id);
        }
        // The reply is not awaited: the object's actor brings the index up to date itself.
        let (reply, _) = oneshot::channel();
        let envelope = Envelope {
            event: Event::Alarm { retry: due.retry },
            name: due.name,
            reply,
            chain: Vec::new(),
            deadline: None,
            held: Default::default(),
            request_id: None,
        };
        match self.directory.send(&class, key, envelope) {
            Ok(()) => Delivery::Sent,
            Err(_) => Delivery::Busy,
        }
    }
}

/// How long a request for a class still compiling at start-up may wait for it (at least; the
/// event timeout if longer): a large JavaScript or Python component takes 10-30 s on a small
/// machine.
const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Live instances against their bound ([`Host::instances`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instances {
    /// Places for instances (`--max-instances`): an instance takes one per linear memory.
    pub max: usize,
    /// The places now: fewer than `max` while the resident-memory budget holds them down.
    pub limit: usize,
    /// Instances holding places: objects' and the worker's requests running.
    pub live: usize,
    /// Places their instances take.
    pub places: usize,
}

impl Host {
    /// Sends an HTTP request to the object `name` of `class`, without going through HTTP.
    pub async fn fetch(&self, class: &str, name: &str, request: Request) -> Result<Response> {
        match self.send(class, name, Event::Fetch(request)).await? {
            Reply::Response(response) => Ok(response),
            _ => Err(Error::Internal("a fetch was answered without a response".into())),
        }
    }

    /// Sends a request that asks for a WebSocket upgrade; the object may accept it. `proxied`:
    /// another host of the cluster sent it here (it runs here or is refused, never sent on).
    pub(crate) async fn upgrade(&self, class: &str, name: &str, request: Request, proxied: bool) -> Result<Upgrade> {
        match self.send_as(class, name, Event::Upgrade(request), proxied).await? {
            Reply::Response(response) => Ok(Upgrade::Refused(response)),
            Reply::Upgrade(accepted) => Ok(Upgrade::Accepted(accepted)),
            _ => Err(Error::Internal("an upgrade was answered without a response".into())),
        }
    }

    /// A WebSocket upgrade for the object `id` (hex) of `class` that a worker on another host
    /// of the cluster handed here: served here, or refused with the host that holds it.
    pub(crate) async fn handed_upgrade(&self, class: &str, id: &str, request: Request) -> Result<Upgrade> {
        let class = self.inner.registry.get(class)?;
        let id = class.secret.parse_id(id).map_err(|e| Error::BadRequest(format!("class `{}`: {e}", class.name)))?;
        let key = ObjectKey { class: class.name.clone(), id };
        let (reply, answer) = oneshot::channel();
        let event = Event::Upgrade(request);
        let envelope = Envelope {
            event,
            name: None,
            reply,
            chain: Vec::new(),
            deadline: None,
            held: Default::default(),
            request_id: crate::observe::current_request_id(),
        };
        self.inner.directory.send_forwarded(&class, key.clone(), envelope)?;
        let reply = answer.await.unwrap_or_else(|_| {
            Err(Error::Unavailable {
                object: class.name.to_string(),
                reason: "the object stopped before answering".into(),
            })
        })?;
        match reply {
            Reply::Response(response) => Ok(Upgrade::Refused(response)),
            Reply::Upgrade(accepted) => Ok(Upgrade::Accepted(accepted)),
            _ => Err(Error::Internal("an upgrade was answered without a response".into())),
        }
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner.directory.limits.sockets
    }

    /// The directory's key of the object `name` of `class`.
    pub(crate) fn object_key(&self, class: &str, name: &str) -> Result<ObjectKey> {
        validate_object_name(name)?;
        self.key(class, name)
    }

    pub(crate) fn key(&self, class: &str, name: &str) -> Result<ObjectKey> {
        let class = self.inner.registry.get(class)?;
        Ok(ObjectKey { class: class.name.clone(), id: class.id_from_name(name) })
    }

    /// Calls the object's `call` export (RPC) with `args`; the guest's own error comes back as
    /// `Ok(Err(message))`.
    pub async fn call(&self, class: &str, name: &str, method: &str, args: Vec<u8>) -> Result<Result<Vec<u8>, String>> {
        let limit = self.inner.config.max_call_payload;
        if args.len() > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        match self.send(class, name, Event::Call { method: method.to_string(), args }).await? {
            Reply::Called(result) => Ok(result),
            _ => Err(Error::Internal("a call was answered with something else".into())),
        }
    }

    /// Waits, while the host starts, until `class` is served (or the worker, if one is coming:
    /// it takes every request); at once afterwards. Bounded by [`STARTUP_WAIT`] (or the event timeout, if longer).
    pub(crate) async fn serving(&self, class: &str) -> Result<()> {
        let registry = &self.inner.registry;
        let wait = STARTUP_WAIT.max(self.inner.config.event_timeout);
        registry.serving(crate::deploy::WORKER, wait).await?;
        if self.inner.worker.load().is_some() { Ok(()) } else { registry.serving(class, wait).await }
    }

    /// Whether a worker receives every HTTP request.
    pub fn has_worker(&self) -> bool {
        self.inner.worker.load().is_some()
    }

    /// The worker's instances waiting for their next request (`reuse_instances`).
    pub fn idle_worker_instances(&self) -> usize {
        self.inner.worker.load().as_ref().map_or(0, |worker| worker.idle_instances())
    }

    /// Sends a request to the worker (the whole path, as the client sent it).
    pub async fn worker_fetch(&self, request: Request) -> Result<Response> {
        self.worker_exchange(request, false).await.map(|(response, _)| response)
    }

    /// Sends a request to the worker; with `upgrade`, the worker may hand the client's
    /// WebSocket upgrade on to an object, whose accepted socket comes back.
    pub(crate) async fn worker_exchange(
        &self,
        request: Request,
        upgrade: bool,
    ) -> Result<(Response, crate::object::WorkerUpgrade)> {
        // Held for the request: a deploy that swaps the worker lets this request finish.
        let worker = self.inner.worker.load_full();
        match worker {
            Some(worker) => worker.fetch(&self.inner.directory, request, upgrade).await,
            None => Err(Error::Internal("no worker is configured".into())),
        }
    }

    /// Drops the object's instance from memory now, as idling would; with `close_storage` its
    /// database is closed too. Its data, and its place in the order of events, are kept: the
    /// next event brings it back.
    pub async fn hibernate(&self, class: &str, name: &str, close_storage: bool) -> Result<()> {
        self.send(class, name, Event::Hibernate { close_storage }).await.map(drop)
    }

    /// Restores one object from the backup store as it was at `at_ms` (ms since the Unix epoch;
    /// `None`: its latest commit shipped): its next event sees that state. The restore is itself
    /// a change shipped to the store, so it can be undone by restoring to a time before it.
    /// Returns the size of the database put in place.
    pub async fn restore_object(&self, class: &str, name: &str, at_ms: Option<u64>) -> Result<usize> {
        // In a cluster the object's host restores it (the one that holds it, or would claim it).
        if let Some(cluster) = self.cluster()
            && let Some(owner) = cluster.remote_owner(&self.object_key(class, name)?)
        {
            return cluster.restore_elsewhere(owner, class, name, at_ms).await;
        }
        self.restore_object_here(class, name, at_ms, false).await
    }

    /// [`Host::restore_object`] on this host; `forwarded`: another host of the cluster asked,
    /// and an object held elsewhere is refused with its owner (never sent on again).
    pub(crate) async fn restore_object_here(
        &self,
        class: &str,
        name: &str,
        at_ms: Option<u64>,
        forwarded: bool,
    ) -> Result<usize> {
        let Some(backup) = self.inner.directory.backup.clone() else {
            return Err(Error::BadRequest(
                "restoring an object needs a backup store: start the host with --backup URL".into(),
            ));
        };
        validate_object_name(name)?;
        let served = self.inner.registry.get(class)?;
        let object = crate::backup::format::ObjectRef::new(&served.name, &served.id_from_name(name));
        let database = backup.object_at(&object, at_ms).await.map_err(Error::Busy)?.ok_or_else(|| {
            let when = at_ms.map_or("".to_string(), |ms| {
                let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                format!(" at or before {}", humantime::format_rfc3339_millis(time))
            });
            Error::BadRequest(format!("{class}/{name} has no commit in the backup store{when}"))
        })?;
        let size = database.len();
        self.send_as(class, name, Event::Restore { database }, forwarded).await?;
        Ok(size)
    }

    pub(crate) fn downgrade(&self) -> WeakHost {
        WeakHost(Arc::downgrade(&self.inner))
    }

    /// The cluster this host is part of, if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.inner.directory.cluster.get()
    }

    /// The id of the object `name` of `class`.
    pub fn object_id(&self, class: &str, name: &str) -> Result<ObjectId> {
        validate_object_name(name)?;
        Ok(self.inner.registry.get(class)?.id_from_name(name))
    }

    /// The served class named `class`, as the directory names it.
    pub(crate) fn class_name(&self, class: &str) -> Option<Arc<str>> {
        self.inner.registry.get(class).ok().map(|class| class.name.clone())
    }

    /// Runs an event another host of the cluster forwarded here (`cluster/forward.rs`).
    pub(crate) async fn forwarded(
        &self,
        class: &str,
        id: ObjectId,
        incoming: crate::cluster::Incoming,
    ) -> Result<Reply> {
        let class = self.inner.registry.get(class)?;
        let key = ObjectKey { class: class.name.clone(), id };
        let crate::cluster::Incoming { event, name, chain, deadline, .. } = incoming;
        if let Some(name) = &name
            && class.id_from_name(name) != id
        {
            return Err(Error::BadRequest(format!("a forwarded event names `{name}`, which is not the object's name")));
        }
        let label = format!("{}/{}", class.name, name.as_deref().unwrap_or("-"));
        let (reply, answer) = oneshot::channel();
        let envelope = Envelope {
            event,
            name,
            reply,
            chain,
            deadline,
            held: Default::default(),
            request_id: crate::observe::current_request_id(),
        };
        self.inner.directory.send_forwarded(&class, key, envelope)?;
        answer.await.unwrap_or_else(|_| {
            Err(Error::Unavailable { object: label, reason: "the object stopped before answering".into() })
        })
    }

    /// Sends `event` to the object `name` of `class` and waits for its reply.
    pub(crate) async fn send(&self, class: &str, name: &str, event: Event) -> Result<Reply> {
        self.send_as(class, name, event, false).await
    }

    async fn send_as(&self, class: &str, name: &str, event: Event, forwarded: bool) -> Result<Reply> {
        validate_object_name(name)?;
        let class = self.inner.registry.get(class)?;
        let key = ObjectKey { class: class.name.clone(), id: class.id_from_name(name) };
        let (reply, answer) = oneshot::channel();
        let named = Some(name.to_string());
        let envelope = Envelope {
            event,
            name: named,
            reply,
            chain: Vec::new(),
            deadline: None,
            held: Default::default(),
            request_id: crate::observe::current_request_id(),
        };
        match forwarded {
            true => self.inner.directory.send_forwarded(&class, key, envelope)?,
            false => self.inner.directory.send(&class, key, envelope)?,
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::Unavailable {
                object: format!("{}/{name}", class.name),
                reason: "the object stopped before answering".into(),
            })
        })
    }

    /// Names of the classes served, sorted.
    pub fn class_names(&self) -> Vec<String> {
        self.inner.registry.names()
    }

    /// Each class served (and the worker, if any), with the sha256 of its component.
    pub fn class_versions(&self) -> Vec<(String, String)> {
        let mut versions = self.inner.registry.versions();
        if let Some(worker) = &*self.inner.worker.load() {
            versions.push(("worker".into(), worker.hash.clone()));
        }
        versions
    }

    /// Deploys `plan` (its components uploaded first with [`Host::upload_component`]):
    /// validates and compiles every changed class, then switches them; see [`Plan`].
    /// Blocks while it compiles and while renamed or deleted classes stop: call it from
    /// `spawn_blocking` in async code.
    pub fn deploy(&self, plan: &Plan) -> Result<Vec<Change>> {
        let changes = self.inner.deployer.apply(&self.inner.directory, &self.inner.worker, plan)?;
        let metrics = &self.observe().metrics;
        metrics.count(&metrics.deploys);
        Ok(changes)
    }

    /// Switches a class (or the worker) back to `version`, or to the version before the one that
    /// runs. Blocking, like [`Host::deploy`].
    pub fn rollback(&self, target: &Target, version: Option<u32>) -> Result<Change> {
        let change = self.inner.deployer.rollback(&self.inner.directory, &self.inner.worker, target, version)?;
        let metrics = &self.observe().metrics;
        metrics.count(&metrics.deploys);
        Ok(change)
    }

    /// Keeps a component for later deploys; returns its sha256. Only checks that it is a
    /// WebAssembly component: the world and imports are checked when it is compiled or deployed.
    pub fn upload_component(&self, bytes: &[u8]) -> Result<String> {
        crate::engine::check_header(bytes).map_err(|message| Error::BadRequest(format!("the upload {message}")))?;
        self.inner.deployer.put_component(bytes)
    }

    /// The size of an uploaded component, if this host has it.
    pub fn component_size(&self, hash: &str) -> Option<u64> {
        self.inner.deployer.component_size(hash)
    }

    /// Compiles an uploaded component as `name` (a class, or the worker with [`WORKER`](crate::WORKER)), checking
    /// its world and imports, so a deploy that follows finds it compiled. Returns whether it
    /// compiled anything (false: the compiled code was cached). Blocking.
    pub fn compile_component(&self, name: &str, hash: &str) -> Result<bool> {
        self.inner.deployer.compile(name, hash)
    }

    /// The classes and worker deployed, with every version.
    pub fn deployed(&self) -> DeployState {
        self.inner.deployer.state()
    }

    /// Whether `token` is the admin API's bearer token (compared in constant time).
    pub fn is_admin_token(&self, token: &str) -> bool {
        use sha2::{Digest, Sha256};
        // Comparing digests makes the time independent of where the texts differ.
        Sha256::digest(token.as_bytes()) == Sha256::digest(self.inner.admin_token.as_bytes())
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// How many objects have an actor (live or holding their database open).
    pub fn active_objects(&self) -> usize {
        self.inner.directory.len()
    }

    /// Open WebSockets held by the hub.
    pub fn open_sockets(&self) -> usize {
        self.hub().len()
    }

    /// Objects with a pending alarm (rows of the alarm index).
    pub fn pending_alarms(&self) -> u64 {
        self.inner.directory.alarms.len().unwrap_or(0)
    }

    /// The object directory (for the host's own routes: metrics, the inspector).
    pub(crate) fn directory(&self) -> &Arc<Directory> {
        &self.inner.directory
    }

    /// Metrics and the tail.
    pub(crate) fn observe(&self) -> &Arc<crate::observe::Observe> {
        &self.inner.directory.limits.observe
    }

    /// The budget of buffered input.
    pub(crate) fn budget(&self) -> &crate::budget::InputBudget {
        &self.inner.budget
    }

    /// The bound on client connections, and how many are open.
    pub(crate) fn connections(&self) -> &Arc<crate::gateway::Connections> {
        &self.inner.connections
    }

    /// Ships what the backup has queued now (at shutdown); nothing without a backup store.
    pub async fn flush_backup(&self) {
        if let Some(backup) = &self.inner.directory.backup {
            backup.flush().await;
        }
    }

    /// In sync backup mode, ships the data folder's changed files (a deploy, a secret) before
    /// the change is acknowledged: an error (503) when the store does not take them; the change
    /// stands here and ships when the store answers.
    pub(crate) async fn replicate_change(&self, what: &str) -> Result<(), Error> {
        let Some(backup) = &self.inner.directory.backup else { return Ok(()) };
        if backup.mode() != crate::config::BackupMode::Sync {
            return Ok(());
        }
        backup.flush().await;
        match backup.status().failing {
            None => Ok(()),
            Some(e) => Err(Error::Busy(format!(
                "{what} is done on this host, but the backup store {} does not answer ({e}): it ships when the \
                 store answers; with --backup-mode sync it is not acknowledged",
                backup.url()
            ))),
        }
    }

    /// A component's bytes from the backup store (a cluster host that lacks one a deploy names).
    pub(crate) async fn component_from_backup(&self, hash: &str) -> Result<Vec<u8>> {
        let backup = self.inner.directory.backup.as_ref().ok_or_else(|| {
            Error::BadRequest(format!(
                "component {hash} is not on this host, which has no backup store to take it from"
            ))
        })?;
        backup.component(hash).await.map_err(Error::Busy)
    }

    /// Before a deploy, rollback or secret's change: in a cluster, waits for its turn and
    /// catches up with the changes made through other hosts (`cluster/changes.rs`).
    pub(crate) async fn begin_change(&self) -> Result<Option<crate::cluster::ChangeTurn>, Error> {
        crate::cluster::begin_change(self).await
    }

    /// After a change made here: in a cluster, records it and makes it on every other host;
    /// an error names the hosts that did not make it.
    pub(crate) async fn change_everywhere(
        &self,
        turn: Option<crate::cluster::ChangeTurn>,
        change: crate::cluster::Change,
    ) -> Result<(), Error> {
        crate::cluster::finish_change(turn, change).await
    }

    /// How the backup store answers, when there is one.
    pub(crate) fn backup_status(&self) -> Option<(String, crate::backup::Status)> {
        let backup = self.inner.directory.backup.as_ref()?;
        Some((backup.url().to_string(), backup.status()))
    }

    /// The bound on objects with an open database.
    pub fn max_open_objects(&self) -> usize {
        self.inner.directory.max_open()
    }

    /// The bound on live instances and what they hold now.
    pub fn instances(&self) -> Instances {
        let directory = &self.inner.directory;
        Instances {
            max: directory.max_instances(),
            limit: directory.instance_limit(),
            live: directory.live_instances(),
            places: directory.instance_places(),
        }
    }

    /// Serves HTTP on `listener` until the returned future is dropped: objects, the host's
    /// routes and the admin API.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> Result<()> {
        crate::gateway::serve(self.clone(), listener, crate::gateway::Routes::All).await
    }

    /// Serves only some of the routes on `listener`: the admin API on a listener of its own
    /// (say, on loopback) and everything else on the public one.
    pub async fn serve_routes(&self, listener: tokio::net::TcpListener, routes: crate::gateway::Routes) -> Result<()> {
        crate::gateway::serve(self.clone(), listener, routes).await
    }

    /// Sets (`Some`) or deletes (`None`) a secret of a deployed class, or of the worker for
    /// [`WORKER`](crate::WORKER); the next event reads the change. Returns whether it existed.
    pub fn set_secret(&self, owner: &Target, name: &str, value: Option<&str>) -> Result<bool> {
        let owner = self.secrets_owner(owner)?;
        self.inner.directory.limits.vault.set(&owner, name, value)
    }

    /// The names (never the values) of a deployed class's or the worker's secrets.
    pub fn secret_names(&self, owner: &Target) -> Result<Vec<String>> {
        let owner = self.secrets_owner(owner)?;
        self.inner.directory.limits.vault.names(&owner)
    }

    pub(crate) fn add_listener(&self, address: std::net::SocketAddr) {
        self.inner.directory.limits.network.add_listener(address);
    }

    fn secrets_owner(&self, owner: &Target) -> Result<String> {
        Ok(match owner {
            Target::Class(class) => self.inner.registry.get(class)?.name.to_string(),
            Target::Worker => crate::env::WORKER_SECRETS.to_string(),
        })
    }
}

/// Object names are any non-empty UTF-8 text up to 2 KiB.
fn validate_object_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidName("missing object name: address objects as /<class>/<name>/<path>".into()));
    }
    if name.len() > 2048 {
        return Err(Error::InvalidName(format!("object name is {} bytes; the limit is 2048", name.len())));
    }
    Ok(())
}
