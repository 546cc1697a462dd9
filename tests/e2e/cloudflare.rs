//! Durable Object projects written for Cloudflare, served unchanged with `wdo serve
//! wrangler.toml`: the examples under `examples/cloudflare/` and the API probe.

use crate::harness::{Server, shared_cache, workspace};
use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    workspace().join("examples/cloudflare").join(name).join("wrangler.toml")
}

fn serve(config: &std::path::Path, data: &std::path::Path) -> Server {
    Server::start(config, data, &["--cache-dir", &shared_cache()], None)
}

/// Cloudflare's getting-started counter: a worker reaching one object per name over RPC.
#[tokio::test(flavor = "multi_thread")]
async fn the_counter_example_runs_as_written_for_cloudflare() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&example("counter"), &dir.path().join("data"));
    let said = |name: &str, count: i64| (200, format!("Durable Object '{name}' count: {count} (served by wdo)"));
    assert_eq!(server.get("/?name=A").await, said("A", 0));
    assert_eq!(server.get("/increment?name=A").await, said("A", 1));
    assert_eq!(server.get("/increment?name=A").await, said("A", 2));
    assert_eq!(server.get("/decrement?name=B").await, said("B", -1));
    assert_eq!(server.get("/?name=A").await, said("A", 2));
    let (status, body) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("`name` URL query string"), "{body}");
    assert_eq!(server.get("/other?name=A").await, (404, "Not found".into()));
    // The class is a wdo class named by its class_name: its own route reaches the same object.
    let (status, body) = server.get("/fetch?name=A").await;
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["name"], "A");
    assert_eq!(seen["id"].as_str().unwrap().len(), 64);

    // The count is durable: a restart (no rebuild: the components come from .wdo-build) keeps it.
    server.kill();
    let server = serve(&example("counter"), &dir.path().join("data"));
    assert_eq!(server.get("/?name=A").await, said("A", 2));
    assert!(!server.log().contains("componentize-js"), "rebuilt a project that did not change:\n{}", server.log());
}
