//! WebSockets: held by the host, surviving hibernation, gated by commits, bounded.

use crate::harness::{Server, Site, Socket};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The next text message (skipping pings), within 10 s.
async fn next_text(socket: &mut Socket) -> String {
    match crate::harness::next_message(socket).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn ask(socket: &mut Socket, command: &str) -> String {
    socket.send(Message::text(command)).await.unwrap();
    next_text(socket).await
}

/// Waits for the close frame; returns its code and reason.
async fn closed(socket: &mut Socket) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("closed within 10 s") {
            Some(Ok(Message::Close(frame))) => {
                return frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return (1006, String::new()),
        }
    }
}

async fn closes(server: &Server, object: &str) -> Vec<Value> {
    for _ in 0..100 {
        let (_, body) = server.get(&format!("/probe/{object}/closes")).await;
        let closes: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
        if !closes.is_empty() {
            return closes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_broadcasts_to_a_hundred_clients_sender_included() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(server.socket("/room/big").await);
    }
    clients[7].send(Message::text("hello, room")).await.unwrap();
    for client in clients.iter_mut() {
        assert_eq!(next_text(client).await, "hello, room");
    }
    clients[99].send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    for client in clients.iter_mut() {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(message, Message::binary(vec![1u8, 2, 3]));
    }
    // A plain request to a route that expects an upgrade gets a clear 426.
    let (status, body) = server.get("/room/big").await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("expects a WebSocket upgrade"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_filter_the_sockets_an_object_lists() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut red = server.socket("/probe/t/ws?tags=red,warm").await;
    let _blue = server.socket("/probe/t/ws?tags=blue").await;
    let _untagged = server.socket("/probe/t/ws").await;
    assert_eq!(ask(&mut red, "tags").await, r#"["red","warm"]"#);
    assert_eq!(ask(&mut red, "count").await, "3");
    assert_eq!(ask(&mut red, "count:red").await, "1");
    assert_eq!(ask(&mut red, "count:blue").await, "1");
    assert_eq!(ask(&mut red, "count:green").await, "0");
    let (status, body) = server.get("/probe/t/ws").await;
    assert_eq!(status, 426, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_survive_hibernation_on_a_fresh_instance() {
    let site = Site::standard();
    let server = site.start(&["--idle-timeout", "200ms"]);
    let mut socket = server.socket("/probe/h/ws?attachment=alice").await;
    assert_eq!(ask(&mut socket, "attachment").await, "alice|2", "the same instance accepted and answers");
    assert_eq!(ask(&mut socket, "set-attachment:alice-2").await, "set");
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A fresh instance (its first event) sees the socket and its attachment.
    assert_eq!(ask(&mut socket, "attachment").await, "alice-2|1");
    assert_eq!(ask(&mut socket, "count").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_answers_the_auto_response_without_waking_the_object() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut socket = server.socket("/probe/a/ws").await;
    assert_eq!(ask(&mut socket, "auto:ping=pong").await, "auto set");
    let before = ask(&mut socket, "events").await.parse::<u32>().unwrap();
    for _ in 0..5 {
        assert_eq!(ask(&mut socket, "ping").await, "pong");
    }
    let after = ask(&mut socket, "events").await.parse::<u32>().unwrap();
    assert_eq!(after, before + 1, "the pings never reached the object");
    // Protocol pings are answered by the host too.
    socket.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"hi");
                break;
            }
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_work_both_ways_and_the_object_hears_them() {
    let site = Site::standard();
    let server = site.start(&[]);
    // The client closes: the handshake completes and the object hears code and reason.
    let mut socket = server.socket("/probe/c/ws?attachment=carol").await;
    assert_eq!(ask(&mut socket, "echo:hi").await, "hi");
    socket.close(Some(CloseFrame { code: CloseCode::from(4001), reason: "bye now".into() })).await.unwrap();
    assert_eq!(closed(&mut socket).await.0, 4001, "the host echoed the client's close");
    let closes = closes(&server, "c").await;
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0]["code"], 4001);
    assert_eq!(closes[0]["reason"], "bye now");
    assert_eq!(closes[0]["was_clean"], true);
    assert_eq!(closes[0]["attachment"], "carol", "the close event can still read the attachment");
    // The object closes.
    let mut socket = server.socket("/probe/c2/ws").await;
    socket.send(Message::text("close:4002,done here")).await.unwrap();
    assert_eq!(closed(&mut socket).await, (4002, "done here".into()));
    let mut other = server.socket("/probe/c2/ws").await;
    assert_eq!(ask(&mut other, "count").await, "1", "the closed socket is no longer listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_closes_the_socket_with_1009() {
    let site = Site::standard();
    let server = site.start(&["--max-websocket-message", "64KiB"]);
    let mut socket = server.socket("/probe/big/ws").await;
    let at_limit = vec![7u8; 64 << 10];
    socket.send(Message::binary(at_limit.clone())).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::binary(at_limit), "a message at the limit is fine");
    socket.send(Message::binary(vec![7u8; (64 << 10) + 1])).await.unwrap();
    assert_eq!(closed(&mut socket).await.0, 1009);
    let closes = closes(&server, "big").await;
    assert_eq!(closes[0]["code"], 1009, "{closes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_cut_off_while_the_others_keep_receiving() {
    let site = Site::standard();
    let server = site.start(&["--max-websocket-buffer", "1MiB", "--max-websocket-message", "1MiB"]);
    let mut reader = server.socket("/probe/slow/ws").await;
    // The stalled client sends one command and then never reads again.
    let mut stalled = server.socket("/probe/slow/ws").await;
    stalled.send(Message::text("echo:ready")).await.unwrap();
    let payload = "y".repeat(64 << 10);
    let mut received = 0;
    for _ in 0..200 {
        // 200 broadcasts of 64 KiB: far more than the stalled client's buffers take.
        reader.send(Message::text(format!("broadcast:{payload}"))).await.unwrap();
        let text = next_text(&mut reader).await;
        if text == payload {
            received += 1;
        }
    }
    assert_eq!(received, 200, "the reading client got every broadcast");
    let closes = closes(&server, "slow").await;
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0]["code"], 1008);
    assert!(closes[0]["reason"].as_str().unwrap().contains("not reading"), "{closes:?}");
    assert_eq!(ask(&mut reader, "count").await, "1");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_of_a_failed_event_never_leave_the_host() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut socket = server.socket("/probe/gate/ws").await;
    socket.send(Message::text("trap")).await.unwrap();
    // The next answer is to the next command: "sent before the trap" never arrived.
    assert_eq!(ask(&mut socket, "echo:after").await, "after");
    assert_eq!(ask(&mut socket, "events").await, "2", "a fresh instance after the trap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_a_killed_host_and_reconnect_after_a_restart() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut socket = server.socket("/room/k").await;
    socket.send(Message::text("before")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "before");
    server.kill();
    assert_eq!(closed(&mut socket).await.0, 1006, "the connection ends");
    let server = site.start(&[]);
    let mut socket = server.socket("/room/k").await;
    socket.send(Message::text("after")).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_rooms_have_names_presence_and_history() {
    let site = Site::standard();
    let server = site.start(&[]);
    let (status, page) = server.get("/chat/lobby").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>wdo chat</title>"));
    assert_eq!(server.get("/chat/lobby/ws").await.0, 400, "a name is needed");

    let json = |text: String| serde_json::from_str::<Value>(&text).unwrap();
    let mut ann = server.socket("/chat/lobby/ws?name=Ann").await;
    assert_eq!(json(next_text(&mut ann).await)["type"], "history");
    assert_eq!(json(next_text(&mut ann).await), serde_json::json!({"type": "join", "name": "Ann"}));
    for i in 0..55 {
        ann.send(Message::text(format!("line {i}"))).await.unwrap();
        assert_eq!(json(next_text(&mut ann).await)["text"], format!("line {i}"));
    }
    let mut bob = server.socket("/chat/lobby/ws?name=Bob").await;
    let history = json(next_text(&mut bob).await);
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 50, "the last 50 are replayed");
    assert_eq!(messages[0]["text"], "line 5");
    assert_eq!(messages[49]["text"], "line 54");
    assert_eq!(messages[49]["name"], "Ann");
    assert_eq!(history["present"], serde_json::json!(["Ann", "Bob"]));
    assert_eq!(json(next_text(&mut ann).await), serde_json::json!({"type": "join", "name": "Bob"}));
    assert_eq!(json(next_text(&mut bob).await)["type"], "join");
    bob.close(None).await.unwrap();
    let leave = json(next_text(&mut ann).await);
    assert_eq!(leave, serde_json::json!({"type": "leave", "name": "Bob", "present": ["Ann"]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_holds_at_most_its_share_of_sockets() {
    let site = Site::standard();
    let server = site.start(&["--max-websockets-per-object", "3"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.socket("/probe/full/ws").await);
    }
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/probe/full/ws", server.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 413);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("holds 3 WebSockets; the limit is 3"), "{body}");
        }
        other => panic!("a fourth socket was not refused: {:?}", other.map(|(_, r)| r.status())),
    }
    // Another object is not affected, and a closed socket frees its place.
    held.push(server.socket("/probe/other/ws").await);
    drop(held.remove(0));
    let started = std::time::Instant::now();
    loop {
        if tokio_tungstenite::connect_async(format!("ws://{}/probe/full/ws", server.addr)).await.is_ok() {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "the closed socket's place never came free");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn a_send_buffer_smaller_than_the_largest_message_stops_the_start() {
    let site = Site::standard();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wdo"))
        .args(["serve", "--listen", "127.0.0.1:0", "--max-websocket-buffer", "1MiB", "--data"])
        .arg(site.data())
        .arg(site.manifest())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("must hold the largest message"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_pinged_then_closed_while_one_that_answers_stays() {
    let site = Site::standard();
    let server = site.start(&["--websocket-ping-interval", "300ms"]);
    let mut answering = server.socket("/probe/idle/ws").await;
    // Never read: its side never answers the host's pings.
    let silent = server.socket("/probe/idle/ws").await;
    // The answering client reads (tungstenite answers pings as it reads) for 1.5 s, sending nothing.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let _ = tokio::time::timeout(Duration::from_millis(50), answering.next()).await;
    }
    let closes = closes(&server, "idle").await;
    assert_eq!(closes.len(), 1, "only the silent client was closed: {closes:?}");
    assert_eq!(closes[0]["code"], 1006);
    assert!(closes[0]["reason"].as_str().unwrap().contains("no answer to the host's ping"), "{closes:?}");
    assert_eq!(ask(&mut answering, "count").await, "1", "the answering client is still open");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_arrives_whole_though_the_host_writes_it_in_fragments() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut reader = server.socket("/probe/large/ws").await;
    let mut other = server.socket("/probe/large/ws").await;
    let payload: String = (0..300_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    reader.send(Message::text(format!("broadcast:{payload}"))).await.unwrap();
    assert_eq!(next_text(&mut reader).await, payload);
    assert_eq!(next_text(&mut other).await, payload);
    assert_eq!(ask(&mut other, "echo:after").await, "after", "the socket goes on after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broadcast_to_many_clients_that_do_not_read_is_held_once() {
    let site = Site::standard();
    let server = site.start(&["--max-websocket-message", "8MiB", "--max-websocket-buffer", "8MiB"]);
    // 300 clients of one room never read; then a 6 MiB message is broadcast to them all.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(server.socket("/room/flood").await);
    }
    let (mut sender, _) = tokio_tungstenite::connect_async(format!("ws://{}/room/flood", server.addr)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();
    sender.send(Message::text("x".repeat(6 << 20))).await.unwrap();
    // The sender gets its own copy back once the room has sent it to everyone.
    let echoed = loop {
        match tokio::time::timeout(Duration::from_secs(30), sender.next()).await.expect("the broadcast within 30 s") {
            Some(Ok(Message::Text(text))) => break text.len(),
            Some(Ok(_)) => continue,
            other => panic!("the sender's socket ended: {other:?}"),
        }
    };
    assert_eq!(echoed, 6 << 20);
    let mut peak = server.rss_kib();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(server.rss_kib());
    }
    // A copy per socket would be 1.8 GB; shared and written in fragments it is one copy plus
    // about a fragment per socket.
    let grown = peak.saturating_sub(before) >> 10;
    assert!(grown < 200, "the host grew by {grown} MiB holding one 6 MiB message for 300 sockets");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_event_queues_for_sending_is_bounded_as_it_sends() {
    let site = Site::standard();
    let server = site.start(&["--max-event-sends", "1MiB"]);
    let mut socket = server.socket("/probe/sends/ws").await;
    // Three distinct messages of 400 KB: the third would pass 1 MiB and is refused; the guest
    // hears why and goes on, and what it queued before still arrives.
    socket.send(Message::text("distinct:3:400000")).await.unwrap();
    for i in 0..2 {
        assert!(next_text(&mut socket).await.starts_with(&i.to_string()));
    }
    let refusal = next_text(&mut socket).await;
    assert!(refusal.starts_with("refused after 2:") && refusal.contains("the limit is 1048576"), "{refusal}");
    // Small ones in the next event are fine.
    socket.send(Message::text("distinct:3:10")).await.unwrap();
    for _ in 0..3 {
        next_text(&mut socket).await;
    }
    assert_eq!(next_text(&mut socket).await, "sent 3");
}
