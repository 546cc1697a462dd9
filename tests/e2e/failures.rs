//! A failing event fails alone: its writes roll back, its caller learns why, the object and
//! every other object go on.

use crate::harness::Site;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_rolls_back_the_event_and_the_next_request_gets_a_fresh_instance() {
    let site = Site::standard();
    let server = site.start(&[]);
    assert_eq!(server.post("/probe/t/put?key=kept", "before").await.0, 200);
    assert_eq!(server.get("/probe/t/instance").await, (200, "2".into()));

    let (status, body) = server.post("/probe/t/trap?key=k", "").await;
    assert_eq!(status, 500);
    assert!(body.contains("probe/t") && body.contains("trapped"), "{body}");
    assert!(body.contains("deliberate panic after writing `k`"), "the guest's panic message is shown: {body}");

    assert_eq!(server.get("/probe/t/get?key=k").await.0, 404, "the trapped event's write was rolled back");
    assert_eq!(server.get("/probe/t/get?key=kept").await, (200, "before".into()));
    assert_eq!(server.get("/probe/t/instance").await, (200, "3".into()), "a fresh instance served the get");
    // A guest answering an impossible status is its error, said clearly.
    let (status, body) = server.post("/probe/t/bad-status", "").await;
    assert_eq!(status, 500);
    assert!(body.contains("invalid HTTP status 1000"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_by_the_cpu_limit_while_other_objects_answer() {
    let site = Site::standard();
    let server = site.start(&["--cpu-limit", "2s"]);
    let addr = server.addr;
    let started = Instant::now();
    let looping = tokio::spawn(async move {
        crate::harness::Client::connect(addr).await.send("POST", "/probe/spin/loop?key=k", "").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While it spins, other objects answer promptly.
    let mut client = server.client().await;
    for i in 0..20 {
        let asked = Instant::now();
        assert_eq!(client.send("POST", &format!("/counter/c{i}/increment"), "").await, (200, "1".into()));
        assert!(asked.elapsed() < Duration::from_secs(1), "another object waited {:?}", asked.elapsed());
    }
    let (status, body) = looping.await.unwrap();
    assert_eq!(status, 500);
    assert!(body.contains("CPU time limit"), "{body}");
    assert!(started.elapsed() >= Duration::from_secs(2), "stopped early: {:?}", started.elapsed());
    assert_eq!(server.get("/probe/spin/get?key=k").await.0, 404, "the loop's write was rolled back");
    assert_eq!(server.get("/probe/spin/instance").await, (200, "2".into()), "fresh since the loop: the get, then this");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_is_stopped_by_the_memory_limit() {
    let site = Site::standard();
    let server = site.start(&["--memory-limit", "64MiB"]);
    let (status, body) = server.post("/probe/hog/alloc", "").await;
    assert_eq!(status, 500);
    assert!(body.contains("memory limit of 64 MiB"), "{body}");
    assert_eq!(server.get("/probe/hog/instance").await, (200, "1".into()));
    assert_eq!(server.post("/counter/fine/increment", "").await, (200, "1".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_bodies_are_refused_with_413() {
    let site = Site::standard();
    let server = site.start(&["--max-request-body", "1KiB"]);
    let mut client = server.client().await;
    let (status, body) = client.send_bytes("POST", "/probe/x/put", vec![b'a'; 1025]).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("limit of 1024 bytes"));
    assert_eq!(client.send_bytes("POST", "/probe/x/put", vec![b'a'; 1024]).await.0, 200);
}
