//! Hostile clients: connections that dribble, idle or crowd the host are bounded, and the host
//! keeps serving everyone else. Every loop here is bounded in count and time, on loopback.

use crate::harness::{Client, Server, Site, workspace};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `within` passes); what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

fn stat(stats: &str, name: &str) -> usize {
    stats.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse().ok()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_crowd_is_capped_and_timed_out_while_a_normal_client_is_served() {
    let site = Site::standard();
    let server = site.start(&["--max-connections", "100", "--header-timeout", "2s"]);
    let mut normal = server.client().await;
    assert_eq!(normal.send("POST", "/counter/n/increment", "").await, (200, "1".into()));

    // 150 connections that send a request head one byte at a time, 300 ms apart.
    let started = Instant::now();
    let mut crowd = Vec::new();
    for _ in 0..150 {
        crowd.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let dribble = tokio::spawn(async move {
        // Those past the bound were answered 503 at once and closed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut admitted = Vec::new();
        let mut refused = 0;
        for mut stream in crowd {
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(5), stream.peek(&mut buf)).await {
                Ok(Ok(n)) if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") => {
                    let answer = read_until_closed(&mut stream, Duration::from_secs(1)).await.unwrap();
                    assert!(answer.contains("Retry-After: 1") && answer.contains("too many open"), "{answer}");
                    refused += 1;
                }
                _ => admitted.push(stream),
            }
        }
        // The rest dribble until the host closes them (it must, within the header timeout).
        for _ in 0..20 {
            for stream in &mut admitted {
                let _ = stream.write_all(b"G").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut closed_by_host = 0;
        for stream in &mut admitted {
            if read_until_closed(stream, Duration::from_secs(1)).await.is_some() {
                closed_by_host += 1;
            }
        }
        (refused, admitted.len(), closed_by_host)
    });

    // Meanwhile the connection that was already open is served promptly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 2..12 {
        let asked = Instant::now();
        assert_eq!(normal.send("POST", "/counter/n/increment", "").await, (200, i.to_string()));
        assert!(asked.elapsed() < Duration::from_secs(1), "the open connection waited {:?}", asked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (refused, admitted, closed_by_host) = dribble.await.unwrap();
    assert_eq!(refused, 51, "past 100 connections (the normal one included) new ones are refused");
    assert_eq!(closed_by_host, admitted, "every dribbling connection was closed by the host");
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
    // Their places are free again: new connections are served, and the count says so.
    let (status, stats) = server.get("/_wdo/stats").await;
    assert_eq!(status, 200);
    assert!(stat(&stats, "open_connections") <= 2, "{stats}");
    assert_eq!(stat(&stats, "max_connections"), 100, "{stats}");
    assert_eq!(server.post("/counter/n/increment", "").await, (200, "12".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_below_the_minimum_rate_is_cut_off_with_408() {
    let site = Site::standard();
    let server = site.start(&["--body-timeout", "1s", "--min-body-rate", "64KiB"]);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /probe/slow/put?key=k HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // Ten bytes every 200 ms, far below 64 KiB/s; bounded at 5 s.
    let mut answer = String::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(5) {
        if stream.write_all(b"0123456789").await.is_err() {
            break;
        }
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            if n == 0 || answer.contains("bytes/s") {
                break;
            }
        }
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("slower than 65536 bytes/s"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(server.get("/probe/slow/get?key=k").await.0, 404, "nothing of the slow request ran");
    // A body at a normal pace goes through.
    let mut client = Client::connect(server.addr).await;
    assert_eq!(client.send_bytes("POST", "/probe/slow/put?key=k", vec![b'a'; 100_000]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_its_timeout() {
    let site = Site::standard();
    let server = site.start(&["--keep-alive-timeout", "1s"]);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /_wdo/health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let started = Instant::now();
    let seen = read_until_closed(&mut stream, Duration::from_secs(5)).await.expect("the host closed the connection");
    assert!(seen.starts_with("HTTP/1.1 200") && seen.ends_with("ok\n"), "{seen}");
    let idle = started.elapsed();
    assert!(idle >= Duration::from_millis(900) && idle < Duration::from_secs(3), "closed after {idle:?}");
    // A connection in use is not idle: one request every 400 ms for 2 s keeps it open.
    let mut client = server.client().await;
    for _ in 0..5 {
        assert_eq!(client.send("GET", "/_wdo/health", "").await, (200, "ok\n".into()));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_input_budget_get_503_and_nothing_accepted_is_lost() {
    let site = Site::standard();
    let server = site.start(&["--max-buffered-input", "1MiB"]);
    // A client declares 700 KB and sends it slowly: the host holds those bytes meanwhile.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /probe/b/put?key=slow HTTP/1.1\r\nHost: x\r\nContent-Length: 700000\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&[b's'; 1000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, stats) = server.get("/_wdo/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stat(&stats, "buffered_input_bytes"), 700_000, "{stats}");
    // Another 700 KB would pass the 1 MiB budget: refused at once, before its body is sent.
    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /probe/b/put?key=other HTTP/1.1\r\nHost: x\r\nContent-Length: 700000\r\n\r\n";
    refused.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut refused, Duration::from_secs(5)).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("--max-buffered-input"), "{answer}");
    // Small requests still fit.
    assert_eq!(server.post("/counter/b/increment", "").await, (200, "1".into()));
    // The slow body completes and its write stands; then the refused one goes through.
    slow.write_all(&vec![b's'; 699_000]).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(server.get("/probe/b/get?key=slow").await.1.len(), 700_000);
    let mut client = server.client().await;
    assert_eq!(client.send_bytes("POST", "/probe/b/put?key=other", vec![b'o'; 700_000]).await.0, 200);
    assert_eq!(stat(&server.get("/_wdo/stats").await.1, "buffered_input_bytes"), 0, "every byte came back");
}

/// Asks for a WebSocket at `path` and hangs up `after` it sent the handshake.
async fn hang_up_a_handshake(addr: std::net::SocketAddr, path: &str, after: Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: wdo\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(after).await;
}

/// Opens `count` WebSockets at `path`, each place as soon as it comes free (a hung-up socket's
/// close event runs first), within 10 s.
async fn open_sockets(addr: std::net::SocketAddr, path: &str, count: usize) {
    let started = Instant::now();
    let mut held = Vec::new();
    while held.len() < count {
        match tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await {
            Ok((socket, _)) => held.push(socket),
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(10), "a place never came free: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A client that asks for a WebSocket and hangs up at any point of the handshake (before the
/// object accepts, while its event that accepted still runs, after the 101) leaves no socket
/// behind: the object's places all come free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshakes_hung_up_on_leave_no_socket_behind() {
    let site = Site::standard();
    let server = site.start(&["--max-websockets-per-object", "3"]);
    // Hung up on while the object, having accepted, spins for 300 ms: every place is taken.
    for _ in 0..3 {
        hang_up_a_handshake(server.addr, "/probe/hung/ws?spin=300", Duration::from_millis(100)).await;
    }
    for n in 0..60u64 {
        hang_up_a_handshake(server.addr, "/probe/hung/ws", Duration::from_micros(n * 150)).await;
    }
    open_sockets(server.addr, "/probe/hung/ws", 3).await;
}

/// The same through a worker, which hands its client's upgrade to an object (Cloudflare's
/// `stub.fetch(request)` with `Upgrade: websocket`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshakes_handed_on_by_a_worker_and_hung_up_on_leave_no_socket_behind() {
    let dir = tempfile::tempdir().unwrap();
    let probe = workspace().join("tests/guests/cloudflare-probe/wrangler.jsonc");
    let flags = ["--max-websockets-per-object", "3"];
    let server = Server::start(&probe, &dir.path().join("data"), &flags, None);
    // Hung up on while the worker waits 300 ms after the object answered (the socket the object
    // accepted then waits in the worker's exchange); and while the object, having accepted,
    // waits 300 ms. (In this order: the worker's wait comes while the object is free.)
    for wait in ["worker_wait", "wait", "wait"] {
        let path = format!("/obj/PROBE/hung/ws/hibernate?{wait}=300");
        hang_up_a_handshake(server.addr, &path, Duration::from_millis(100)).await;
    }
    open_sockets(server.addr, "/obj/PROBE/hung/ws/hibernate", 3).await;
}
