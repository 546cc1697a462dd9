//! One room, many clients: broadcast throughput and delivery latency, and what an open socket
//! costs the host while its object is hibernated.

use crate::server::Server;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn room() -> std::path::PathBuf {
    crate::workspace().join("target/wasm32-wasip2/guest/room.wasm")
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// `pace`: at least this long between two broadcasts (zero: as fast as the room takes them).
pub async fn broadcast(clients: usize, messages: usize, pace: Duration) -> Vec<String> {
    wdo_host::raise_open_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[("room", room())], &["--idle-timeout", "1s"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline_kib = server.rss_kib();

    let url = format!("ws://{}/room/bench", server.addr);
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (socket, _) = tokio_tungstenite::connect_async(&url).await.expect("connect");
        sockets.push(socket);
    }
    // Let the room hibernate with every socket open, then weigh the host.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let hibernated_kib = server.rss_kib();

    let mut sender = sockets.pop().unwrap();
    let receivers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(messages);
                while latencies.len() < messages {
                    match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
                        Ok(Some(Ok(Message::Text(text)))) => {
                            let sent: u64 = text.parse().unwrap_or(0);
                            latencies.push(Duration::from_micros(now_us().saturating_sub(sent)));
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    let sender_task = tokio::spawn(async move {
        for _ in 0..messages {
            let next = tokio::time::Instant::now() + pace;
            sender.send(Message::text(now_us().to_string())).await.unwrap();
            // The sender gets its own copy back: wait for it, so messages are paced by the room.
            while let Some(Ok(message)) = sender.next().await {
                if message.is_text() {
                    break;
                }
            }
            tokio::time::sleep_until(next).await;
        }
        sender
    });
    let mut latencies = Vec::new();
    for receiver in receivers {
        latencies.extend(receiver.await.unwrap());
    }
    let elapsed = started.elapsed();
    let _sender = sender_task.await.unwrap();
    server.kill().await;

    latencies.sort();
    let percentile =
        |p: f64| latencies.get(((latencies.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or_default();
    let expected = (clients - 1) * messages;
    vec![
        format!(
            "{:<48} {:>10.0} deliveries/s, p50 {:.1} ms, p99 {:.1} ms ({} of {expected} delivered)",
            if pace.is_zero() {
                format!("one room, {clients} clients, one sender, flat out")
            } else {
                format!("one room, {clients} clients, one sender, every {pace:?}")
            },
            latencies.len() as f64 / elapsed.as_secs_f64(),
            percentile(0.50).as_secs_f64() * 1e3,
            percentile(0.99).as_secs_f64() * 1e3,
            latencies.len(),
        ),
        format!(
            "{:<48} {:>10.1} KiB per socket ({:.1} MiB for {clients} sockets)",
            "host memory per open socket, room hibernated",
            hibernated_kib.saturating_sub(baseline_kib) as f64 / clients as f64,
            hibernated_kib.saturating_sub(baseline_kib) as f64 / 1024.0,
        ),
    ]
}
