//! `wdo serve` refuses to start on a bad manifest or component, and says exactly why.

use crate::harness::{Site, guest, start_failure};

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
