//! The host: classes, the object directory and the engine behind one cheap-to-clone handle.

use crate::alarms::{self, AlarmIndex, Delivery};
use crate::bindings::DurableObject;
use crate::config::Config;
use crate::engine::{self, ComponentCache};
use crate::error::{Error, Result};
use crate::ids::ObjectId;
use crate::manifest::Manifest;
use crate::message::{Request, Response};
use crate::object::{Directory, Envelope, Event, HostState, InstanceLimits, ObjectKey, Reply};
use crate::registry::{self, Registry};
use crate::sockets::{Hub, HubLimits, SocketId};
use crate::worker::Worker;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;
use wasmtime::component::{HasSelf, Linker};

/// What became of a WebSocket upgrade request.
pub(crate) enum Upgrade {
    /// The object answered with a plain response.
    Refused(Response),
    /// The object accepted: the connection belongs to this socket of this object.
    Accepted(ObjectKey, SocketId),
}

/// A running wdo host. Clone it freely: clones share everything.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    worker: Option<Worker>,
    config: Config,
    registry: Arc<Registry>,
    directory: Arc<Directory>,
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
        // The reply is not awaited: the object's actor brings the index up to date itself.
        let (reply, _) = oneshot::channel();
        let envelope = Envelope { event: Event::Alarm { retry: due.retry }, name: due.name, reply, chain: Vec::new() };
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
    classes: Vec<(String, Source)>,
    worker: Option<Source>,
}

impl Host {
    pub fn builder() -> HostBuilder {
        HostBuilder { config: Config::default(), classes: Vec::new(), worker: None }
    }

    /// Sends an HTTP request to the object `name` of `class`, without going through HTTP.
    pub async fn fetch(&self, class: &str, name: &str, request: Request) -> Result<Response> {
        match self.send(class, name, Event::Fetch(request)).await? {
            Reply::Response(response) => Ok(response),
            _ => Err(Error::Internal("a fetch was answered without a response".into())),
        }
    }

    /// Sends a request that asks for a WebSocket upgrade; the object may accept it.
    pub(crate) async fn upgrade(&self, class: &str, name: &str, request: Request) -> Result<Upgrade> {
        let key = self.key(class, name)?;
        match self.send(class, name, Event::Upgrade(request)).await? {
            Reply::Response(response) => Ok(Upgrade::Refused(response)),
            Reply::Upgrade(socket) => Ok(Upgrade::Accepted(key, socket)),
            _ => Err(Error::Internal("an upgrade was answered without a response".into())),
        }
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner.directory.limits.sockets
    }

    fn key(&self, class: &str, name: &str) -> Result<ObjectKey> {
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

    /// Whether a worker receives every HTTP request.
    pub fn has_worker(&self) -> bool {
        self.inner.worker.is_some()
    }

    /// Sends a request to the worker (the whole path, as the client sent it).
    pub async fn worker_fetch(&self, request: Request) -> Result<Response> {
        match &self.inner.worker {
            Some(worker) => worker.fetch(&self.inner.directory, request).await,
            None => Err(Error::Internal("no worker is configured".into())),
        }
    }

    /// Drops the object's instance from memory now, as idling would; with `close_storage` its
    /// database is closed too. Its data, and its place in the order of events, are kept: the
    /// next event brings it back.
    pub async fn hibernate(&self, class: &str, name: &str, close_storage: bool) -> Result<()> {
        self.send(class, name, Event::Hibernate { close_storage }).await.map(drop)
    }

    async fn send(&self, class: &str, name: &str, event: Event) -> Result<Reply> {
        validate_object_name(name)?;
        let class = self.inner.registry.get(class)?;
        let key = ObjectKey { class: class.name.clone(), id: class.id_from_name(name) };
        let (reply, answer) = oneshot::channel();
        let envelope = Envelope { event, name: Some(name.to_string()), reply, chain: Vec::new() };
        self.inner.directory.send(&class, key, envelope)?;
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
        if let Some(worker) = &self.inner.worker {
            versions.push(("worker".into(), worker.hash.clone()));
        }
        versions
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

    /// The bound on objects with an open database, after the open-file limit was applied.
    pub fn max_open_objects(&self) -> usize {
        self.inner.directory.max_open()
    }

    /// Serves HTTP on `listener` until the returned future is dropped.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> Result<()> {
        crate::gateway::serve(self.clone(), listener).await
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
        self.classes.push((name.to_string(), Source::Bytes(component.into())));
        self
    }

    /// Serves a class from a component file.
    pub fn class_file(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        self.classes.push((name.to_string(), Source::File(path.into())));
        self
    }

    /// Puts a worker component (world `wdo:object/worker`) in front: it receives every HTTP request.
    pub fn worker_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.worker = Some(Source::File(path.into()));
        self
    }

    /// Serves every class of a manifest, and its worker if it names one.
    pub fn manifest(mut self, manifest: &Manifest) -> Self {
        for class in &manifest.classes {
            self = self.class_file(&class.name, &class.component);
        }
        if let Some(worker) = &manifest.worker {
            self = self.worker_file(worker);
        }
        self
    }

    /// Compiles (or loads from the cache) every class and starts the engine.
    pub fn build(self) -> Result<Host> {
        let config = self.config;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::io(format!("create data folder {}", config.data_dir.display()), e))?;
        let lock = lock_data_dir(&config.data_dir)?;
        let max_open = config.max_open_objects.min(open_file_budget()).max(16);
        if max_open < config.max_open_objects {
            tracing::info!(max_open, "open-file limit caps the objects with an open database");
        }
        let engine = engine::new_engine(&config, max_open as u32)?;
        engine::start_epoch_ticker(&engine);
        let mut linker = Linker::<HostState>::new(&engine);
        let link_error = |e: wasmtime::Error| Error::Internal(format!("cannot link host imports: {e:#}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_error)?;
        DurableObject::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state).map_err(link_error)?;

        let cache = ComponentCache::new(&engine, &config.data_dir);
        let registry = Arc::new(Registry::default());
        for (name, source) in &self.classes {
            if registry.get(name).is_ok() {
                return Err(Error::Component { class: name.clone(), message: "is defined twice".into() });
            }
            let bytes = source.read(name)?;
            registry.insert(registry::prepare_class(&cache, &linker, &config.data_dir, name, &bytes)?);
        }
        let worker = match &self.worker {
            Some(source) => Some(Worker::prepare(&cache, &linker, &source.read("worker")?)?),
            None => None,
        };

        let hub = Arc::new(Hub::new(HubLimits {
            max_message: config.max_websocket_message,
            max_buffer: config.max_websocket_buffer,
        }));
        let limits = InstanceLimits {
            cpu: config.cpu_limit,
            memory: config.memory_limit,
            storage: config.storage,
            sockets: hub.clone(),
        };
        let index_path = config.data_dir.join("alarms.sqlite");
        let index = AlarmIndex::open(&index_path, config.durability)
            .map_err(|e| Error::Internal(format!("cannot open the alarm index {}: {e}", index_path.display())))?;
        let index = Arc::new(index);
        let directory = Arc::new(Directory::new(config.clone(), limits, max_open, index.clone(), registry.clone()));
        let inner = Arc::new(Inner { worker, config, registry, directory, _lock: lock });
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Internal(
                "build the host inside a tokio runtime (its alarm scheduler is a task)".into(),
            ));
        }
        let host = Arc::downgrade(&inner);
        hub.set_dispatch(Box::new(move |key, name, event| {
            let Some(inner) = host.upgrade() else { return false };
            let Ok(class) = inner.registry.get(&key.class) else { return false };
            let (reply, _) = oneshot::channel();
            inner.directory.send(&class, key, Envelope { event, name, reply, chain: Vec::new() }).is_ok()
        }));
        let host = Arc::downgrade(&inner);
        alarms::start_scheduler(index, move |due| match host.upgrade() {
            Some(inner) => inner.deliver_alarm(due),
            None => Delivery::Stopped,
        });
        Ok(Host { inner })
    }
}

/// Takes `<data>/lock` exclusively: two hosts on one folder would fight over every object.
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

/// Databases the process can afford to hold open: an object database takes two descriptors
/// (the file and its WAL; exclusive locking needs no -shm), and half of the limit is kept for
/// connections and everything else.
fn open_file_budget() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024 / 4;
    }
    (limit.rlim_cur as usize / 4).max(1)
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
