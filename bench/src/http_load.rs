//! Load over HTTP keep-alive against a real `wdo serve`.

use crate::server::Server;
use crate::stats::Row;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

async fn start(flags: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[("counter", crate::counter_component())], flags).await;
    (server, dir)
}

/// Each connection sends requests back to back until the time is up: POSTs of `body` to the
/// paths `path` gives (an empty path ends the connection's run).
pub async fn drive(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    body: Bytes,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
) -> (usize, Vec<Duration>, usize) {
    drive_spread(&[addr], connections, duration, body, path).await
}

/// Like [`drive`], the connections spread over several hosts in turn.
pub async fn drive_spread(
    addrs: &[SocketAddr],
    connections: usize,
    duration: Duration,
    body: Bytes,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
) -> (usize, Vec<Duration>, usize) {
    let path = std::sync::Arc::new(path);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (path, body) = (path.clone(), body.clone());
        let addr = addrs[connection % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let (mut latencies, mut errors, mut n) = (Vec::new(), 0, 0);
            while Instant::now() < deadline {
                let path = path(connection + n * connections);
                if path.is_empty() {
                    break;
                }
                let request = hyper::Request::post(path).header("host", "bench").body(Full::new(body.clone())).unwrap();
                let started = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                let ok = response.status() == 200;
                response.into_body().collect().await.unwrap();
                latencies.push(started.elapsed());
                errors += usize::from(!ok);
                n += 1;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.unwrap();
        all.extend(latencies);
        errors += e;
    }
    (all.len(), all, errors)
}

pub async fn hot_object(durability: &str, connections: usize, duration: Duration) -> Row {
    let (server, _dir) = start(&["--durability", durability]).await;
    let started = Instant::now();
    let (count, latencies, errors) =
        drive(server.addr, connections, duration, Bytes::new(), |_| "/counter/hot/increment".into()).await;
    let row = Row {
        name: format!("one hot object, --durability {durability}"),
        count,
        elapsed: started.elapsed(),
        latencies,
        errors,
    };
    server.kill().await;
    row
}

/// First touch of `objects` new objects (each creates its database), then round robin over
/// them (each request reopens a database closed to stay under the open-files bound).
pub async fn many_objects(objects: usize, connections: usize, duration: Duration) -> Vec<Row> {
    let (server, _dir) = start(&[]).await;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let counter = next.clone();
    let (count, latencies, errors) =
        drive(server.addr, connections, Duration::from_secs(3600), Bytes::new(), move |_| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n < objects { format!("/counter/o{n}/increment") } else { String::new() }
        })
        .await;
    let first = Row {
        name: format!("{objects} new objects, first touch"),
        count,
        elapsed: started.elapsed(),
        latencies,
        errors,
    };
    let started = Instant::now();
    let (count, latencies, errors) = drive(server.addr, connections, duration, Bytes::new(), move |n| {
        format!("/counter/o{}/increment", n % objects)
    })
    .await;
    let round =
        Row { name: format!("{objects} objects round robin"), count, elapsed: started.elapsed(), latencies, errors };
    server.kill().await;
    vec![first, round]
}

/// The worker-counter example: every request goes through the worker to a Counter by RPC.
pub async fn worker_to_object(connections: usize, duration: Duration) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let guest = crate::workspace().join("target/wasm32-wasip2/guest");
    let server = Server::start_with_worker(
        &dir.path().join("data"),
        &[("counter", guest.join("worker_counter_object.wasm"))],
        &guest.join("worker_counter_worker.wasm"),
    )
    .await;
    let started = Instant::now();
    let (count, latencies, errors) =
        drive(server.addr, connections, duration, Bytes::new(), |n| format!("/increment?name=c{}", n % 100)).await;
    let row =
        Row { name: "worker → object, 100 counters".into(), count, elapsed: started.elapsed(), latencies, errors };
    server.kill().await;
    row
}

/// What a JavaScript or Python worker (the SDKs' `tests/guests/worker-*`, in front of the
/// counter of its language) adds to a request, one at a time over 100 counters: the object alone,
/// then through the worker with a fresh instance per request and with `reuse_instances`.
pub async fn sdk_workers(duration: Duration) -> Vec<Row> {
    let guest = crate::workspace().join("target/wasm32-wasip2/guest");
    let cache = crate::workspace().join("target/wdo-cache").display().to_string();
    let mut rows = Vec::new();
    for language in ["js", "py"] {
        let object = guest.join(format!("counter_{language}.wasm")).display().to_string();
        let worker = guest.join(format!("worker_{language}.wasm")).display().to_string();
        for (mode, worker_table) in [
            ("object alone", String::new()),
            ("worker, fresh instances", format!("[worker]\ncomponent = {worker:?}\n")),
            ("worker, reused instances", format!("[worker]\ncomponent = {worker:?}\nreuse_instances = true\n")),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let text = format!("[classes.counter-{language}]\ncomponent = {object:?}\n{worker_table}");
            let server = Server::start_text(&dir.path().join("data"), &text, &["--cache-dir", &cache]).await;
            let alone = worker_table.is_empty();
            let path = move |n: usize| match alone {
                true => format!("/counter-{language}/c{}/increment", n % 100),
                false => format!("/increment?name=c{}", n % 100),
            };
            let started = Instant::now();
            let (count, latencies, errors) = drive(server.addr, 1, duration, Bytes::new(), path).await;
            let name = format!("{language} counter, {mode} (sequential)");
            rows.push(Row { name, count, elapsed: started.elapsed(), latencies, errors });
            server.kill().await;
        }
    }
    rows
}

/// One keep-alive connection, for scenarios that drive requests one by one.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Connection {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Connection { sender }
    }

    async fn send(&mut self, method: hyper::Method, path: &str) -> (u16, Bytes) {
        self.send_with(method, path, &[]).await
    }

    /// With these request headers.
    pub async fn send_with(&mut self, method: hyper::Method, path: &str, headers: &[(&str, &str)]) -> (u16, Bytes) {
        let mut request = hyper::Request::builder().method(method).uri(path).header("host", "bench");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::new())).unwrap();
        let answered = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status().as_u16();
            Ok::<_, hyper::Error>((status, response.into_body().collect().await?.to_bytes()))
        };
        answered.await.unwrap_or_else(|e| (0, Bytes::from(format!("no answer: {e}"))))
    }

    pub async fn post(&mut self, path: &str) -> u16 {
        self.send(hyper::Method::POST, path).await.0
    }

    pub async fn get_text(&mut self, path: &str) -> String {
        String::from_utf8_lossy(&self.send(hyper::Method::GET, path).await.1).into_owned()
    }
}
