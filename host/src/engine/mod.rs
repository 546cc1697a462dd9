//! The wasmtime engine and the compiled-component cache.
//!
//! One engine serves every class: component model, pooling instance allocator (instantiation is
//! a few microseconds), epoch interruption for CPU limits. Components are compiled once and
//! the machine code is kept on disk under `<data>/cache/<engine fingerprint>/<sha256>.cwasm`;
//! a restart maps the file instead of compiling again. The fingerprint covers wasmtime's version
//! and every setting that changes generated code, so a stale file is never loaded. Below it,
//! single functions are cached too (`function_cache.rs`), so a component never seen before
//! compiles only the functions no earlier component had: those of a JavaScript or Python
//! component are mostly its language runtime's.

mod function_cache;
mod trim;
pub use function_cache::{FunctionCache, FunctionCacheStats};

use crate::bindings::{HANDLER_EXPORT, HANDLER_FUNCTIONS};

/// A world a component must implement: its name, the export and that export's functions.
#[derive(Clone, Copy)]
pub struct World {
    pub name: &'static str,
    pub export: &'static str,
    pub functions: &'static [&'static str],
}

pub const DURABLE_OBJECT: World =
    World { name: "wdo:object/durable-object", export: HANDLER_EXPORT, functions: HANDLER_FUNCTIONS };
/// The optional export a component may add to be warmed up ahead of need (`warm-up: func()`).
pub const WARM_UP_EXPORT: &str = "wdo:object/warm-up@0.1.0";
pub const WORKER: World =
    World { name: "wdo:object/worker", export: "wdo:object/worker-handler@0.1.0", functions: &["fetch"] };
use crate::config::Config;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, ComponentExportIndex, types::ComponentItem};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. CPU limits are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine for a host with this configuration; with `functions`, Cranelift takes
/// the machine code of functions it has compiled before from there.
pub fn new_engine(config: &Config, max_instances: u32, functions: Option<Arc<FunctionCache>>) -> Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    // `max_instances` bounds the memories of live instances (`object::residency`: an instance
    // takes a place for each of its memories), so the pool needs a slot and a memory for each
    // place; past them, `EXTRA_SLOTS` for the instances that take no place, with room for two
    // memories each.
    let instances = max_instances.saturating_add(EXTRA_SLOTS);
    let memories = max_instances.saturating_add(EXTRA_SLOTS.saturating_mul(2));
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(24))
        .total_memories(memories)
        .total_tables(instances.saturating_mul(24))
        .total_stacks(instances)
        .max_core_instances_per_component(64)
        .max_memories_per_component(MAX_MEMORIES as u32)
        .max_tables_per_component(32)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(4 << 20)
        .max_memory_size(config.memory_limit)
        // Keep a few slots warm so a woken instance reuses mapped, zeroed memory.
        .max_unused_warm_slots(64)
        // Reset the pages an instance touched with memset instead of madvise, so the next
        // instance in the slot does not page-fault its way back in (PAGEMAP_SCAN finds them).
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(256 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);

    let mut cfg = wasmtime::Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .concurrency_support(false)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(functions) = functions {
        cfg.enable_incremental_compilation(functions)
            .map_err(|e| Error::Internal(format!("cannot use the compiled-function cache: {e}")))?;
    }
    Engine::new(&cfg).map_err(|e| match format!("{e:#}") {
        // The pool reserves every memory's address space up front (a 4 GiB reservation and its
        // guard each); a process has 128 TiB.
        e if e.contains("reserve") => Error::BadRequest(format!(
            "--max-instances {max_instances} is more than this process has address space for: each place \
             reserves over 4 GiB of virtual memory (a 64-bit process has 128 TiB, and `ulimit -v` may allow \
             less); lower --max-instances ({e})"
        )),
        e => Error::Internal(format!("cannot create the wasmtime engine: {e}")),
    })
}

/// Instance slots the pool has past `--max-instances`, for the instances that take no place
/// there (`object::residency`): the objects' spares, the worker's idle and spare instances
/// (each kept to that many memories), and callees that went over the bound rather than wait.
pub const EXTRA_SLOTS: u32 =
    (crate::object::MAX_SPARE_PLACES + crate::worker::MAX_IDLE + crate::worker::SPARES + CALLEES_OVER) as u32;

/// Room in the pool for callees over the bound on instances.
const CALLEES_OVER: usize = 32;

/// Linear memories one instance may have (wasmtime refuses to compile a component with more).
pub const MAX_MEMORIES: usize = 8;

/// The linear memories an instance of `component` has, at least 1: it takes a place for each
/// under `--max-instances`.
pub fn memories(component: &Component) -> usize {
    // None: it instantiates core modules it imports, whose memories are unknown here.
    component.resources_required().map_or(MAX_MEMORIES, |r| r.num_memories as usize).max(1)
}

/// Opens the compiled-function cache in the compile cache's `root`; without it (a read-only
/// folder, a damaged file) compiling only takes longer.
pub fn open_function_cache(root: &Path) -> Option<Arc<FunctionCache>> {
    match FunctionCache::open(root, function_cache::MAX_BYTES) {
        Ok(cache) => Some(Arc::new(cache)),
        Err(e) => {
            tracing::warn!("compiling without the compiled-function cache: {e}");
            None
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wdo-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch thread");
}

/// Runs `work` on every item, on up to one thread per core (compiling is most of a first
/// start, and one component's compile does not keep every core busy), taking items in order.
/// Results come back in the items' order.
pub fn on_all_cores<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(items.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { return done };
                        done.push((i, work(item)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("compiling does not panic")).collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// A short, stable fingerprint of everything that makes compiled code compatible.
pub fn fingerprint(engine: &Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            unreachable!("only the digest is read")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut sha = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut sha);
    hex::encode(&sha.0.finalize()[..8])
}

/// Compiles components, or loads them from the on-disk cache.
pub struct ComponentCache {
    engine: Engine,
    dir: PathBuf,
    /// The cache is this host's alone (under its data folder), so entries may be deleted.
    owned: bool,
}

/// A compiled component and the content hash it was compiled from.
pub struct Compiled {
    pub component: Component,
    pub hash: String,
    /// True when the machine code came from the cache (nothing was compiled).
    pub cached: bool,
}

impl ComponentCache {
    /// A cache under `root` (by default `<data>/cache`), in the engine fingerprint's folder.
    /// A cache other hosts may share (`owned` false) keeps what was used last, within a bound
    /// (`trim.rs`).
    pub fn new(engine: &Engine, root: &Path, owned: bool) -> Self {
        ComponentCache { engine: engine.clone(), dir: root.join(fingerprint(engine)), owned }
    }

    /// Deletes the compiled code of a component no longer deployed (if the cache is owned).
    pub fn forget(&self, hash: &str) {
        if !self.owned {
            return;
        }
        let path = self.dir.join(format!("{hash}.cwasm"));
        let _ = std::fs::remove_file(sum_path(&path));
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "cannot delete compiled component: {e}");
        }
    }

    /// Checks that `bytes` are a durable-object component and returns it compiled.
    pub fn load(&self, class: &str, bytes: &[u8], world: World) -> Result<Compiled> {
        let fail = |message: String| Error::Component { class: class.to_string(), message };
        check_header(bytes).map_err(fail)?;
        let hash = hex::encode(Sha256::digest(bytes));
        let path = self.dir.join(format!("{hash}.cwasm"));
        if path.exists() {
            match check_sum(&path) {
                Err(e) => tracing::warn!(path = %path.display(), "ignoring a damaged cache entry: {e}"),
                // SAFETY: the file was written by `serialize` of an engine with the same
                // fingerprint, its checksum matches the one `store` wrote beside it, and wasmtime
                // checks the header and version again.
                Ok(()) => match unsafe { Component::deserialize_file(&self.engine, &path) } {
                    Ok(component) => {
                        // The same bytes may have been cached for another world: check every time.
                        check_world(&self.engine, &component, world).map_err(fail)?;
                        if !self.owned {
                            trim::mark_used(&path);
                        }
                        return Ok(Compiled { component, hash, cached: true });
                    }
                    Err(e) => tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}"),
                },
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| fail(format!("is not a valid WebAssembly component: {e:#}")))?;
        check_world(&self.engine, &component, world).map_err(fail)?;
        self.store(&path, &component);
        Ok(Compiled { component, hash, cached: false })
    }

    /// Writes compiled code atomically (a temporary file of a name no other writer uses,
    /// synced, renamed into place), then its checksum beside it; a failure only costs a
    /// recompile next time.
    fn store(&self, path: &Path, component: &Component) {
        let result = (|| -> std::io::Result<()> {
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            std::fs::create_dir_all(&self.dir)?;
            let sum = hex::encode(Sha256::digest(&bytes));
            crate::files::write_atomically(path, &bytes, 0o600)?;
            crate::files::write_atomically(&sum_path(path), sum.as_bytes(), 0o600)
        })();
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}");
        }
        if !self.owned
            && let Some(root) = self.dir.parent()
        {
            trim::trim(root, trim::MAX_SHARED_BYTES, path);
        }
    }
}

/// Where the checksum of a compiled component's file is kept.
fn sum_path(path: &Path) -> PathBuf {
    path.with_extension("cwasm.sha256")
}

/// Checks a compiled component's file against the checksum written with it: a torn or damaged
/// file (or one written by something else) is never mapped as code.
fn check_sum(path: &Path) -> std::result::Result<(), String> {
    let expected = std::fs::read_to_string(sum_path(path)).map_err(|e| format!("no checksum beside it: {e}"))?;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != expected.trim() {
        return Err(format!("its contents hash to {actual}, not to the {} written with it", expected.trim()));
    }
    Ok(())
}

/// Tells a component from a core module or from something that is not WebAssembly at all.
pub fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("is not WebAssembly (the file does not start with `\\0asm`)".into());
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err("is a core WebAssembly module, not a component: build for \
             wasm32-wasip2 or wrap it with `wasm-tools component new`"
            .into()),
        _ => Err("is WebAssembly of an unknown version or layer".into()),
    }
}

/// Checks that the component exports the durable-object handler with all of its functions,
/// naming whatever is missing. (Types are checked again when the class is linked.)
pub fn check_world(engine: &Engine, component: &Component, world: World) -> Result<(), String> {
    let ty = component.component_type();
    let (name, wanted) = (world.name, world.export);
    let Some(export) = ty.get_export(engine, wanted) else {
        let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
        return Err(format!(
            "does not implement the world `{name}`: missing export `{wanted}` (it exports: {})",
            if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
        ));
    };
    let ComponentItem::ComponentInstance(instance) = export.ty else {
        return Err(format!("export `{wanted}` is not an interface instance"));
    };
    let missing: Vec<&str> =
        world.functions.iter().copied().filter(|f| instance.get_export(engine, f).is_none()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "does not implement the world `{name}`: export `{wanted}` lacks {}",
            missing.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

/// Where the optional `warm-up` function is, if the component exports it; a `warm-up` export
/// of another shape is refused, naming what it should be.
pub fn find_warm_up(component: &Component) -> Result<Option<ComponentExportIndex>, String> {
    let Some((interface, interface_index)) = component.get_export(None, WARM_UP_EXPORT) else {
        return Ok(None);
    };
    let shape = || format!("export `{WARM_UP_EXPORT}` must be an interface with `warm-up: func()`");
    if !matches!(interface, ComponentItem::ComponentInstance(_)) {
        return Err(shape());
    }
    match component.get_export(Some(&interface_index), "warm-up") {
        Some((ComponentItem::ComponentFunc(f), index)) if f.params().len() == 0 && f.results().len() == 0 => {
            Ok(Some(index))
        }
        _ => Err(shape()),
    }
}

#[cfg(test)]
mod tests {
    use super::{WARM_UP_EXPORT, check_header, find_warm_up};
    use wasmtime::component::Component;

    /// A component whose only export is an interface holding `warm-up` with these parameters.
    fn exporting_warm_up(core_params: &str, params: &str) -> String {
        format!(
            r#"(component
                 (core module $m (func (export "f") {core_params}))
                 (core instance $i (instantiate $m))
                 (func $f {params} (canon lift (core func $i "f")))
                 (instance $warm (export "warm-up" (func $f)))
                 (export "{WARM_UP_EXPORT}" (instance $warm)))"#
        )
    }

    #[test]
    fn the_warm_up_export_is_optional_and_must_be_a_function_of_nothing() {
        let engine = wasmtime::Engine::default();
        let load = |text: &str| Component::new(&engine, wat::parse_str(text).unwrap()).unwrap();
        assert!(find_warm_up(&load("(component)")).unwrap().is_none());
        assert!(find_warm_up(&load(&exporting_warm_up("", ""))).unwrap().is_some());
        let error = find_warm_up(&load(&exporting_warm_up("(param i32)", r#"(param "times" u32)"#))).unwrap_err();
        assert!(error.contains("must be an interface with `warm-up: func()`"), "{error}");
    }

    #[test]
    fn a_damaged_or_unchecked_cache_entry_is_compiled_again_never_loaded() {
        let engine = wasmtime::Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache = super::ComponentCache::new(&engine, dir.path(), true);
        let world = super::World { name: "test", export: WARM_UP_EXPORT, functions: &["warm-up"] };
        let bytes = wat::parse_str(exporting_warm_up("", "")).unwrap();
        let load = || cache.load("c", &bytes, world).unwrap();
        let first = load();
        assert!(!first.cached);
        assert!(load().cached, "a sound entry is loaded");
        let entry = cache.dir.join(format!("{}.cwasm", first.hash));
        let mut code = std::fs::read(&entry).unwrap();
        let last = code.len() - 1;
        code[last] ^= 0xff;
        std::fs::write(&entry, &code).unwrap();
        assert!(!load().cached, "a changed entry is compiled again");
        assert!(load().cached, "and written back whole");
        std::fs::remove_file(super::sum_path(&entry)).unwrap();
        assert!(!load().cached, "an entry without its checksum is compiled again");
        let leftovers: Vec<_> = std::fs::read_dir(&cache.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary files are left: {leftovers:?}");
    }

    /// A component of `memories` core instances of one memory each.
    fn with_memories(memories: usize) -> String {
        let instances: String = (0..memories)
            .map(|i| format!("(core module $m{i} (memory 1)) (core instance (instantiate $m{i}))"))
            .collect();
        format!("(component {instances})")
    }

    #[tokio::test]
    async fn the_pool_has_a_memory_for_each_place_under_the_bound_and_its_extra_slots() {
        let engine = super::new_engine(&crate::config::Config::default(), 16, None).unwrap();
        let load = |memories| Component::new(&engine, wat::parse_str(with_memories(memories)).unwrap()).unwrap();
        let (none, one, two) = (load(0), load(1), load(2));
        assert_eq!((super::memories(&none), super::memories(&one), super::memories(&two)), (1, 1, 2));
        let past = Component::new(&engine, wat::parse_str(with_memories(9)).unwrap()).unwrap_err();
        assert!(format!("{past:#}").contains("9 Wasm linear memories"), "refused at compile time: {past:#}");
        let linker = wasmtime::component::Linker::<()>::new(&engine);
        let fill = async |component: &Component, count: u32| {
            let mut store = wasmtime::Store::new(&engine, ());
            for made in 0..count {
                let instance = linker.instantiate_async(&mut store, component).await;
                assert!(instance.is_ok(), "instance {made} of {count}: {instance:?}");
            }
            linker.instantiate_async(&mut store, component).await.map(drop)
        };
        // 16 places: 16 instances of one memory or 8 of two, and past them the extra slots, of
        // up to two memories each; not one more.
        let extra = super::EXTRA_SLOTS;
        let past = fill(&one, 16 + extra).await.unwrap_err();
        assert!(format!("{past:#}").contains(&format!("limit of {} for component instances", 16 + extra)), "{past:#}");
        let past = fill(&two, 8 + extra).await.unwrap_err();
        assert!(format!("{past:#}").contains(&format!("limit of {} for memory", 16 + 2 * extra)), "{past:#}");
    }

    #[test]
    fn headers_tell_components_from_modules_and_junk() {
        assert!(check_header(b"\0asm\x0d\x00\x01\x00").is_ok());
        assert!(check_header(b"\0asm\x01\x00\x00\x00").unwrap_err().contains("core WebAssembly module"));
        assert!(check_header(b"hello world").unwrap_err().contains("not WebAssembly"));
        assert!(check_header(b"").unwrap_err().contains("not WebAssembly"));
    }
}
