//! Calls between objects, and the host's call route.

use crate::harness::{Client, Server, Site};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn rpc(server: &Server, caller: &str, call: Value) -> (u16, Value) {
    let (status, body) = server.post(&format!("/probe/{caller}/rpc"), &call.to_string()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_round_trip_large_payloads() {
    let site = Site::standard();
    let server = site.start(&["--call-route"]);
    let mut client = server.client().await;
    let payload: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let (status, body) = client.send_bytes("POST", "/_call/probe/p/echo", payload.clone()).await;
    assert_eq!(status, 200);
    assert!(body == payload, "5 MB came back unchanged over the call route");
    let (status, body) = client.send_bytes("POST", "/_call/probe/p/big", b"12000000".to_vec()).await;
    assert_eq!((status, body.len()), (200, 12_000_000));
    // Object to object.
    let big = "a".repeat(3_000_000);
    let (status, answer) =
        rpc(&server, "caller", json!({"class": "probe", "name": "callee", "method": "len", "args": big})).await;
    assert_eq!((status, answer), (200, json!({"ok": "3000000"})));
    assert_eq!(client.send("GET", "/_call/probe/p/echo", "").await.0, 405);
    assert_eq!(client.send("POST", "/_call/probe", "").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_see_what_kind_of_error_a_call_met() {
    let site = Site::standard();
    let server = site.start(&["--call-route"]);
    let call = |method: &str| json!({"class": "probe", "name": "e", "method": method, "args": ""});
    let (_, answer) = rpc(&server, "c", call("fail")).await;
    assert_eq!(answer, json!({"error": "probe: the call fails on purpose", "status": 500}), "the callee's own error");
    let (_, answer) = rpc(&server, "c", call("trap")).await;
    assert_eq!(answer["status"], 500);
    assert!(answer["error"].as_str().unwrap().contains("the call traps on purpose"), "{answer}");
    let (_, answer) = rpc(&server, "c", json!({"class": "nope", "name": "x", "method": "echo"})).await;
    assert_eq!(answer["status"], 400);
    assert!(answer["error"].as_str().unwrap().contains("unknown class `nope`"), "{answer}");
    let (_, answer) = rpc(&server, "c", call("missing")).await;
    assert_eq!(answer["error"], "probe has no method `missing`");
    assert_eq!(answer["status"], 500, "the callee's own error");
    let (_, answer) = rpc(&server, "c", json!({"class": "probe", "name": "e", "method": "add", "args": "[1]"})).await;
    assert!(answer["error"].as_str().unwrap().contains("arguments of `add`"), "{answer}");
    // Over HTTP, a callee's error is a 500 that names the call.
    let (status, body) = server.post("/_call/probe/e/fail", "").await;
    assert_eq!(status, 500);
    assert!(body.contains("probe/e.fail failed: probe: the call fails on purpose"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_cycles_and_chains_too_deep_fail_fast() {
    let site = Site::standard();
    let server = site.start(&["--call-route"]);
    let started = Instant::now();
    // a → a
    let (_, answer) = rpc(&server, "a", json!({"class": "probe", "name": "a", "method": "echo"})).await;
    assert!(answer["error"].as_str().unwrap().contains("re-entrant call"), "{answer}");
    // a → b → a
    let (_, answer) = rpc(&server, "a", json!({"class": "probe", "name": "b", "method": "chain", "args": "a"})).await;
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("re-entrant call") && error.matches("probe/").count() >= 3, "{answer}");
    // A chain of 20 distinct objects.
    let names: Vec<String> = (1..=20).map(|i| format!("n{i}")).collect();
    let (_, answer) =
        rpc(&server, "a", json!({"class": "probe", "name": "n0", "method": "chain", "args": names.join(",")})).await;
    assert!(answer["error"].as_str().unwrap().contains("call chain deeper than 16"), "{answer}");
    // A chain within the limit works.
    let (_, answer) =
        rpc(&server, "a", json!({"class": "probe", "name": "m0", "method": "chain", "args": "m1,m2,m3"})).await;
    assert_eq!(answer, json!({"ok": "end"}));
    assert!(started.elapsed() < Duration::from_secs(10), "no waiting on a cycle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooded_object_answers_overloaded_at_once_while_others_keep_answering() {
    let site = Site::standard();
    let server = site.start(&["--call-route", "--mailbox-capacity", "2"]);
    let addr = server.addr;
    let spin = move || {
        tokio::spawn(async move { Client::connect(addr).await.send("POST", "/_call/probe/slow/spin", "1000").await })
    };
    let mut flood: Vec<_> = (0..20).map(|_| spin()).collect();
    // Flooded once the first refusal came back (a fixed wait was too short on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flood.iter().any(|f| f.is_finished()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = Instant::now();
    assert_eq!(server.post("/counter/other/increment", "").await, (200, "1".into()));
    assert!(asked.elapsed() < Duration::from_secs(1));
    // The actor takes what waits in its mailbox into one batch, so the flood may have left it
    // empty behind a running batch (seen: two spins taken at once, the call below queued). A
    // refusal now proves it full, and it stays full until that batch ends (1 s a spin).
    loop {
        let probe = spin();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = probe.is_finished();
        flood.push(probe);
        if refused {
            break;
        }
        assert!(Instant::now() < deadline, "the mailbox never filled");
    }
    // Another object calling the flooded one learns at once that it is overloaded (a 503 in the SDK).
    let asked = Instant::now();
    let (_, answer) = rpc(&server, "caller", json!({"class": "probe", "name": "slow", "method": "echo"})).await;
    assert_eq!(answer["status"], 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("overloaded"), "{answer}");
    assert!(asked.elapsed() < Duration::from_secs(1), "refused at once, not queued");
    let mut overloaded = 0;
    for task in flood {
        let (status, body) = task.await.unwrap();
        if status == 503 {
            assert!(body.contains("overloaded"), "{body}");
            overloaded += 1;
        } else {
            assert_eq!((status, body.as_str()), (200, "spun"));
        }
    }
    assert!(overloaded >= 10, "most of the flood was refused at once: {overloaded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_ids_and_ids_of_another_class_are_refused() {
    let site = Site::standard();
    let server = site.start(&["--call-route"]);
    let (_, ids) = server.get("/probe/i/ids?class=probe&name=alice").await;
    let ids: Value = serde_json::from_str(&ids).unwrap();
    let alice = ids["from_name"].as_str().unwrap();
    let (_, again) = server.get("/probe/i/ids?class=probe&name=alice").await;
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["from_name"], ids["from_name"], "names map to stable ids");
    assert_ne!(again["unique"], ids["unique"], "unique ids never repeat");
    let (_, checked) = server.get(&format!("/probe/i/ids?class=probe&name=x&check={alice}")).await;
    assert_eq!(serde_json::from_str::<Value>(&checked).unwrap()["check"], json!({"Ok": alice}));
    let mut forged = alice.to_string();
    forged.replace_range(60.., "0000");
    let (_, checked) = server.get(&format!("/probe/i/ids?class=probe&name=x&check={forged}")).await;
    let error = serde_json::from_str::<Value>(&checked).unwrap()["check"]["Err"].clone();
    assert!(error.as_str().unwrap().contains("not an id of this class"), "{checked}");
    let (_, checked) = server.get(&format!("/probe/i/ids?class=counter&name=x&check={alice}")).await;
    assert!(checked.contains("not an id of this class"), "a probe id is no counter id: {checked}");
    // Calling by a forged id is refused too.
    let (_, answer) = rpc(&server, "i", json!({"class": "probe", "id": forged, "method": "echo"})).await;
    assert_eq!(answer["status"], 400, "{answer}");
    // And a real id reaches the object its name does.
    let (_, answer) = rpc(&server, "i", json!({"class": "probe", "id": alice, "method": "count"})).await;
    assert_eq!(answer, json!({"ok": "1"}));
    assert_eq!(server.post("/_call/probe/alice/count", "").await, (200, "2".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_traps_after_a_call_rolls_back_only_its_own_writes() {
    let site = Site::standard();
    let server = site.start(&["--call-route"]);
    let call = json!({"class": "probe", "name": "callee", "method": "count", "write_then_trap": true});
    let (status, body) = rpc(&server, "caller", call).await;
    assert_eq!(status, 500, "{body}");
    // The callee's call committed on its own and stands.
    assert_eq!(server.post("/_call/probe/callee/count", "").await, (200, "2".into()));
    // The caller's own write was rolled back.
    let (_, value) = server.post("/probe/caller/kv", r#"{"op":"get","key":"caller-write"}"#).await;
    assert_eq!(value, "null");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_stubs_call_declared_methods() {
    let site = Site::standard();
    let server = site.start(&["--call-route"]);
    assert_eq!(server.post("/_call/probe/other/count", "").await, (200, "1".into()));
    let (status, body) = server.get("/probe/me/typed?name=other&a=40&b=2").await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer, json!({"sum": 42, "greeting": "hello probe, from other", "calls": 1}));
    // The wire format is plain JSON: a tuple of the arguments.
    assert_eq!(server.post("/_call/probe/x/add", "[2, 3]").await, (200, "5".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_reached_by_rpc_knows_its_name() {
    let site = Site::standard();
    let server = site.start(&["--call-route"]);
    // First touched by a typed call, never over HTTP.
    let (_, body) = server.get("/probe/me/typed?name=fresh").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["greeting"], "hello probe, from fresh");
    // Reached by id alone after a restart (no name in the call): its database remembers.
    let (_, ids) = server.get("/probe/i/ids?class=probe&name=named").await;
    let id = serde_json::from_str::<Value>(&ids).unwrap()["from_name"].as_str().unwrap().to_string();
    assert_eq!(server.post("/_call/probe/named/count", "").await, (200, "1".into()));
    server.kill();
    let server = site.start(&["--call-route"]);
    let (_, answer) =
        rpc(&server, "caller", json!({"class": "probe", "id": id, "method": "greet", "args": "[\"x\"]"})).await;
    assert_eq!(answer, json!({"ok": "\"hello x, from named\""}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_payloads_over_the_limit_are_refused() {
    let site = Site::standard();
    let server = site.start(&["--call-route", "--max-call-payload", "1KiB"]);
    let mut client = server.client().await;
    assert_eq!(client.send_bytes("POST", "/_call/probe/p/len", vec![b'a'; 1024]).await, (200, b"1024".to_vec()));
    let (status, body) = client.send_bytes("POST", "/_call/probe/p/len", vec![b'a'; 1025]).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    // Between objects: arguments over the limit, and a result over it.
    let (_, answer) =
        rpc(&server, "c", json!({"class": "probe", "name": "p", "method": "len", "args": "a".repeat(1025)})).await;
    assert!(answer["error"].as_str().unwrap().contains("the limit is 1024"), "{answer}");
    let (_, answer) = rpc(&server, "c", json!({"class": "probe", "name": "p", "method": "big", "args": "2000"})).await;
    assert!(answer["error"].as_str().unwrap().contains("the result is 2000 bytes; the limit is 1024"), "{answer}");
}

/// Every database permit held by a caller waiting on a callee that needs one: the callees must
/// still run (a callee joins over the bound rather than wait for a caller that waits on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_holding_every_open_database_still_reach_their_callees() {
    let site = Site::standard();
    let server = site.start(&["--call-route", "--max-open-objects", "16"]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..48 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let call = json!({"class": "probe", "name": format!("callee-{i}"), "method": "spin", "args": "20"});
            Client::connect(addr).await.send("POST", &format!("/probe/caller-{i}/rpc"), &call.to_string()).await
        }));
    }
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!((status, body.as_str()), (200, r#"{"ok":"spun"}"#));
    }
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_is_cut_at_its_callers_deadline() {
    let site = Site::standard();
    let server = site.start(&["--event-timeout", "1s"]);
    // a calls b, and b spins for 5 s: the call, and b's event, end with a's second.
    let started = Instant::now();
    let (status, body) =
        rpc(&server, "a", json!({"class": "probe", "name": "b", "method": "spin", "args": "5000"})).await;
    let took = started.elapsed();
    assert!(body.to_string().contains("deadline"), "{status} {body}");
    assert!(took < Duration::from_millis(2500), "the call was cut after {took:?}");
    // b was stopped too, not left to spin on: it answers at once.
    for name in ["a", "b"] {
        let asked = Instant::now();
        assert_eq!(server.get(&format!("/probe/{name}/whoami")).await.0, 200);
        assert!(asked.elapsed() < Duration::from_secs(1), "{name} still busy: {:?}", asked.elapsed());
    }
    assert!(started.elapsed() < Duration::from_millis(3000), "b ran on for {:?}", started.elapsed());
    // Within the deadline, calls work as ever.
    let (status, body) =
        rpc(&server, "a", json!({"class": "probe", "name": "b", "method": "spin", "args": "100"})).await;
    assert_eq!((status, body), (200, json!({"ok": "spun"})));
}
