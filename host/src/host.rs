//! The host: classes, the object directory and the engine behind one cheap-to-clone handle.

use crate::alarms::{self, AlarmIndex, Delivery};
use crate::bindings::DurableObject;
use crate::config::Config;
use crate::deploy::{Change, DeployState};
use crate::deploy::{ClassPlan, Deployer, Plan, Target};
use crate::engine::{self, ComponentCache};
use crate::error::{Error, Result};
use crate::ids::ObjectId;
use crate::manifest::{Manifest, Settings};
use crate::message::{Request, Response};
use crate::object::{Directory, Envelope, Event, HostState, InstanceLimits, ObjectKey, Reply};
use crate::registry::Registry;
use crate::sockets::{Hub, HubLimits};
use crate::worker::Worker;
use arc_swap::ArcSwapOption;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;
use wasmtime::component::{HasSelf, Linker};

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

enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Source {
    fn read(&self, class: &str) -> Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            Source::Bytes(bytes) => Ok(std::borrow::Cow::Borrowed(bytes)),
            Source::File(path) => std::fs::read(path).map(std::borrow::Cow::Owned).map_err(|e| Error::Component {
                class: class.to_string(),
                message: format!("cannot read component file {}: {e}", path.display()),
            }),
        }
    }
}

/// Builds a [`Host`]: configuration and the classes it serves.
pub struct HostBuilder {
    config: Config,
    classes: Vec<ClassSource>,
    worker: Option<(Source, Settings)>,
    /// Classes to delete if deployed (a manifest's `deleted`).
    delete: Vec<String>,
    /// A `renamed_from` that is not deployed creates the class instead.
    renames_if_deployed: bool,
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

struct ClassSource {
    name: String,
    source: Source,
    renamed_from: Option<String>,
    settings: Settings,
}

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
    pub fn builder() -> HostBuilder {
        HostBuilder {
            config: Config::default(),
            classes: Vec::new(),
            worker: None,
            delete: Vec::new(),
            renames_if_deployed: false,
            cluster: None,
        }
    }

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

impl HostBuilder {
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Serves a class from component bytes.
    pub fn class(mut self, name: &str, component: impl Into<Vec<u8>>) -> Self {
        let source = Source::Bytes(component.into());
        self.classes.push(ClassSource {
            name: name.to_string(),
            source,
            renamed_from: None,
            settings: Settings::default(),
        });
        self
    }

    /// Serves a class from a component file.
    pub fn class_file(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        let source = Source::File(path.into());
        self.classes.push(ClassSource {
            name: name.to_string(),
            source,
            renamed_from: None,
            settings: Settings::default(),
        });
        self
    }

    /// Puts a worker component (world `wdo:object/worker`) in front: it receives every HTTP request.
    pub fn worker_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.worker = Some((Source::File(path.into()), Settings::default()));
        self
    }

    /// Makes the host one of a cluster's ([`Cluster::join`](crate::Cluster::join) first): each
    /// object then runs on one host of the cluster at a time, and any host forwards to it.
    /// Needs a backup store in sync mode.
    pub fn cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Serves every class of a manifest, and its worker if it names one.
    pub fn manifest(mut self, manifest: &Manifest) -> Self {
        for class in &manifest.classes {
            self = self.class_file(&class.name, &class.component);
            let added = self.classes.last_mut().expect("just added");
            added.renamed_from = class.renamed_from.clone();
            added.settings = class.settings.clone();
        }
        if let Some(worker) = &manifest.worker {
            self.worker = Some((Source::File(worker.component.clone()), worker.settings.clone()));
        }
        self.delete = manifest.deleted.clone();
        self.renames_if_deployed = manifest.renames_if_deployed;
        self
    }

    /// Starts the engine, serves what was deployed to the data folder before, and deploys the
    /// classes given to the builder on top (classes deployed earlier and not given keep serving).
    pub fn build(self) -> Result<Host> {
        let (host, startup) = self.start()?;
        startup.run(&host)?;
        Ok(host)
    }

    /// Like [`HostBuilder::build`], but returns before any class is compiled: the host can
    /// listen at once, while [`Startup::run`] (blocking; on another thread) compiles the
    /// classes, several at a time, and serves each as soon as it is ready. Meanwhile a request
    /// for a class still compiling waits for it (up to two minutes, or the event timeout if longer).
    pub fn start(self) -> Result<(Host, Startup)> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Internal(
                "build the host inside a tokio runtime (its alarm scheduler is a task)".into(),
            ));
        }
        let HostBuilder { config, mut classes, mut worker, mut delete, renames_if_deployed, cluster } = self;
        if let Some(cluster) = cluster.as_ref().filter(|cluster| cluster.follows_changes()) {
            if !classes.is_empty() || worker.is_some() {
                tracing::info!(
                    host = cluster.host_id(),
                    "this host serves what the cluster deployed (`wdo deploy`), not its manifest again"
                );
            }
            (classes, worker, delete) = (Vec::new(), None, Vec::new());
        }
        if cluster.is_some() && (config.backup.is_none() || config.backup_mode != crate::config::BackupMode::Sync) {
            return Err(Error::BadRequest(
                "a cluster host needs --backup URL with --backup-mode sync: the backup store is how an \
                 acknowledged write outlives its host"
                    .into(),
            ));
        }
        make_private_data_dir(&config.data_dir)?;
        let lock = lock_data_dir(&config.data_dir)?;
        // Open databases are bounded by memory, their files by the open-file limit: the VFS parks
        // the least recently used files past its budget (`storage::vfs`).
        let max_open = config.max_open_objects.max(16);
        let max_instances = config.max_instances.max(16);
        crate::storage::vfs::set_file_budget(database_file_budget());
        let cache_root = config.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("cache"));
        let engine = engine::new_engine(&config, max_instances as u32, engine::open_function_cache(&cache_root))?;
        crate::config::check_map_count(max_instances, crate::config::max_map_count()).map_err(Error::BadRequest)?;
        engine::start_epoch_ticker(&engine);
        let mut linker = Linker::<HostState>::new(&engine);
        let link_error = |e: wasmtime::Error| Error::Internal(format!("cannot link host imports: {e:#}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_error)?;
        crate::object::add_http_to_linker(&mut linker).map_err(link_error)?;
        DurableObject::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state).map_err(link_error)?;

        let cache = ComponentCache::new(&engine, &cache_root, config.cache_dir.is_none());
        let deployer = Deployer::open(&config.data_dir, cache, linker, config.keep_versions)?;
        let admin_token = admin_token(&config)?;
        let registry = Arc::new(Registry::default());
        if config.max_websocket_buffer < config.max_websocket_message {
            return Err(Error::BadRequest(format!(
                "the WebSocket send buffer ({} bytes) must hold the largest message ({} bytes): \
                 raise --max-websocket-buffer or lower --max-websocket-message",
                config.max_websocket_buffer, config.max_websocket_message
            )));
        }
        let budget = Arc::new(crate::budget::InputBudget::new(config.max_buffered_input));
        let observe = Arc::new(crate::observe::Observe::new(config.metrics));
        let hub = Arc::new(Hub::new(
            HubLimits {
                max_message: config.max_websocket_message,
                max_buffer: config.max_websocket_buffer,
                max_sockets_per_object: config.max_websockets_per_object,
                ping_interval: config.websocket_ping_interval,
                max_object_input: config.max_object_input,
                max_event_sends: config.max_event_sends,
            },
            budget.clone(),
            observe.clone(),
        ));
        let limits = InstanceLimits {
            cpu: config.cpu_limit,
            memory: config.memory_limit,
            storage: config.storage,
            sockets: hub.clone(),
            debug_errors: config.debug_errors,
            network: Arc::new(crate::outbound::Network::new(
                crate::outbound::OutboundLimits {
                    max_connections: config.outbound.max_connections.min((open_file_limit() / 8).max(16)),
                    ..config.outbound
                },
                observe.clone(),
            )),
            observe,
            vault: Arc::new(crate::env::Vault::new(&config.data_dir)),
        };
        let index_path = config.data_dir.join("alarms.sqlite");
        let index = AlarmIndex::open(&index_path, config.durability)
            .map_err(|e| Error::Internal(format!("cannot open the alarm index {}: {e}", index_path.display())))?;
        let index = Arc::new(index);
        let backup = match &config.backup {
            Some(url) => {
                let store = crate::backup::BackupStore::open(url).map_err(Error::BadRequest)?;
                let settings = crate::backup::Settings {
                    interval: config.backup_interval,
                    mode: config.backup_mode,
                    snapshot_every: config.backup_snapshot_every,
                    retention: config.backup_retention,
                };
                let backup = crate::backup::Backup::new(store, &config.data_dir, settings);
                tokio::spawn(backup.clone().run());
                tracing::info!(store = %url, mode = ?config.backup_mode, interval = ?config.backup_interval, "backing up every commit");
                Some(backup)
            }
            None if config.backup_mode == crate::config::BackupMode::Sync => {
                return Err(Error::BadRequest(
                    "--backup-mode sync needs a backup store: name it with --backup URL".into(),
                ));
            }
            None => None,
        };
        let directory = Arc::new(Directory::new(
            config.clone(),
            limits,
            max_open,
            max_instances,
            index.clone(),
            registry.clone(),
            backup,
        ));
        if config.max_resident > 0 {
            directory.hold_resident_memory(config.max_resident);
        }
        if let Some(cluster) = cluster {
            if let Some(backup) = &directory.backup {
                backup.join_cluster(cluster.clone());
            }
            cluster.start(&directory);
            let _ = directory.cluster.set(cluster);
        }
        let slot = ArcSwapOption::empty();
        let max_connections = config.max_connections.min((open_file_limit() / 2).saturating_sub(64)).max(16);
        if max_connections < config.max_connections {
            tracing::info!(max_connections, "open-file limit caps the client connections");
        }
        let connections = Arc::new(crate::gateway::Connections::new(max_connections));
        let inner = Arc::new(Inner {
            worker: slot,
            deployer,
            admin_token,
            config,
            registry,
            directory,
            connections,
            budget,
            _lock: lock,
        });
        // Every class that will be served, so that requests for one still compiling wait.
        let mut expected: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
        let deployed = inner.deployer.state();
        expected.extend(deployed.classes.keys().cloned());
        if worker.is_some() || deployed.worker.is_some() {
            expected.push(crate::deploy::WORKER.to_string());
        }
        inner.registry.expect(expected);
        let host = Arc::downgrade(&inner);
        hub.set_dispatch(Box::new(move |key, name, event, held| {
            let Some(inner) = host.upgrade() else { return false };
            let Ok(class) = inner.registry.get(&key.class) else { return false };
            let (reply, _) = oneshot::channel();
            let envelope = Envelope { event, name, reply, chain: Vec::new(), deadline: None, held, request_id: None };
            inner.directory.send(&class, key, envelope).is_ok()
        }));
        let startup = Startup { classes, worker, delete, renames_if_deployed, index };
        Ok((Host { inner }, startup))
    }
}

/// How long a request for a class still compiling at start-up may wait for it (at least; the
/// event timeout if longer): a large JavaScript or Python component takes 10-30 s on a small
/// machine.
const STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// What is left of a host's start after [`HostBuilder::start`]: serving what was deployed
/// before, then deploying the builder's classes on top.
pub struct Startup {
    classes: Vec<ClassSource>,
    worker: Option<(Source, Settings)>,
    delete: Vec<String>,
    renames_if_deployed: bool,
    index: Arc<AlarmIndex>,
}

impl Startup {
    /// Compiles (several at a time) and serves every class; blocking. The host serves each
    /// class as soon as it is ready; alarms start firing once all are. An error means the
    /// host cannot serve what it was given: requests still waiting get it too.
    pub fn run(self, host: &Host) -> Result<()> {
        let inner = &host.inner;
        let result = self.deploy(inner);
        if inner.directory.cluster.get().is_some() {
            // What the cluster deployed since this host last looked goes over the manifest's.
            tokio::spawn(crate::cluster::follow_changes(host.downgrade()));
        }
        inner.registry.started(result.as_ref().map(drop).map_err(|e| e.to_string()));
        result?;
        let host = Arc::downgrade(inner);
        alarms::start_scheduler(self.index, move |due| match host.upgrade() {
            Some(inner) => inner.deliver_alarm(due),
            None => Delivery::Stopped,
        });
        Ok(())
    }

    fn deploy(&self, inner: &Inner) -> Result<()> {
        let started = std::time::Instant::now();
        let mut plan = builder_plan(&inner.deployer, &self.classes, self.worker.as_ref())?;
        inner.deployer.restore(&inner.directory, &inner.worker, &plan)?;
        plan.delete = self.delete.clone();
        plan.serve_when_ready = true;
        if self.renames_if_deployed {
            let deployed = inner.deployer.state();
            for class in &mut plan.classes {
                class.renamed_from.take_if(|from| !deployed.classes.contains_key(from));
            }
        }
        if !plan.classes.is_empty() || plan.worker.is_some() || !plan.delete.is_empty() {
            inner.deployer.apply(&inner.directory, &inner.worker, &plan)?;
        }
        tracing::info!("every class is ready after {:.1?}", started.elapsed());
        Ok(())
    }
}

/// The builder's classes as a deploy that keeps whatever else was deployed.
fn builder_plan(deployer: &Deployer, classes: &[ClassSource], worker: Option<&(Source, Settings)>) -> Result<Plan> {
    let mut plan = Plan { keep_unlisted: true, ..Plan::default() };
    for class in classes {
        if plan.classes.iter().any(|c| c.name == class.name) {
            return Err(Error::Component { class: class.name.clone(), message: "is defined twice".into() });
        }
        let hash = deployer.put_component(&class.source.read(&class.name)?)?;
        let renamed_from = class.renamed_from.clone();
        plan.classes.push(ClassPlan { name: class.name.clone(), hash, renamed_from, settings: class.settings.clone() });
    }
    if let Some((source, settings)) = worker {
        plan.worker = Some(deployer.put_component(&source.read("worker")?)?);
        plan.worker_settings = settings.clone();
    }
    Ok(plan)
}

/// The admin API's token: configured, or kept in `<data>/admin-token` (made on first start).
fn admin_token(config: &Config) -> Result<String> {
    if let Some(crate::config::Secret(token)) = &config.admin_token {
        if token.len() < 16 {
            return Err(Error::BadRequest("the admin token must be at least 16 characters".into()));
        }
        return Ok(token.clone());
    }
    let path = config.data_dir.join("admin-token");
    let make = || hex::encode(rand::random::<[u8; 32]>()).into_bytes();
    let bytes = crate::files::read_or_create_secret(&path, make)
        .map_err(|e| Error::io(format!("read or create {}", path.display()), e))?;
    match String::from_utf8(bytes) {
        Ok(token) if token.trim().len() >= 16 => Ok(token.trim().to_string()),
        _ => Err(Error::Internal(format!("{} is damaged: expected a token of at least 16 characters", path.display()))),
    }
}

/// Takes `<data>/lock` exclusively: two hosts on one folder would fight over every object.
/// Creates the data folder, or takes an existing one: object data, secrets and the admin token
/// are the host's alone, so no other local user may even list it (0700). A folder that is not
/// already a wdo data folder (it has no `lock` file) is never changed, only warned about: the
/// host must not chmod, say, a shared folder it was pointed at by mistake.
fn make_private_data_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let existed = dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create data folder {}", dir.display()), e))?;
    if !existed || dir.join("lock").exists() {
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("make data folder {} private", dir.display()), e));
    }
    let mode = std::fs::metadata(dir).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o077 != 0 {
        tracing::warn!(
            "data folder {} can be read by other users (mode {:o}): chmod 700 it",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    // SAFETY: flock on a descriptor we own; the lock lives as long as the file.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::Io {
            context: format!("data folder {} is in use by another wdo host", data_dir.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(file)
}

/// Database files the process keeps open at once: half of the open-file limit is kept for
/// client connections (see `max_connections`), an eighth for outbound ones, and a reserve for
/// everything else.
fn database_file_budget() -> usize {
    let limit = open_file_limit();
    (limit - limit / 2 - limit / 8).saturating_sub(64).max(16)
}

/// The process's open-file limit (soft).
fn open_file_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    (limit.rlim_cur as usize).max(256)
}

/// Raises the soft open-file limit to the hard limit, as servers do. Call it from `main`.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
