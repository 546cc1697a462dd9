//! Compiling a manifest's components ahead of time (`wdo compile`, run by `make build`), into
//! the compile cache a host started later reads: that host then serves every class within a
//! second of starting instead of compiling for most of a minute.

use crate::config::Config;
use crate::engine::{self, ComponentCache, DURABLE_OBJECT, FunctionCacheStats, WORKER};
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

/// What [`compile_manifest`] did.
#[derive(Debug, Clone)]
pub struct CompileReport {
    /// Every component, in the manifest's order (classes, then the worker).
    pub components: Vec<Precompiled>,
    /// How many functions came from the compiled-function cache, how many were compiled.
    pub functions: FunctionCacheStats,
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
) -> Result<CompileReport> {
    let functions = engine::open_function_cache(cache_dir);
    let engine = engine::new_engine(config, config.max_instances as u32, functions.clone())?;
    let cache = ComponentCache::new(&engine, cache_dir, false);
    let mut jobs: Vec<(&str, &Path, engine::World)> =
        manifest.classes.iter().map(|c| (c.name.as_str(), c.component.as_path(), DURABLE_OBJECT)).collect();
    if let Some(worker) = &manifest.worker {
        jobs.push((crate::deploy::WORKER, worker.component.as_path(), WORKER));
    }
    let sizes: Vec<u64> = jobs.iter().map(|(_, path, _)| std::fs::metadata(path).map_or(0, |m| m.len())).collect();
    // Largest first: the long compiles start at once and the small ones fill the gaps. But
    // components of one language runtime share most of their functions (and their size, to
    // within a MiB): one of each compiles first, so the others find its functions in the cache
    // instead of compiling them at the same time.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let mut seen = std::collections::HashSet::new();
    let (first, rest): (Vec<usize>, Vec<usize>) = order.into_iter().partition(|&i| seen.insert(sizes[i] >> 20));
    let compile = |&i: &usize| {
        let (name, path, world) = jobs[i];
        let bytes = std::fs::read(path).map_err(|e| crate::Error::io(format!("read {}", path.display()), e))?;
        let compiled = cache.load(name, &bytes, world)?;
        let done = Precompiled { name: name.to_string(), compiled: !compiled.cached };
        progress(&done);
        Ok((i, done))
    };
    let mut results = engine::on_all_cores(&first, compile);
    results.extend(engine::on_all_cores(&rest, compile));
    let mut components = results.into_iter().collect::<Result<Vec<_>>>()?;
    components.sort_by_key(|(i, _)| *i);
    Ok(CompileReport {
        components: components.into_iter().map(|(_, done)| done).collect(),
        functions: functions.map(|f| f.stats()).unwrap_or_default(),
    })
}
