//! The host as a library: classes from bytes, requests without HTTP.

use crate::harness::guest;
use wdo_host::{Config, Error, Host, Request};

fn host(data: &std::path::Path) -> Host {
    let probe = std::fs::read(guest("probe")).unwrap();
    let config = Config { data_dir: data.to_path_buf(), ..Config::default() };
    Host::builder().config(config).class("probe", probe).class_file("counter", guest("counter")).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_host_serves_requests_in_process() {
    let data = tempfile::tempdir().unwrap();
    let host = host(data.path());
    assert_eq!(host.class_names(), ["counter", "probe"]);
    let r = host.fetch("counter", "alice", Request::post("/increment", "")).await.unwrap();
    assert_eq!((r.status, r.text()), (200, "1".to_string()));
    let r = host.fetch("probe", "p", Request::get("/get?key=k")).await.unwrap();
    assert_eq!(r.status, 404);
    match host.fetch("nope", "x", Request::get("/")).await {
        Err(e @ Error::UnknownClass { .. }) => assert_eq!(e.status(), 404),
        other => panic!("expected an unknown class error, got {other:?}"),
    }
    match host.fetch("probe", "p", Request::post("/trap", "")).await {
        Err(e @ Error::EventFailed { .. }) => assert!(e.to_string().contains("deliberate panic"), "{e}"),
        other => panic!("expected the trap to fail the event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernate_drops_the_instance_and_keeps_the_data() {
    let data = tempfile::tempdir().unwrap();
    let host = host(data.path());
    let instance_events = |r: wdo_host::Response| r.text().parse::<u32>().unwrap();
    host.fetch("probe", "h", Request::post("/put?key=k", "kept")).await.unwrap();
    assert_eq!(instance_events(host.fetch("probe", "h", Request::get("/instance")).await.unwrap()), 2);
    for close_storage in [false, true] {
        host.hibernate("probe", "h", close_storage).await.unwrap();
        assert_eq!(instance_events(host.fetch("probe", "h", Request::get("/instance")).await.unwrap()), 1);
        let r = host.fetch("probe", "h", Request::get("/get?key=k")).await.unwrap();
        assert_eq!(r.text(), "kept");
    }
    // One host per data folder; a new host on it, once the first is gone, finds the data.
    let config = Config { data_dir: data.path().to_path_buf(), ..Config::default() };
    let err = Host::builder().config(config).build().err().expect("the folder is in use");
    assert!(err.to_string().contains("in use by another wdo host"), "{err}");
    drop(host);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await; // actors close their databases
    let host = self::host(data.path());
    assert_eq!(host.fetch("probe", "h", Request::get("/get?key=k")).await.unwrap().text(), "kept");
}
