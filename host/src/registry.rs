//! The classes a host serves: for each, its id secret and the version of its code that runs,
//! compiled and linked against the host's imports (`InstancePre`, so instantiation does no
//! linking work).

use crate::bindings::DurableObjectIndices;
use crate::engine::{ComponentCache, DURABLE_OBJECT, World};
use crate::error::{Error, Result};
use crate::ids::{ClassSecret, ObjectId};
use crate::object::HostState;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use wasmtime::component::{ComponentExportIndex, InstancePre, Linker};

/// One servable class: its identity (name, id secret, the names seen for its ids) and the
/// version of its code that the next event runs. A deploy swaps the version in place; an
/// actor notices before its next event and starts a fresh instance of the new code.
pub struct Class {
    pub name: Arc<str>,
    pub secret: ClassSecret,
    version: ArcSwap<Version>,
    /// Set when the class is deleted or renamed: its actors finish what is queued with an error
    /// and leave.
    removed: AtomicBool,
    /// Names seen for ids, so an object reached by id (RPC) still knows its name.
    names: std::sync::Mutex<lru::LruCache<ObjectId, Arc<str>>>,
}

/// One deployed version of a class's code, linked and ready to instantiate.
pub struct Version {
    /// 1 for the first version deployed, counting up.
    pub number: u32,
    /// sha256 of the component bytes.
    pub hash: String,
    pub pre: InstancePre<HostState>,
    /// Where the handler's functions are, looked up (and type-checked) once.
    pub indices: DurableObjectIndices,
    /// The optional `warm-up` export, run on spare instances before an object adopts them.
    pub warm_up: Option<ComponentExportIndex>,
    /// Set when a warm-up failed: spares of this version are no longer warmed up.
    pub warm_up_failed: AtomicBool,
    /// Whether preparing it compiled code (false: the machine code came from the cache).
    pub compiled: bool,
    /// Its vars and outbound allow list.
    pub profile: Arc<crate::env::Profile>,
    /// Linear memories an instance has (at least 1): places it takes under `--max-instances`.
    pub memories: usize,
}

impl Version {
    /// Whether spares of this version get their `warm-up` called.
    pub fn warms_up(&self) -> bool {
        self.warm_up.is_some() && !self.warm_up_failed.load(Ordering::Relaxed)
    }
}

/// Ids whose names the host remembers per class.
const REMEMBERED_NAMES: usize = 65_536;

impl Class {
    /// The class `name` running `version`, with its id secret from the data folder (created
    /// with mode 0600 on first use).
    pub fn open(data_dir: &Path, name: &str, version: Version) -> Result<Class> {
        crate::manifest::validate_class_name(name)?;
        let names = std::sync::Mutex::new(lru::LruCache::new(REMEMBERED_NAMES.try_into().expect("non-zero")));
        Ok(Class {
            name: name.into(),
            secret: load_secret(data_dir, name)?,
            version: ArcSwap::from_pointee(version),
            removed: AtomicBool::new(false),
            names,
        })
    }

    /// The version the next event runs.
    pub fn version(&self) -> Arc<Version> {
        self.version.load_full()
    }

    /// Switches the class to `version`: events already running finish on the old one.
    pub fn set_version(&self, version: Arc<Version>) {
        self.version.store(version);
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// The id of the object `name`, remembering which name it came from.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        let id = self.secret.id_from_name(name);
        self.names.lock().unwrap().get_or_insert(id, || name.into());
        id
    }

    /// The name an id was derived from, if the host saw it.
    pub fn name_of(&self, id: &ObjectId) -> Option<String> {
        self.names.lock().unwrap().get(id).map(|n| n.to_string())
    }
}

#[derive(Default)]
pub struct Registry {
    classes: RwLock<BTreeMap<String, Arc<Class>>>,
    /// What the host is still preparing at start-up (see [`Registry::serving`]).
    starting: tokio::sync::watch::Sender<Starting>,
    /// Set once nothing is starting any more: the hot path skips the watch.
    started: AtomicBool,
}

/// The classes (and the worker, as [`crate::deploy::WORKER`]) a starting host will serve but
/// has not compiled yet, or why the start failed.
#[derive(Debug, Default)]
struct Starting {
    names: BTreeSet<String>,
    failed: Option<String>,
}

impl Registry {
    /// Marks classes (and the worker) as being prepared: requests for them wait (see
    /// [`Registry::serving`]) instead of failing as unknown.
    pub fn expect(&self, names: impl IntoIterator<Item = String>) {
        self.starting.send_modify(|starting| starting.names.extend(names));
    }

    /// One expected class (or the worker) is served now, or will not be.
    pub fn ready(&self, name: &str) {
        self.starting.send_if_modified(|starting| starting.names.remove(name));
    }

    /// Start-up is over: nothing is waited for any more; a failure is told to waiting requests.
    pub fn started(&self, result: std::result::Result<(), String>) {
        self.starting.send_modify(|starting| {
            starting.names.clear();
            starting.failed = result.err();
        });
        self.started.store(true, Ordering::Release);
    }

    /// Waits until `name` (a class, or the worker) is served or known not to be, up to `wait`.
    /// Returns at once once the host has started.
    pub async fn serving(&self, name: &str, wait: std::time::Duration) -> Result<()> {
        if self.started.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut starting = self.starting.subscribe();
        // `wait_for` answers with a read guard of the watch: drop it before borrowing again (a
        // second read waits behind a writer waiting for the first: a deadlock).
        let waited = tokio::time::timeout(wait, starting.wait_for(|s| !s.names.contains(name))).await.map(drop);
        let failed = self.starting.borrow().failed.clone();
        match (waited, failed) {
            (_, Some(reason)) => Err(Error::Unavailable {
                object: name.to_string(),
                reason: format!("the host could not start: {reason}"),
            }),
            (Ok(_), None) => Ok(()),
            (Err(_), None) => Err(Error::Unavailable {
                object: name.to_string(),
                reason: format!(
                    "still starting: its component is being compiled (waited {:.0?}); try again shortly",
                    wait
                ),
            }),
        }
    }

    pub fn get(&self, name: &str) -> Result<Arc<Class>> {
        let classes = self.classes.read().unwrap();
        classes
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownClass { class: name.to_string(), known: classes.keys().cloned().collect() })
    }

    pub fn names(&self) -> Vec<String> {
        self.classes.read().unwrap().keys().cloned().collect()
    }

    /// Each class with the content hash of the component it runs.
    pub fn versions(&self) -> Vec<(String, String)> {
        self.classes.read().unwrap().values().map(|c| (c.name.to_string(), c.version().hash.clone())).collect()
    }

    pub fn insert(&self, class: Class) {
        let name = class.name.to_string();
        self.classes.write().unwrap().insert(name.clone(), Arc::new(class));
        self.ready(&name);
    }

    /// Stops serving a class: new events are refused, and its actors leave once they see it.
    pub fn remove(&self, name: &str) -> Option<Arc<Class>> {
        let class = self.classes.write().unwrap().remove(name)?;
        class.removed.store(true, Ordering::Release);
        Some(class)
    }
}

/// Compiles (or loads from cache) and links one version of a class.
pub fn prepare_version(
    cache: &ComponentCache,
    linker: &Linker<HostState>,
    name: &str,
    number: u32,
    bytes: &[u8],
    settings: &crate::manifest::Settings,
) -> Result<Version> {
    let profile = Arc::new(crate::env::Profile::new(name, settings)?);
    let typed = |pre: InstancePre<HostState>| DurableObjectIndices::new(&pre).map(|indices| (pre, indices));
    let linked = link(cache, linker, name, bytes, DURABLE_OBJECT, typed)?;
    let (pre, indices) = linked.pre;
    let warm_up = crate::engine::find_warm_up(pre.component())
        .map_err(|message| Error::Component { class: name.to_string(), message })?;
    Ok(Version {
        number,
        hash: linked.hash,
        pre,
        indices,
        warm_up,
        warm_up_failed: AtomicBool::new(false),
        compiled: linked.compiled,
        profile,
        memories: linked.memories,
    })
}

/// Compiles (or loads from cache) a component of `world` and links it against the host's
/// imports; `typed` checks the exports' types.
pub fn link<P>(
    cache: &ComponentCache,
    linker: &Linker<HostState>,
    name: &str,
    bytes: &[u8],
    world: World,
    typed: impl FnOnce(InstancePre<HostState>) -> wasmtime::Result<P>,
) -> Result<Linked<P>> {
    let compiled = cache.load(name, bytes, world)?;
    let fail = |message: String| Error::Component { class: name.to_string(), message };
    let instance_pre = linker
        .instantiate_pre(&compiled.component)
        .map_err(|e| fail(format!("imports something this host does not provide: {e:#}")))?;
    let pre = typed(instance_pre).map_err(|e| fail(format!("does not match the world `{}`: {e:#}", world.name)))?;
    let memories = crate::engine::memories(&compiled.component);
    tracing::info!(class = name, hash = &compiled.hash[..12], cached = compiled.cached, "component ready");
    Ok(Linked { pre, hash: compiled.hash, compiled: !compiled.cached, memories })
}

/// A component linked against the host's imports.
pub struct Linked<P> {
    pub pre: P,
    /// sha256 of the component bytes.
    pub hash: String,
    /// Whether this compiled code (false: it came from the cache).
    pub compiled: bool,
    /// Linear memories an instance of it has (at least 1): its weight under `--max-instances`.
    pub memories: usize,
}

/// The class's id secret, created with mode 0600 on first use.
/// In a cluster it derives from the cluster's secret instead, the same on every host.
fn load_secret(data_dir: &Path, class: &str) -> Result<ClassSecret> {
    let path = data_dir.join("objects").join(class).join("secret");
    let derived = crate::cluster::class_secret(data_dir, class);
    let bytes = crate::files::read_or_create_secret(&path, || match derived {
        Some(secret) => secret.to_vec(),
        None => ClassSecret::random().as_bytes().to_vec(),
    })
    .map_err(|e| Error::io(format!("read or create {}", path.display()), e))?;
    if derived.is_some_and(|derived| bytes != derived) {
        return Err(Error::BadRequest(format!(
            "{} was made before this data folder joined its cluster: objects of class `{class}` would get \
             other ids here than on the other hosts (start from an empty data folder)",
            path.display()
        )));
    }
    ClassSecret::from_bytes(&bytes)
        .ok_or_else(|| Error::Internal(format!("{} is damaged: expected 32 bytes", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A request for a class asks the start-up watch while the start marks classes ready. A
    /// reader that held the watch's read guard and asked for it again deadlocked as soon as the
    /// start was waiting to write between the two (std's lock makes new readers wait behind a
    /// waiting writer): the host listened and never answered (seen starting a wrangler project).
    #[test]
    fn requests_waiting_for_classes_never_deadlock_with_the_start_marking_them_ready() {
        let registry = Arc::new(Registry::default());
        registry.expect(["compiling".to_string()]);
        let stop = Arc::new(AtomicBool::new(false));
        let start = std::thread::spawn({
            let (registry, stop) = (registry.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    registry.expect(["other".to_string()]);
                    registry.ready("other");
                }
            }
        });
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn({
            let registry = registry.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
                runtime.block_on(async {
                    for _ in 0..200_000 {
                        registry.serving("served", Duration::from_secs(5)).await.unwrap();
                    }
                });
                done.send(()).unwrap();
            }
        });
        let result = finished.recv_timeout(Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
        assert!(result.is_ok(), "a request waiting for a class and the start deadlocked");
        start.join().unwrap();
    }
}
