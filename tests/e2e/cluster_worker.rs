//! A worker in a cluster: a client's WebSocket that the worker on one host hands to an object
//! held by another (`gateway/upgrade.rs`, `hand_to_owner`), with Cloudflare's chat example
//! unchanged.

use crate::cluster::{Hosts, LEASE, closes_within, connect};
use crate::harness::{next_message, workspace};
use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn json(message: Message) -> serde_json::Value {
    serde_json::from_str(message.to_text().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_hands_a_websocket_to_an_object_on_another_host() {
    let config = workspace().join("examples/cloudflare/chat/wrangler.toml");
    let mut hosts = Hosts::start_serving(3, 1, Some(config), &[]);
    // A room held by another host than host 0, joined through host 0's worker.
    let mut room = None;
    for n in 0..30 {
        let name = format!("room{n}");
        let mut ann = connect(hosts.addr(0), &format!("/chat/{name}"), Duration::from_secs(10)).await;
        ann.send(Message::text("ann")).await.unwrap();
        assert_eq!(json(next_message(&mut ann).await), serde_json::json!({"joined": "ann"}));
        match hosts.owner("ChatRoom", &name).await {
            Some(owner) if owner != 0 => {
                room = Some((name, owner, ann));
                break;
            }
            _ => continue,
        }
    }
    let (room, owner, mut ann) = room.expect("some room is held by another host");
    // Bob joins through the third host's worker; messages go both ways.
    let third = 3 - owner;
    let mut bob = connect(hosts.addr(third), &format!("/chat/{room}"), Duration::from_secs(10)).await;
    bob.send(Message::text("bob")).await.unwrap();
    for socket in [&mut ann, &mut bob] {
        assert_eq!(json(next_message(socket).await), serde_json::json!({"joined": "bob"}));
    }
    ann.send(Message::text("hi bob")).await.unwrap();
    for socket in [&mut bob, &mut ann] {
        let said = json(next_message(socket).await);
        assert_eq!((&said["name"], &said["message"]), (&serde_json::json!("ann"), &serde_json::json!("hi bob")));
    }
    // The room's host dies: the client through host 0 sees its connection close, reconnects
    // once another host holds the room, and finds the history (kept in the room's storage).
    hosts.kill(owner);
    assert!(closes_within(&mut ann, Duration::from_secs(10)).await, "the client was not told its room's host died");
    let mut ann = connect(hosts.addr(0), &format!("/chat/{room}"), LEASE * 10).await;
    let history = json(next_message(&mut ann).await);
    assert_eq!((&history["name"], &history["message"]), (&serde_json::json!("ann"), &serde_json::json!("hi bob")));
    assert_ne!(hosts.owner("ChatRoom", &room).await, Some(owner));
}
