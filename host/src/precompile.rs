//! Compiling a manifest's components ahead of time (`wdo compile`, run by `make build`), into
//! the compile cache a host started later reads: that host then serves every class within a
//! second of starting instead of compiling for most of a minute.

use crate::config::Config;
use crate::engine::{self, ComponentCache, DURABLE_OBJECT, WORKER};
use crate::error::Result;
use crate::manifest::Manifest;
use std::path::Path;

/// One component of the manifest, ready in the cache.
#[derive(Debug, Clone)]
pub struct Precompiled {
    /// The class, or [`crate::WORKER`].
    pub name: String,
    /// False when the cache had it already.
    pub compiled: bool,
}

/// Compiles every component of `manifest` (classes and worker) into `cache_dir`, several at a
/// time, as a host with `config` would compile them (same engine settings, so the same cache
/// folder). `progress` hears of each one as it is done. Only adds to the cache: safe while a
/// host uses it.
pub fn compile_manifest(
    manifest: &Manifest,
    cache_dir: &Path,
    config: &Config,
    progress: impl Fn(&Precompiled) + Sync,
) -> Result<Vec<Precompiled>> {
    let engine = engine::new_engine(config, config.max_instances as u32)?;
    let cache = ComponentCache::new(&engine, cache_dir, false);
    let mut jobs: Vec<(&str, &Path, engine::World)> =
        manifest.classes.iter().map(|c| (c.name.as_str(), c.component.as_path(), DURABLE_OBJECT)).collect();
    if let Some(worker) = &manifest.worker {
        jobs.push((crate::deploy::WORKER, worker.component.as_path(), WORKER));
    }
    // Largest first: the long compiles start at once and the small ones fill the gaps.
    jobs.sort_by_key(|(_, path, _)| std::cmp::Reverse(std::fs::metadata(path).map_or(0, |m| m.len())));
    let results = engine::on_all_cores(&jobs, |&(name, path, world)| {
        let bytes = std::fs::read(path).map_err(|e| crate::Error::io(format!("read {}", path.display()), e))?;
        let compiled = cache.load(name, &bytes, world)?;
        let done = Precompiled { name: name.to_string(), compiled: !compiled.cached };
        progress(&done);
        Ok(done)
    });
    results.into_iter().collect()
}
