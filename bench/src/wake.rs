//! Bringing back a dropped object, host side: `Host::fetch` in-process (no HTTP), for a warm
//! object, one whose instance was dropped (database still open), and one whose database was
//! closed too. The difference to the warm row is the cost of the wake-up itself.

use crate::stats::Row;
use std::time::Instant;
use wdo_host::{Config, Host, Request};

/// Fetches after `before` has put the object in the state to measure, back to back.
async fn run(name: &str, host: &Host, wakes: usize, close_storage: Option<bool>) -> Row {
    let mut latencies = Vec::with_capacity(wakes);
    let started = Instant::now();
    for i in 0..wakes {
        let object = format!("o{}", i % 100);
        if let Some(close_storage) = close_storage {
            host.hibernate("counter", &object, close_storage).await.unwrap();
        }
        let t = Instant::now();
        let response = host.fetch("counter", &object, Request::get("/")).await.unwrap();
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
        run("wake: warm object (no wake-up), in-process", &host, wakes, None).await,
        run("wake: instance dropped, database open", &host, wakes, Some(false)).await,
        run("wake: instance dropped and database closed", &host, wakes, Some(true)).await,
    ]
}
