//! The counter example: one instance per name, serialized events, durable writes.

use crate::harness::Site;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_increments_return_exactly_one_to_five_hundred() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut values = BTreeSet::new();
    for (status, body) in crate::harness::concurrent_posts(&server, "/counter/hot/increment", 500).await {
        assert_eq!(status, 200, "body: {body}");
        assert!(values.insert(body.parse::<u32>().unwrap()), "value {body} returned twice");
    }
    assert_eq!(values, (1..=500).collect::<BTreeSet<u32>>());
    assert_eq!(server.get("/counter/hot").await, (200, "500".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_names_are_independent_objects() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut client = server.client().await;
    assert_eq!(client.send("GET", "/counter/alice", "").await, (200, "0".into()));
    for expected in 1..=3 {
        assert_eq!(client.send("POST", "/counter/alice/increment", "").await, (200, expected.to_string()));
    }
    assert_eq!(client.send("POST", "/counter/bob/decrement", "").await, (200, "-1".into()));
    assert_eq!(client.send("GET", "/counter/alice", "").await, (200, "3".into()));
    assert_eq!(client.send("GET", "/counter/bob", "").await, (200, "-1".into()));
    // Names are percent-decoded: "a b" and "a%20b" are the same object, "a+b" another.
    client.send("POST", "/counter/a%20b/increment", "").await;
    assert_eq!(client.send("GET", "/counter/a%20b", "").await, (200, "1".into()));
    assert_eq!(client.send("GET", "/counter/a+b", "").await, (200, "0".into()));
    assert_eq!(client.send("GET", "/counter/alice/unknown-route", "").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_classes_and_missing_names_get_clear_errors() {
    let site = Site::standard();
    let server = site.start(&[]);
    let (status, body) = server.get("/nope/x").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("unknown class `nope`")
            && body.contains("chat, counter, cursors, history, meter, probe, reminder, room, ticket"),
        "{body}"
    );
    let (status, body) = server.get("/counter/").await;
    assert_eq!(status, 400);
    assert!(body.contains("missing object name"), "{body}");
    let (status, body) = server.get("/counter/%FF").await;
    assert_eq!(status, 400);
    assert!(body.contains("not valid UTF-8"), "{body}");
    let (status, body) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("class counter sha256:"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    for durability in ["normal", "full"] {
        let site = Site::standard();
        let server = site.start(&["--durability", durability]);
        let mut client = server.client().await;
        let mut acknowledged = Vec::new();
        for i in 0..20 {
            let name = format!("k{}", i % 5);
            let (status, value) = client.send("POST", &format!("/counter/{name}/increment"), "").await;
            assert_eq!(status, 200);
            acknowledged.push((name, value));
        }
        server.kill();
        let server = site.start(&["--durability", durability]);
        for (name, value) in acknowledged.iter().rev().take(5) {
            assert_eq!(server.get(&format!("/counter/{name}")).await, (200, value.clone()), "{durability}");
        }
    }
}
