//! The classes a host serves: for each, its compiled component linked against the host's
//! imports (`InstancePre`, so instantiation does no linking work) and its id secret.

use crate::bindings::DurableObjectPre;
use crate::engine::{ComponentCache, DURABLE_OBJECT, World};
use crate::error::{Error, Result};
use crate::ids::{ClassSecret, ObjectId};
use crate::object::HostState;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use wasmtime::component::{InstancePre, Linker};

/// One servable class.
pub struct Class {
    pub name: Arc<str>,
    /// sha256 of the component bytes.
    pub hash: String,
    pub pre: DurableObjectPre<HostState>,
    pub secret: ClassSecret,
    /// Names seen for ids, so an object reached by id (RPC) still knows its name.
    names: std::sync::Mutex<lru::LruCache<ObjectId, Arc<str>>>,
}

/// Ids whose names the host remembers per class.
const REMEMBERED_NAMES: usize = 65_536;

impl Class {
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
}

impl Registry {
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
        self.classes.read().unwrap().values().map(|c| (c.name.to_string(), c.hash.clone())).collect()
    }

    pub fn insert(&self, class: Class) {
        self.classes.write().unwrap().insert(class.name.to_string(), Arc::new(class));
    }
}

/// Compiles (or loads from cache) and links a class.
pub fn prepare_class(
    cache: &ComponentCache,
    linker: &Linker<HostState>,
    data_dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<Class> {
    crate::manifest::validate_class_name(name)?;
    let (pre, hash) = link(cache, linker, name, bytes, DURABLE_OBJECT, DurableObjectPre::new)?;
    let names = std::sync::Mutex::new(lru::LruCache::new(REMEMBERED_NAMES.try_into().expect("non-zero")));
    Ok(Class { name: name.into(), hash, pre, secret: load_secret(data_dir, name)?, names })
}

/// Compiles (or loads from cache) a component of `world` and links it against the host's
/// imports; `typed` checks the exports' types. Returns the linked component and its hash.
pub fn link<P>(
    cache: &ComponentCache,
    linker: &Linker<HostState>,
    name: &str,
    bytes: &[u8],
    world: World,
    typed: impl FnOnce(InstancePre<HostState>) -> wasmtime::Result<P>,
) -> Result<(P, String)> {
    let compiled = cache.load(name, bytes, world)?;
    let fail = |message: String| Error::Component { class: name.to_string(), message };
    let instance_pre = linker
        .instantiate_pre(&compiled.component)
        .map_err(|e| fail(format!("imports something this host does not provide: {e:#}")))?;
    let pre = typed(instance_pre).map_err(|e| fail(format!("does not match the world `{}`: {e:#}", world.name)))?;
    tracing::info!(class = name, hash = &compiled.hash[..12], cached = compiled.cached, "component ready");
    Ok((pre, compiled.hash))
}

/// The class's id secret, created with mode 0600 on first use.
fn load_secret(data_dir: &Path, class: &str) -> Result<ClassSecret> {
    let dir = data_dir.join("objects").join(class);
    let path = dir.join("secret");
    match std::fs::read(&path) {
        Ok(bytes) => ClassSecret::from_bytes(&bytes)
            .ok_or_else(|| Error::Internal(format!("{} is damaged: expected 32 bytes", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = ClassSecret::random();
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
            let tmp = dir.join("secret.tmp");
            write_private(&tmp, secret.as_bytes()).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            Ok(secret)
        }
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
