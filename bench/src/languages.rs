//! The same counter in Rust, JavaScript and Python (examples/counter, counter-js, counter-py):
//! bringing back a dropped object, and the memory each live instance costs. In-process, like
//! `wake.rs`, but with wakes `--wake-gap` apart (default 3 ms) (as objects wake in practice, not back to back), which
//! leaves the host time to make spare instances of the slow-to-instantiate classes.

use crate::stats::Row;
use std::time::Instant;
use wdo_host::{Config, Host, Request};

const LANGUAGES: [(&str, &str); 3] = [("rust", "counter"), ("javascript", "counter-js"), ("python", "counter-py")];

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Page faults this process has taken (minor ones: pages mapped or copied on first touch).
fn page_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; minflt is the 10th field of the line.
    let fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    fields.split_whitespace().nth(7).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// Brings back dropped objects one at a time; also returns the page faults per bring back
/// (a fresh instance copies each page of its memory image that its first event writes to).
pub async fn wake(
    host: &Host,
    class: &str,
    label: &str,
    wakes: usize,
    close_storage: bool,
    gap: std::time::Duration,
) -> (Row, u64) {
    let mut latencies = Vec::with_capacity(wakes);
    let mut faults = 0;
    let started = Instant::now();
    for i in 0..wakes {
        let object = format!("o{}", i % 100);
        host.hibernate(class, &object, close_storage).await.unwrap();
        let faults_before = page_faults();
        let t = Instant::now();
        let response = host.fetch(class, &object, Request::get("/")).await.unwrap();
        latencies.push(t.elapsed());
        faults += page_faults() - faults_before;
        assert_eq!(response.status, 200);
        // Wakes a few milliseconds apart, as objects wake in practice: time to make spares.
        tokio::time::sleep(gap).await;
    }
    let what = if close_storage { "instance + database" } else { "instance dropped" };
    let row = Row {
        name: format!("bring back ({what}): {label}"),
        count: wakes,
        elapsed: started.elapsed(),
        latencies,
        errors: 0,
    };
    (row, faults / wakes.max(1) as u64)
}

pub async fn measure(wakes: usize, live: usize, gap: std::time::Duration) -> (Vec<Row>, Vec<String>) {
    let data = tempfile::tempdir().unwrap();
    let guests = crate::workspace().join("target/wasm32-wasip2/guest");
    let config = Config {
        data_dir: data.path().to_path_buf(),
        cache_dir: Some(crate::workspace().join("target/wdo-cache")),
        max_open_objects: live + 200,
        max_instances: live + 200,
        ..Config::default()
    };
    let mut builder = Host::builder().config(config);
    for (_, class) in LANGUAGES {
        builder = builder.class_file(class, guests.join(format!("{}.wasm", class.replace('-', "_"))));
    }
    let host = tokio::task::block_in_place(|| builder.build()).unwrap();
    let mut rows = Vec::new();
    let mut memory = Vec::new();
    for (language, class) in LANGUAGES {
        for i in 0..100 {
            host.fetch(class, &format!("o{i}"), Request::post("/increment", "")).await.unwrap();
        }
        let (row, faults) = wake(&host, class, language, wakes / 4, false, gap).await;
        rows.push(row);
        rows.push(wake(&host, class, language, wakes / 4, true, gap).await.0);
        // Memory per live instance: bring `live` objects to life and keep them.
        for i in 0..100 {
            host.hibernate(class, &format!("o{i}"), true).await.unwrap();
        }
        let before = rss();
        for i in 0..live {
            host.fetch(class, &format!("live{i}"), Request::post("/increment", "")).await.unwrap();
        }
        let per_instance = rss().saturating_sub(before) / live as u64;
        memory.push(format!(
            "memory per live instance: {language:<10} {:>8.0} KiB ({live} live objects, instance + open database); \
             {faults} page faults per bring back",
            per_instance as f64 / 1024.0
        ));
    }
    (rows, memory)
}
