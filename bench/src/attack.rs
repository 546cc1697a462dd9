//! What the host holds under attack: a crowd of connections that dribble their request heads
//! while a normal client is served, and its memory when a large message is broadcast to a
//! thousand clients that do not read.

use crate::server::Server;
use crate::stats::Row;
use futures_util::SinkExt;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// `slow` connections each send a request head one byte a second, for `duration`, while one
/// keep-alive client increments a counter as fast as it can.
pub async fn slow_connections(slow: usize, duration: Duration) -> Vec<String> {
    wdo_host::raise_open_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[("counter", crate::counter_component())], &[]).await;
    let addr = server.addr;
    let mut crowd = Vec::with_capacity(slow);
    for _ in 0..slow {
        match TcpStream::connect(addr).await {
            Ok(stream) => crowd.push(stream),
            Err(_) => break, // the bench's own open-file limit
        }
    }
    let opened = crowd.len();
    let stop = Instant::now() + duration;
    let dribble = tokio::spawn(async move {
        let mut open = 0;
        while Instant::now() < stop {
            open = 0;
            for stream in &mut crowd {
                if stream.write_all(b"G").await.is_ok() {
                    open += 1;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        open
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = stat_lines(addr).await;
    let mut client = crate::http_load::Connection::open(addr).await;
    let (mut latencies, mut errors, started) = (Vec::new(), 0, Instant::now());
    while Instant::now() < stop {
        let asked = Instant::now();
        match client.post("/counter/served/increment").await {
            200 => latencies.push(asked.elapsed()),
            _ => errors += 1,
        }
    }
    let elapsed = started.elapsed();
    let still_writing = dribble.await.unwrap();
    let rss = server.rss_kib();
    server.kill().await;
    let row = Row {
        name: format!("normal client beside {opened} dribbling connections"),
        count: latencies.len(),
        elapsed,
        latencies,
        errors,
    };
    vec![
        Row::header(),
        row.to_string(),
        format!(
            "{opened} slow connections opened: {} held by the host ({}), {still_writing} still writable at the end; host RSS {:.1} MiB",
            stats.0,
            stats.1,
            rss as f64 / 1024.0
        ),
    ]
}

/// Open connections and the bound, from `/_wdo/stats`.
async fn stat_lines(addr: std::net::SocketAddr) -> (usize, String) {
    let mut client = crate::http_load::Connection::open(addr).await;
    let body = client.get_text("/_wdo/stats").await;
    let value = |name: &str| {
        body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse().ok()).unwrap_or(0usize)
    };
    (value("open_connections"), format!("--max-connections {}", value("max_connections")))
}

/// `clients` sockets that never read join a room; one more sends a message of `size` bytes,
/// which the room broadcasts to all. The host's peak memory, beside its memory before.
pub async fn socket_flood(clients: usize, size: usize) -> String {
    wdo_host::raise_open_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let room = crate::workspace().join("target/wasm32-wasip2/guest/room.wasm");
    let server = Server::start(&dir.path().join("data"), &[("room", room)], &[]).await;
    let url = format!("ws://{}/room/flood", server.addr);
    let mut idle = Vec::with_capacity(clients);
    for _ in 0..clients {
        idle.push(tokio_tungstenite::connect_async(&url).await.expect("connect").0);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();
    let (mut sender, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
    let started = Instant::now();
    sender.send(Message::text("x".repeat(size))).await.unwrap();
    // The room sends it on to everyone; nobody reads, so it stays queued in the host.
    let mut peak = before;
    while started.elapsed() < Duration::from_secs(10) {
        peak = peak.max(server.rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill().await;
    format!(
        "{:<48} {:.0} MiB before, peak {:.0} MiB ({:.1} KiB per socket past the one copy)",
        format!("{clients} non-reading sockets, one {} MiB broadcast", size >> 20),
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak.saturating_sub(before) as f64 - (size >> 10) as f64).max(0.0) / clients as f64,
    )
}
