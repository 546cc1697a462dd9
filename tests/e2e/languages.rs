//! The counter, the ticket counter and the room, written in Rust, JavaScript and Python (and the
//! counter in C), held to the same behaviour by one table: every test runs each example in every
//! language.

use crate::harness::{Site, concurrent_posts, guest, next_message, wake_until_warmed};
use futures_util::SinkExt;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// (language, class-name suffix): `counter`, `counter-js`, `counter-py`, ...
const LANGUAGES: [(&str, &str); 3] = [("rust", ""), ("javascript", "-js"), ("python", "-py")];
/// The counter also exists in C (bindings only, no SDK).
const COUNTER_LANGUAGES: [(&str, &str); 4] = [("rust", ""), ("javascript", "-js"), ("python", "-py"), ("c", "-c")];

fn site() -> Site {
    let mut classes = Vec::new();
    for example in ["counter", "ticket", "room"] {
        for (_, suffix) in LANGUAGES {
            let class = format!("{example}{suffix}");
            classes.push((class.clone(), guest(&class)));
        }
    }
    classes.push(("counter-c".to_string(), guest("counter-c")));
    let classes: Vec<(&str, std::path::PathBuf)> = classes.iter().map(|(c, p)| (c.as_str(), p.clone())).collect();
    Site::new(&classes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_counter_counts_alike_in_every_language() {
    let site = site();
    let server = site.start(&[]);
    for (language, suffix) in COUNTER_LANGUAGES {
        let class = format!("counter{suffix}");
        let mut values = BTreeSet::new();
        for (status, body) in concurrent_posts(&server, &format!("/{class}/hot/increment"), 100).await {
            assert_eq!(status, 200, "{language}: {body}");
            assert!(values.insert(body.parse::<u32>().unwrap()), "{language}: {body} returned twice");
        }
        assert_eq!(values, (1..=100).collect::<BTreeSet<u32>>(), "{language}");
        let mut client = server.client().await;
        assert_eq!(client.send("GET", &format!("/{class}/hot"), "").await, (200, "100".into()), "{language}");
        assert_eq!(client.send("GET", &format!("/{class}/cold"), "").await, (200, "0".into()), "{language}");
        assert_eq!(
            client.send("POST", &format!("/{class}/cold/decrement"), "").await,
            (200, "-1".into()),
            "{language}"
        );
        assert_eq!(
            client.send("POST", &format!("/{class}/a%20b/increment"), "").await,
            (200, "1".into()),
            "{language}"
        );
        assert_eq!(client.send("GET", &format!("/{class}/a+b"), "").await, (200, "0".into()), "{language}");
        assert_eq!(client.send("GET", &format!("/{class}/hot/nope"), "").await.0, 404, "{language}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ticket_counter_gives_each_number_once_in_every_language() {
    let site = site();
    let server = site.start(&[]);
    for (language, suffix) in LANGUAGES {
        let class = format!("ticket{suffix}");
        let mut tickets = BTreeSet::new();
        for (status, body) in concurrent_posts(&server, &format!("/{class}/line"), 100).await {
            assert_eq!(status, 200, "{language}: {body}");
            let ticket = serde_json::from_str::<serde_json::Value>(&body).unwrap()["ticket"].as_u64().unwrap();
            assert!(tickets.insert(ticket), "{language}: ticket {ticket} given twice");
        }
        assert_eq!(tickets, (1..=100).collect::<BTreeSet<u64>>(), "{language}");
        assert_eq!(server.post(&format!("/{class}/other"), "").await, (200, r#"{"ticket":1}"#.into()), "{language}");
        assert_eq!(server.get(&format!("/{class}/line")).await.0, 404, "{language}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_room_broadcasts_and_outlives_its_instance_in_every_language() {
    let site = site();
    // Instances drop after 200 ms idle: the sockets must stay with the host.
    let server = site.start(&["--idle-timeout", "200ms"]);
    for (language, suffix) in LANGUAGES {
        let class = format!("room{suffix}");
        let mut clients = Vec::new();
        for _ in 0..10 {
            clients.push(server.socket(&format!("/{class}/lobby")).await);
        }
        clients[3].send(Message::text("hello, room")).await.unwrap();
        for client in clients.iter_mut() {
            assert_eq!(next_message(client).await, Message::text("hello, room"), "{language}");
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        clients[9].send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        for client in clients.iter_mut() {
            assert_eq!(next_message(client).await, Message::binary(vec![1u8, 2, 3]), "{language}");
        }
        let (status, body) = server.get(&format!("/{class}/lobby")).await;
        assert_eq!(status, 426, "{language}: {body}");
        assert!(body.contains("expects a WebSocket upgrade"), "{language}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_in_every_language() {
    let site = site();
    let server = site.start(&[]);
    for (_, suffix) in COUNTER_LANGUAGES {
        for _ in 0..3 {
            assert_eq!(server.post(&format!("/counter{suffix}/kept/increment"), "").await.0, 200);
        }
    }
    for (_, suffix) in LANGUAGES {
        assert_eq!(server.post(&format!("/ticket{suffix}/kept"), "").await.0, 200);
    }
    server.kill();
    let server = site.start(&[]);
    for (language, suffix) in COUNTER_LANGUAGES {
        assert_eq!(server.get(&format!("/counter{suffix}/kept")).await, (200, "3".into()), "{language}");
    }
    for (language, suffix) in LANGUAGES {
        assert_eq!(
            server.post(&format!("/ticket{suffix}/kept"), "").await,
            (200, r#"{"ticket":2}"#.into()),
            "{language}"
        );
    }
}

/// What the JavaScript and Python SDKs promise beyond the examples, one probe per language with
/// the same routes (tests/guests/probe-js, probe-py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_and_python_sdks_keep_their_promises() {
    let site = Site::new(&[("probe-js", guest("probe-js")), ("probe-py", guest("probe-py"))]);
    let server = site.start(&["--alarm-retry-base", "100ms"]);
    for class in ["probe-js", "probe-py"] {
        // A thrown exception traps: 500 with its message, and its write is rolled back.
        let (status, body) = server.post(&format!("/{class}/a/write-then-throw"), "").await;
        assert_eq!(status, 500, "{class}: {body}");
        assert!(body.contains("thrown on purpose"), "{class}: {body}");
        assert_eq!(server.get(&format!("/{class}/a/written")).await, (200, "false".into()), "{class}");
        // An HttpError answers with its status and keeps the writes before it.
        assert_eq!(server.post(&format!("/{class}/a/write-then-http-error"), "").await, (418, "teapot\n".into()));
        assert_eq!(server.get(&format!("/{class}/a/written")).await, (200, "true".into()), "{class}");
        // A host error names its kind.
        let (status, body) = server.get(&format!("/{class}/a/bad-sql")).await;
        assert_eq!(status, 500, "{class}: {body}");
        assert!(body.contains("storage:") && body.contains("SELEKT"), "{class}: {body}");
        // Each object knows who it is, also when it woke in a spare instance.
        for name in ["x", "y", "z"] {
            let (status, body) = server.get(&format!("/{class}/{name}/whoami")).await;
            assert_eq!(status, 200, "{class}: {body}");
            let who: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!((who["name"].as_str(), who["class"].as_str()), (Some(name), Some(class)), "{body}");
            assert_eq!(who["id"].as_str().map(str::len), Some(64), "{body}");
        }
        // The SDK's warm-up runs in the spares, once each, and the object that adopts one works.
        let answers =
            wake_until_warmed(&server, Duration::from_secs(30), |i| format!("/{class}/spare{i}/whoami")).await;
        let (warmed, fresh) = answers.split_last().unwrap();
        assert_eq!(warmed["warm_ups"], 1, "{class}: {warmed}");
        assert!(fresh.iter().all(|answer| answer["warm_ups"] == 0), "{class}: {fresh:?}");
        assert!(!server.log().contains("warm-up failed"), "{}", server.log());
        // SQL values round-trip; listing by prefix; calls between objects with JSON.
        let (status, body) = server.post(&format!("/{class}/a/sql"), "").await;
        assert_eq!(status, 200, "{class}: {body}");
        let row: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            row,
            serde_json::json!({ "id": 1, "name": "ada", "score": 1.5, "size": 2, "bulk": 3, "count": 4 }),
            "{class}"
        );
        let (_, body) = server.post(&format!("/{class}/a/list"), "").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "k:1": 1, "k:2": 2 })
        );
        let (status, body) = server.post(&format!("/{class}/a/call"), r#"{"a": 2, "b": 3}"#).await;
        assert_eq!(status, 200, "{class}: {body}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "sum": 5, "by": "callee" })
        );
        // A failed call or fetch keeps what the host said of it, and the Rust SDK's status: a
        // re-entrant call is the caller's mistake (400), a method the callee lacks its failure.
        let (status, body) = server.post(&format!("/{class}/a/call-errors"), "").await;
        assert_eq!(status, 200, "{class}: {body}");
        let errors: serde_json::Value = serde_json::from_str(&body).unwrap();
        let bad_call = |status: u16, from_callee: bool| match class {
            "probe-js" => serde_json::json!({
                "status": status, "fromCallee": from_callee, "retryable": false, "overloaded": false
            }),
            _ => serde_json::json!({
                "status": status, "from_callee": from_callee, "retryable": false, "overloaded": false
            }),
        };
        let names: [&str; 3] = match class {
            "probe-js" => ["reentrantCall", "reentrantFetch", "calleeFailed"],
            _ => ["reentrant_call", "reentrant_fetch", "callee_failed"],
        };
        assert_eq!(errors[names[0]], bad_call(400, false), "{class}: {body}");
        assert_eq!(errors[names[1]], bad_call(400, false), "{class}: {body}");
        assert_eq!(errors[names[2]], bad_call(500, true), "{class}: {body}");
        // The alarm fires once and its handler's write commits.
        assert_eq!(server.post(&format!("/{class}/a/alarm"), "").await, (200, "armed".into()));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while server.get(&format!("/{class}/a/fired")).await.1 != "1" {
            assert!(std::time::Instant::now() < deadline, "{class}: the alarm did not fire");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
