use super::{FILE_NAME, FunctionCache, MAX_BYTES};
use std::sync::Arc;
use wasmtime::CacheStore;
use wasmtime::component::{Component, Linker};

/// A component whose code is the same whatever `tag` is (only its data differs), like two
/// components of one language runtime: `f(x)` is `3x + 7`, through a chain of functions.
fn component_text(tag: &str) -> String {
    format!(
        r#"(component
             (core module $m
               (memory 1)
               (data (i32.const 0) "{tag}")
               (func $triple (param i32) (result i32) local.get 0 i32.const 3 i32.mul)
               (func $plus_seven (param i32) (result i32) local.get 0 i32.const 7 i32.add)
               (func (export "f") (param i32) (result i32) local.get 0 call $triple call $plus_seven))
             (core instance $i (instantiate $m))
             (func (export "f") (param "x" u32) (result u32) (canon lift (core func $i "f"))))"#
    )
}

/// Compiles the component of `tag` on a new engine using the cache in `dir`, runs `f(5)`, and
/// says what the cache did.
fn compile_and_run(dir: &std::path::Path, tag: &str) -> (u32, super::FunctionCacheStats) {
    let cache = Arc::new(FunctionCache::open(dir, MAX_BYTES).unwrap());
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).enable_incremental_compilation(cache.clone()).unwrap();
    let engine = wasmtime::Engine::new(&config).unwrap();
    let component = Component::new(&engine, wat::parse_str(component_text(tag)).unwrap()).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = Linker::<()>::new(&engine).instantiate(&mut store, &component).unwrap();
    let f = instance.get_typed_func::<(u32,), (u32,)>(&mut store, "f").unwrap();
    let (result,) = f.call(&mut store, (5,)).unwrap();
    (result, cache.stats())
}

#[test]
fn a_component_of_functions_compiled_before_compiles_none_of_them_again_and_runs_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (result, first) = compile_and_run(dir.path(), "first app");
    assert_eq!(result, 22);
    assert_eq!(first.hits, 0, "an empty cache has nothing: {first:?}");
    assert!(first.added >= 3, "each of the three functions is added: {first:?}");

    // Another process, another component with the same code.
    let (result, second) = compile_and_run(dir.path(), "second app, other data");
    assert_eq!(result, 22);
    assert!(second.hits >= 3, "the three functions come from the cache: {second:?}");
    // Not always every unit: some of wasmtime's own trampolines come out with another hash
    // from one compile to the next (seen: 1 or 2 of 8, in a quarter of the runs, even for the
    // very same component), and are compiled again.
    assert!(second.added < first.added, "less was compiled the second time: {first:?} then {second:?}");
}

#[test]
fn a_damaged_entry_is_compiled_again_never_run() {
    let dir = tempfile::tempdir().unwrap();
    compile_and_run(dir.path(), "first app");
    // Flip one byte of every stored function's code.
    let db = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> = db
        .prepare("SELECT key, value FROM functions")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!rows.is_empty());
    for (key, mut value) in rows {
        let middle = value.len() / 2;
        value[middle] ^= 0x55;
        db.execute("UPDATE functions SET value = ?1 WHERE key = ?2", rusqlite::params![value, key]).unwrap();
    }
    drop(db);

    let (result, after) = compile_and_run(dir.path(), "first app");
    assert_eq!(result, 22, "the damaged code was not run");
    assert_eq!(after.hits, 0, "no damaged entry was used: {after:?}");
    assert!(after.added >= 3, "each was compiled and written back whole: {after:?}");
    let (_, again) = compile_and_run(dir.path(), "first app");
    assert!(again.hits >= 3, "{again:?}");
}

#[test]
fn a_full_cache_empties_and_starts_over_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 256 << 10;
    let cache = FunctionCache::open(dir.path(), max_bytes).unwrap();
    let value = |i: u32| vec![i as u8; 3000];
    // Four times what fits, one entry at a time.
    for i in 0..350u32 {
        assert!(cache.insert(&i.to_le_bytes(), value(i)), "entry {i} is taken");
        assert_eq!(cache.get(&i.to_le_bytes()).as_deref(), Some(&value(i)[..]), "entry {i} reads back");
    }
    let db = cache.db.lock().unwrap();
    let pages: i64 = db.query_row("PRAGMA page_count", [], |row| row.get(0)).unwrap();
    let page_size: i64 = db.query_row("PRAGMA page_size", [], |row| row.get(0)).unwrap();
    assert!((pages * page_size) as u64 <= max_bytes, "{pages} pages of {page_size} bytes");
    let kept: i64 = db.query_row("SELECT count(*) FROM functions", [], |row| row.get(0)).unwrap();
    assert!(kept > 0 && kept < 350, "it was emptied at least once: {kept} entries");
    drop(db);
    assert!(cache.get(&0u32.to_le_bytes()).is_none(), "the oldest entries went");
}
