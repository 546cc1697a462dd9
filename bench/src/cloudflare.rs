//! What the Cloudflare layer costs: the product-page counter written for Cloudflare
//! (examples/cloudflare/counter: a worker calling the object over RPC) next to the plain
//! JavaScript SDK's counter (examples/counter-js). Bring back in-process, like `languages.rs`;
//! hot requests over HTTP, like `http_load.rs`; and the components' sizes.

use crate::http_load::drive;
use crate::server::Server;
use crate::stats::Row;
use bytes::Bytes;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wdo_host::{Config, Host};

/// The Cloudflare counter's components, built (or found in its .wdo-build) by `wdo build`.
fn built() -> (PathBuf, PathBuf) {
    let config = crate::workspace().join("examples/cloudflare/counter/wrangler.toml");
    let output = std::process::Command::new(crate::workspace().join("target/release/wdo"))
        .arg("build")
        .arg(&config)
        .env("WDO_LOG", "error")
        .output()
        .expect("run target/release/wdo build (make build)");
    assert!(output.status.success(), "wdo build: {}", String::from_utf8_lossy(&output.stderr));
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    let path = |prefix: &str| {
        said.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{prefix} in {said}"))
    };
    (path("class Counter: "), path("worker: "))
}

fn size(path: &PathBuf) -> String {
    format!("{:.1} MB", std::fs::metadata(path).map_or(0, |m| m.len()) as f64 / 1e6)
}

pub async fn measure(wakes: usize, gap: Duration, connections: usize, duration: Duration) -> (Vec<Row>, Vec<String>) {
    let (objects, worker) = built();
    let plain = crate::workspace().join("target/wasm32-wasip2/guest/counter_js.wasm");
    let mut rows = Vec::new();

    // Bring back: GET / of a dropped object (the plain counter reads its value and answers
    // text; the Cloudflare class answers JSON with its URL and id).
    let data = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: data.path().to_path_buf(),
        cache_dir: Some(crate::workspace().join("target/wdo-cache")),
        ..Config::default()
    };
    let builder = Host::builder().config(config).class_file("counter-js", &plain).class_file("Counter", &objects);
    let host = tokio::task::block_in_place(|| builder.build()).unwrap();
    for (label, class) in [("javascript SDK", "counter-js"), ("cloudflare layer", "Counter")] {
        for i in 0..100 {
            host.fetch(class, &format!("o{i}"), wdo_host::Request::get("/")).await.unwrap();
        }
        rows.push(crate::languages::wake(&host, class, label, wakes / 4, false, gap).await.0);
    }
    drop(host);

    // Hot requests over HTTP, one object.
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&dir.path().join("data"), &[("counter-js", plain.clone()), ("Counter", objects.clone())], &[])
            .await;
    for (name, path) in [
        ("javascript SDK: POST /counter-js/hot/increment", "/counter-js/hot/increment"),
        ("cloudflare layer: POST /Counter/hot/ (fetch → JSON)", "/Counter/hot/"),
    ] {
        let started = Instant::now();
        let (count, latencies, errors) =
            drive(server.addr, connections, duration, Bytes::new(), move |_| path.into()).await;
        rows.push(Row {
            name: format!("one hot object, {name}"),
            count,
            elapsed: started.elapsed(),
            latencies,
            errors,
        });
    }
    // One request at a time: the latency the worker row below adds to.
    rows.push(
        sequential(&server, "cloudflare object alone: POST /Counter/c<n>/ (100 counters)", duration, |n| {
            format!("/Counter/c{}/", n % 100)
        })
        .await,
    );
    server.kill().await;

    // The whole Cloudflare project: worker → RPC `increment()` → object, as the Rust
    // worker-counter row of the rpc group does it; with a fresh worker instance per request
    // (wdo's default), and with instances reused (`wdo serve` of a wrangler project).
    for (mode, setting) in [("fresh instances", ""), ("reused instances", "reuse_instances = true\n")] {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[classes.Counter]\ncomponent = {:?}\nvars = {{ GREETING = \"bench\" }}\n[worker]\ncomponent = {:?}\n{setting}vars = {{ GREETING = \"bench\" }}\n",
            objects.display().to_string(),
            worker.display().to_string()
        );
        let server = Server::start_text(
            &dir.path().join("data"),
            &text,
            &["--cache-dir", &crate::workspace().join("target/wdo-cache").display().to_string()],
        )
        .await;
        let started = Instant::now();
        let (count, latencies, errors) =
            drive(server.addr, connections, duration, Bytes::new(), |n| format!("/increment?name=c{}", n % 100)).await;
        rows.push(Row {
            name: format!("cloudflare worker ({mode}) → RPC increment(), 100 counters"),
            count,
            elapsed: started.elapsed(),
            latencies,
            errors,
        });
        // What a JavaScript worker adds to a request, against the object alone above.
        let worker_row = format!("cloudflare worker ({mode}) → RPC increment(), one connection");
        rows.push(sequential(&server, &worker_row, duration, |n| format!("/increment?name=c{}", n % 100)).await);
        server.kill().await;
    }

    let sizes = vec![format!(
        "component sizes: javascript SDK counter {}, cloudflare objects {} (every class of the project), cloudflare worker {}",
        size(&plain),
        size(&objects),
        size(&worker)
    )];
    (rows, sizes)
}

/// Requests one at a time over one connection, for their latency.
async fn sequential(server: &Server, name: &str, duration: Duration, path: fn(usize) -> String) -> Row {
    let started = Instant::now();
    let (count, latencies, errors) = drive(server.addr, 1, duration, Bytes::new(), path).await;
    Row { name: format!("{name} (sequential)"), count, elapsed: started.elapsed(), latencies, errors }
}
