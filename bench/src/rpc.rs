//! Calls between objects (timed in the calling guest, so only the call itself is measured), and
//! the worker in front of an object over HTTP.

use crate::stats::Row;
use std::time::{Duration, Instant};
use wdo_host::{Config, Host, Request};

pub async fn object_to_object(calls: usize) -> Row {
    let data = tempfile::tempdir().unwrap();
    let config = Config { data_dir: data.path().to_path_buf(), ..Config::default() };
    let probe = crate::workspace().join("target/wasm32-wasip2/guest/probe.wasm");
    let host = Host::builder().config(config).class_file("probe", probe).build().unwrap();
    // Warm both objects up, then time `calls` sequential calls from a to b.
    host.fetch("probe", "a", Request::post("/rpc-loop?name=b&n=100", "")).await.unwrap();
    let started = Instant::now();
    let response = host.fetch("probe", "a", Request::post(&format!("/rpc-loop?name=b&n={calls}"), "")).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status, 200, "{}", response.text());
    let micros: Vec<u64> = serde_json_lite(&response.text());
    Row {
        name: "RPC between two objects (sequential, in-guest)".into(),
        count: micros.len(),
        elapsed,
        latencies: micros.into_iter().map(Duration::from_micros).collect(),
        errors: 0,
    }
}

/// Parses the JSON array of integers the probe answers (no JSON crate needed for that).
fn serde_json_lite(text: &str) -> Vec<u64> {
    text.trim_matches(|c| c == '[' || c == ']').split(',').filter_map(|n| n.trim().parse().ok()).collect()
}
