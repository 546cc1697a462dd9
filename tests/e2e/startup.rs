//! `wdo serve` refuses to start on a bad manifest or component, and says exactly why; it
//! listens at once and serves each class as soon as its code is compiled; `wdo compile` does
//! the compiling ahead of time.

use crate::harness::{Client, Server, Site, guest, start_failure, start_failure_with};
use std::process::Command;
use std::time::Duration;

#[test]
fn a_missing_or_invalid_manifest_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let err = start_failure(&dir.path().join("absent.toml"), &dir.path().join("data"));
    assert!(err.contains("absent.toml") && err.contains("not found"), "{err}");

    let manifest = dir.path().join("wdo.toml");
    std::fs::write(&manifest, "[classes.counter]\ncomponnt = \"x.wasm\"\n").unwrap();
    let err = start_failure(&manifest, &dir.path().join("data"));
    assert!(err.contains("unknown field `componnt`"), "{err}");

    std::fs::write(&manifest, "[classes.counter]\ncomponent = \"missing.wasm\"\n").unwrap();
    let err = start_failure(&manifest, &dir.path().join("data"));
    assert!(err.contains("class `counter`") && err.contains("missing.wasm"), "{err}");
}

#[test]
fn more_instances_than_the_address_space_holds_stop_the_start_with_the_flag_named() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(&[("counter", guest("counter"))]);
    let err = start_failure_with(&site.manifest(), &dir.path().join("data"), &["--max-instances", "100000"]);
    assert!(err.contains("--max-instances 100000") && err.contains("address space"), "{err}");
}

#[test]
fn files_that_are_not_components_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, "this is not wasm").unwrap();
    let err = start_failure(&Site::new(&[("junk", junk)]).manifest(), &dir.path().join("d1"));
    assert!(err.contains("class `junk`") && err.contains("is not WebAssembly"), "{err}");

    let module = dir.path().join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let err = start_failure(&Site::new(&[("module", module)]).manifest(), &dir.path().join("d2"));
    assert!(err.contains("core WebAssembly module, not a component"), "{err}");
}

#[test]
fn a_component_of_another_world_stops_the_start_naming_the_missing_export() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(&[("other", guest("other-world"))]);
    let err = start_failure(&site.manifest(), &dir.path().join("data"));
    assert!(err.contains("class `other`"), "{err}");
    assert!(err.contains("missing export `wdo:object/handler@0.1.0`"), "{err}");
    assert!(err.contains("greet"), "it says what the component does export: {err}");
}

#[test]
fn a_second_host_on_the_same_data_folder_is_refused() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let _first = site.start(&[]);
    let err = start_failure(&site.manifest(), &site.data());
    assert!(err.contains("is in use by another wdo host"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn classes_serve_as_they_are_compiled_and_a_request_for_one_still_compiling_waits() {
    // An empty compile cache: the JavaScript counter compiles for seconds, the Rust one for
    // a fraction of one.
    let site = Site::new(&[("counter", guest("counter")), ("slow", guest("counter-js"))]);
    let cache = site.dir.path().join("cache");
    // The compile takes ~30 s of CPU on a 2-core VM at a third of its pace: give the request
    // that waits for it (and the host's wait for the class) five minutes, not one.
    let flags = ["--cache-dir", cache.to_str().unwrap(), "--event-timeout", "300s"];
    let mut server = Server::start_listening(&site.manifest(), &site.data(), &flags);
    let addr = server.addr;
    let waiting = tokio::spawn(async move {
        let mut client = Client::connect(addr).await.patient(Duration::from_secs(300));
        client.send("POST", "/slow/a/increment", "").await
    });
    assert_eq!(server.post("/counter/a/increment", "").await, (200, "1".into()), "{}", server.log());
    assert!(
        !waiting.is_finished() && !server.log().contains("slow ready"),
        "the Rust class served while the JavaScript one was still compiling: {}",
        server.log()
    );
    // The request sent while `slow` compiled waited for it instead of failing as unknown.
    assert_eq!(waiting.await.unwrap(), (200, "1".into()), "{}", server.log());
    assert!(server.log().contains("[2/2] slow ready (compiled)"), "{}", server.log());
    // Unknown classes are still unknown, at once.
    assert_eq!(server.post("/nothing/a/increment", "").await.0, 404);
    assert!(server.next_line().starts_with("wdo ready: every class serves"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wdo_compile_fills_the_cache_a_host_then_serves_from() {
    let site = Site::new(&[("counter", guest("counter")), ("ticket", guest("ticket")), ("room", guest("room"))]);
    let cache = site.dir.path().join("cache");
    let compile = || {
        let output = wdo_compile(&site.manifest(), &cache);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let first = compile();
    assert!(first.contains("compiling 3 component(s)") && first.contains("[3/3]"), "{first}");
    assert_eq!(first.matches(": compiled").count(), 3, "{first}");
    assert_eq!(compile().matches(": already in the cache").count(), 3, "a second run compiles nothing");

    let server = site.start(&["--cache-dir", cache.to_str().unwrap()]);
    assert_eq!(server.post("/ticket/a", "").await.0, 200, "{}", server.log());
    assert_eq!(server.log().matches("ready (from the compile cache)").count(), 3, "{}", server.log());

    // A component that does not compile fails `wdo compile` with its class named.
    std::fs::write(site.dir.path().join("junk.wasm"), "junk").unwrap();
    let bad = Site::new(&[("junk", site.dir.path().join("junk.wasm"))]);
    let output = wdo_compile(&bad.manifest(), &cache);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && said.contains("class `junk`"), "{said}");
}

/// `wdo compile MANIFEST --cache-dir CACHE`.
fn wdo_compile(manifest: &std::path::Path, cache: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wdo")).arg("compile").arg(manifest).arg("--cache-dir").arg(cache).output().unwrap()
}

/// Parses `wdo compile`'s last line: `functions: C compiled, H from the cache`.
fn functions_line(said: &str) -> (u64, u64) {
    let line =
        said.lines().find(|l| l.starts_with("functions: ")).unwrap_or_else(|| panic!("no functions line: {said}"));
    let numbers: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    (numbers[0], numbers[1])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_class_never_compiled_before_takes_its_runtimes_functions_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let compile = |site: &Site| {
        let output = wdo_compile(&site.manifest(), &cache);
        let said = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{said}");
        said
    };
    // Two components of one language runtime: only their JavaScript differs.
    let counter = Site::new(&[("counter", guest("counter-js"))]);
    let (compiled, _) = functions_line(&compile(&counter));
    assert!(compiled > 5_000, "the runtime's functions were compiled: {compiled}");
    let room = Site::new(&[("room", guest("room-js"))]);
    let said = compile(&room);
    let (compiled, from_cache) = functions_line(&said);
    assert!(from_cache > 5_000 && compiled * 5 < from_cache, "most came from the cache: {said}");

    // What came from the cache runs as compiled code does.
    let server = room.start(&["--cache-dir", cache.to_str().unwrap()]);
    assert!(server.log().contains("ready (from the compile cache)"), "{}", server.log());
    let (status, body) = server.get("/room/lobby").await;
    assert!(status == 426 && body.contains("expects a WebSocket upgrade"), "{status} {body}: {}", server.log());
    drop(server);

    // A damaged cache file only costs the compile time: it is replaced, never run.
    std::fs::write(cache.join("functions.sqlite"), vec![0x5a; 64 << 10]).unwrap();
    let ticket = Site::new(&[("ticket", guest("ticket-js"))]);
    let said = compile(&ticket);
    assert!(said.contains("is damaged: starting a new compiled-function cache"), "{said}");
    let (compiled, _) = functions_line(&said);
    assert!(compiled > 5_000, "{said}");
    let server = ticket.start(&["--cache-dir", cache.to_str().unwrap()]);
    assert_eq!(server.post("/ticket/t", "").await, (200, r#"{"ticket":1}"#.into()), "{}", server.log());
}
