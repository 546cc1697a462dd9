//! Outbound HTTP: requests a guest sends through the host to a server on loopback (in this
//! process), from one object and from many, beside the same request sent directly.

use crate::http_load::drive;
use crate::server::Server;
use crate::stats::Row;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A server answering every request `200 ok`.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

pub async fn measure(connections: usize, duration: Duration) -> Vec<Row> {
    let target = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let probe = crate::workspace().join("target/wasm32-wasip2/guest/probe.wasm");
    let manifest =
        format!("[classes.probe]\ncomponent = {:?}\noutbound = [\"{target}\"]\n", probe.display().to_string());
    let server = Server::start_text(&dir.path().join("data"), &manifest, &[]).await;
    let ask = Bytes::from(format!("{{\"url\": \"http://{target}/\"}}"));
    let mut rows = Vec::new();
    let mut run = async |name: String, addr: SocketAddr, clients: usize, body: Bytes, path: fn(usize) -> String| {
        let started = Instant::now();
        let (count, latencies, errors) = drive(addr, clients, duration, body, path).await;
        rows.push(Row { name, count, elapsed: started.elapsed(), latencies, errors });
    };
    run("direct to the loopback server (reference)".into(), target, 1, Bytes::new(), |_| "/".into()).await;
    run("one object, 1 client".into(), server.addr, 1, ask.clone(), |_| "/probe/a/fetch".into()).await;
    let name = format!("one object, {connections} clients");
    run(name, server.addr, connections, ask.clone(), |_| "/probe/a/fetch".into()).await;
    let name = format!("{connections} objects, {connections} clients");
    run(name, server.addr, connections, ask, |n| format!("/probe/o{}/fetch", n % 64)).await;
    server.kill().await;
    rows
}
