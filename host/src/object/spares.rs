//! Spare instances, made ahead of need for classes that are slow to instantiate.
//!
//! A Rust object instantiates in ~20 µs, but the JavaScript and Python components carry 12-19 MB
//! memory images and dozens of core modules: 0.1-1 ms each. For a class whose last
//! instantiation took longer than [`SLOW`], the directory keeps up to [`PER_CLASS`] fresh
//! instances of its current version; an object that wakes takes one and only pays for its first
//! call. A spare has run no event and holds no object's data: it gets its identity (`context`,
//! log label) when an object adopts it, and a deploy makes the old version's spares go.

use super::Directory;
use super::instance::{Instance, ObjectInfo};
use crate::ids::ObjectId;
use crate::registry::Version;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Instantiation slower than this makes the directory keep spares of the class.
pub const SLOW: Duration = Duration::from_micros(100);
/// Spares kept per class.
pub const PER_CLASS: usize = 2;

#[derive(Default)]
pub struct Spares {
    pools: Mutex<HashMap<Arc<str>, Pool>>,
}

#[derive(Default)]
struct Pool {
    instances: Vec<Instance>,
    /// A task is making spares for this class.
    filling: bool,
}

impl Spares {
    /// A spare of `version` of `class`, if one is ready. Spares of another version are dropped.
    pub fn take(&self, class: &Arc<str>, version: &Arc<Version>) -> Option<Instance> {
        let mut pools = self.pools.lock().unwrap();
        let pool = pools.get_mut(class)?;
        pool.instances.retain(|i| Arc::ptr_eq(&i.version, version));
        pool.instances.pop()
    }

    /// Forgets every spare (at shutdown: spares hold the directory through their stores).
    pub fn clear(&self) {
        self.pools.lock().unwrap().clear();
    }

    /// Forgets the spares of a class that stops (deleted or renamed).
    pub fn forget(&self, class: &str) {
        self.pools.lock().unwrap().remove(class);
    }
}

/// Makes spares of `version` until `class` has [`PER_CLASS`], in the background.
pub fn refill(directory: &Arc<Directory>, class: Arc<str>, version: Arc<Version>) {
    {
        let mut pools = directory.spares.pools.lock().unwrap();
        let pool = pools.entry(class.clone()).or_default();
        if pool.filling || pool.instances.len() >= PER_CLASS {
            return;
        }
        pool.filling = true;
    }
    let directory = directory.clone();
    tokio::spawn(async move {
        let placeholder =
            Arc::new(ObjectInfo::new(class.clone(), ObjectId::from_hex(&"0".repeat(64)).expect("a valid id"), None));
        loop {
            let made = Instance::new(version.clone(), placeholder.clone(), &directory).await;
            let mut pools = directory.spares.pools.lock().unwrap();
            let Some(pool) = pools.get_mut(&class) else { return }; // forgotten meanwhile
            let failed = match made {
                Ok(instance) => {
                    pool.instances.push(instance);
                    false
                }
                Err(e) => {
                    tracing::warn!(class = %class, "could not make a spare instance: {}", e.0);
                    true
                }
            };
            if failed || pool.instances.len() >= PER_CLASS {
                pool.filling = false;
                return;
            }
        }
    });
}
