//! Starting a host: [`HostBuilder`] (configuration and the classes to serve), what a start
//! checks and makes in the data folder (its lock, the admin token, the open-file budget), and
//! [`Startup`], which serves what was deployed before and deploys the builder's classes.

use super::{Host, Inner};
use crate::alarms::{self, AlarmIndex, Delivery};
use crate::bindings::DurableObject;
use crate::config::Config;
use crate::deploy::{ClassPlan, Deployer, Plan};
use crate::engine::{self, ComponentCache};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Settings};
use crate::object::{Directory, Envelope, HostState, InstanceLimits};
use crate::registry::Registry;
use crate::sockets::{Hub, HubLimits};
use arc_swap::ArcSwapOption;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;
use wasmtime::component::{HasSelf, Linker};

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
}

impl HostBuilder {
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Serves a class from component bytes.
    pub fn class(self, name: &str, component: impl Into<Vec<u8>>) -> Self {
        self.with_class(name, Source::Bytes(component.into()))
    }

    /// Serves a class from a component file.
    pub fn class_file(self, name: &str, path: impl Into<PathBuf>) -> Self {
        self.with_class(name, Source::File(path.into()))
    }

    fn with_class(mut self, name: &str, source: Source) -> Self {
        let settings = Settings::default();
        self.classes.push(ClassSource { name: name.to_string(), source, renamed_from: None, settings });
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
