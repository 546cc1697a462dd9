//! Bringing back a dropped object, host side: `Host::fetch` in-process (no HTTP), for a warm
//! object, one whose instance was dropped (database still open), and one whose database was
//! closed too. The difference to the warm row is the cost of the wake-up itself. The last row
//! wakes one object that writes at every wake, which used to make its WAL (replayed at each
//! open) grow without end.

use crate::stats::Row;
use std::time::Instant;
use wdo_host::{Config, Host, Request};

/// Fetches after `before` has put the object in the state to measure, back to back; reads
/// round robin over 100 objects, or (`write_one`) increments of a single object.
async fn run(name: &str, host: &Host, wakes: usize, close_storage: Option<bool>, write_one: bool) -> Row {
    let mut latencies = Vec::with_capacity(wakes);
    let started = Instant::now();
    for i in 0..wakes {
        let object = if write_one { "busy".to_string() } else { format!("o{}", i % 100) };
        if let Some(close_storage) = close_storage {
            host.hibernate("counter", &object, close_storage).await.unwrap();
        }
        let request = if write_one { Request::post("/increment", "") } else { Request::get("/") };
        let t = Instant::now();
        let response = host.fetch("counter", &object, request).await.unwrap();
        latencies.push(t.elapsed());
        assert_eq!(response.status, 200);
    }
    Row { name: name.to_string(), count: wakes, elapsed: started.elapsed(), latencies, errors: 0 }
}

pub async fn measure(wakes: usize) -> Vec<Row> {
    let data = tempfile::tempdir().unwrap();
    let config = Config { data_dir: data.path().to_path_buf(), ..Config::default() };
    let host = Host::builder().config(config).class_file("counter", crate::counter_component()).build().unwrap();
    // Create the objects first, so every row measures existing objects.
    for i in 0..100 {
        host.fetch("counter", &format!("o{i}"), Request::post("/increment", "")).await.unwrap();
    }
    vec![
        run("wake: warm object (no wake-up), in-process", &host, wakes, None, false).await,
        run("wake: instance dropped, database open", &host, wakes, Some(false), false).await,
        run("wake: instance dropped and database closed", &host, wakes, Some(true), false).await,
        run("wake: the same, one object writing at each wake", &host, wakes, Some(true), true).await,
    ]
}
