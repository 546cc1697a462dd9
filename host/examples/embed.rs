//! Embeds a wdo host in a Rust program and talks to an object without HTTP.
//!
//! Run it after `make build`:
//! `cargo run --release -p wdo-host --example embed -- target/wasm32-wasip2/guest/counter.wasm`
use wdo_host::{Config, Host, Request};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let component = std::env::args().nth(1).ok_or("usage: embed <counter.wasm>")?;
    let data = std::env::temp_dir().join("wdo-embed-example");
    let host = Host::builder()
        .config(Config { data_dir: data, ..Config::default() })
        .class_file("counter", component)
        .build()?;

    // In-process: no HTTP, same guarantees (one instance, serialized events, one transaction).
    let response = host.fetch("counter", "alice", Request::post("/increment", "")).await?;
    println!("alice is now {}", response.text());

    // Or serve it over HTTP like `wdo serve`:
    // host.serve(tokio::net::TcpListener::bind("127.0.0.1:8787").await?).await?;
    Ok(())
}
