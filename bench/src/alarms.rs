//! Alarms at scale: start-up with many pending alarms (they cost an index row each, and no
//! object is loaded at start), and the rate at which due alarms fire from cold.

use crate::server::Server;
use std::time::{Duration, Instant};

fn probe() -> std::path::PathBuf {
    crate::workspace().join("target/wasm32-wasip2/guest/probe.wasm")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn stat(server: &Server, name: &str) -> u64 {
    let (_, body) = request(server, "GET", "/_wdo/stats").await;
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse().ok()).unwrap_or(0)
}

async fn request(server: &Server, method: &str, path: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Start-up time and memory of a host whose alarm index holds `pending` future alarms. The rows
/// are written straight into the index (the schema of host/src/alarms/index.rs): start-up reads
/// only the index, so whether the objects' files exist does not change what is measured.
pub async fn startup(pending: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for count in [0, pending] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = Server::start(&data, &[("probe", probe())], &[]).await;
        first.kill().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        {
            let mut index = rusqlite::Connection::open(data.join("alarms.sqlite")).unwrap();
            let tx = index.transaction().unwrap();
            let at = now_ms() + 24 * 3600 * 1000;
            let mut insert = tx
                .prepare(
                    "INSERT INTO alarms (class, id, name, at_ms, due_ms, retry) VALUES ('probe', ?1, ?2, ?3, ?3, 0)",
                )
                .unwrap();
            for i in 0..count {
                insert.execute(rusqlite::params![format!("{i:064x}"), format!("o{i}"), at + i as i64]).unwrap();
            }
            drop(insert);
            tx.commit().unwrap();
        }
        let server = Server::start(&data, &[("probe", probe())], &[]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = stat(&server, "pending_alarms").await;
        assert_eq!(seen, count as u64);
        lines.push(format!(
            "{:<48} {:>10} ms {:>10.1} MiB RSS {:>8} objects loaded",
            format!("start-up with {count} pending alarms"),
            server.startup.as_millis(),
            server.rss_kib() as f64 / 1024.0,
            stat(&server, "active_objects").await
        ));
        server.kill().await;
    }
    lines
}

/// `objects` objects with alarms that all come due while the host is down; after a restart,
/// how fast they fire.
pub async fn firing(objects: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[("probe", probe())], &[]).await;
    for i in 0..objects {
        assert_eq!(request(&server, "POST", &format!("/probe/f{i}/put")).await.0, 200);
    }
    let due = now_ms() + objects as i64 / 2 + 2_000;
    for i in 0..objects {
        assert_eq!(request(&server, "POST", &format!("/probe/f{i}/alarm/set?at={due}")).await.0, 200);
    }
    assert!(now_ms() < due, "setting the alarms took longer than planned");
    server.kill().await;
    tokio::time::sleep(Duration::from_millis((due - now_ms()).max(0) as u64 + 100)).await;

    let server = Server::start(&data, &[("probe", probe())], &[]).await;
    let started = Instant::now();
    let mut peak_rss = 0;
    while stat(&server, "pending_alarms").await > 0 {
        peak_rss = peak_rss.max(server.rss_kib());
        assert!(started.elapsed() < Duration::from_secs(600), "alarms did not all fire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    server.kill().await;
    format!(
        "{:<48} {:>10.0} alarms/s ({objects} in {:.2} s, peak {:.0} MiB RSS)",
        format!("{objects} due alarms fired from cold"),
        objects as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        peak_rss as f64 / 1024.0
    )
}
