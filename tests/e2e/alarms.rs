//! Alarms: durable, transactional, at-least-once wake-ups, serialized with other events.

use crate::harness::{Server, Site};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn plan(server: &Server, object: &str, plan: Value) {
    assert_eq!(server.post(&format!("/probe/{object}/alarm/plan"), &plan.to_string()).await.0, 200);
}

async fn set_in(server: &Server, object: &str, ms: i64) -> i64 {
    let (status, at) = server.post(&format!("/probe/{object}/alarm/set?in={ms}"), "").await;
    assert_eq!(status, 200, "{at}");
    at.parse().unwrap()
}

async fn fired(server: &Server, object: &str) -> Vec<Value> {
    let (status, body) = server.get(&format!("/probe/{object}/alarm/fired")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until the object's alarm fired `count` times (or `within` passes).
async fn wait_fired(server: &Server, object: &str, count: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let fired = fired(server, object).await;
        if fired.len() >= count || Instant::now() > deadline {
            return fired;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn alarm(server: &Server, object: &str) -> Value {
    serde_json::from_str(&server.get(&format!("/probe/{object}/alarm")).await.1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_fires_within_100_ms_of_its_time_on_an_idle_host() {
    let site = Site::standard();
    let server = site.start(&[]);
    for object in ["a1", "a2", "a3"] {
        let at = set_in(&server, object, 400).await;
        assert_eq!(alarm(&server, object).await, json!(at));
        let fired = wait_fired(&server, object, 1, Duration::from_secs(5)).await;
        assert_eq!(fired.len(), 1, "{object}");
        let late = fired[0]["at_ms"].as_i64().unwrap() - at;
        assert!((0..=100).contains(&late), "{object} fired {late} ms after its time");
        assert_eq!(fired[0]["retry_count"], 0);
        assert_eq!(fired[0]["is_retry"], false);
        assert_eq!(alarm(&server, object).await, Value::Null, "a successful handler clears the alarm");
    }
    let (_, stats) = server.get("/_wdo/stats").await;
    assert!(stats.contains("pending_alarms 0"), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_replaces_the_earlier_alarm_and_delete_cancels_it() {
    let site = Site::standard();
    let server = site.start(&[]);
    set_in(&server, "r", 60_000).await;
    let at = set_in(&server, "r", 300).await;
    assert_eq!(alarm(&server, "r").await, json!(at));
    assert_eq!(wait_fired(&server, "r", 1, Duration::from_secs(5)).await.len(), 1);

    set_in(&server, "d", 300).await;
    assert_eq!(server.post("/probe/d/alarm/delete", "").await.0, 200);
    assert_eq!(alarm(&server, "d").await, Value::Null);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(fired(&server, "d").await.is_empty(), "a deleted alarm does not fire");
    assert_eq!(fired(&server, "r").await.len(), 1, "a replaced alarm fires once");

    // A time in the past fires as soon as possible.
    let started = now_ms();
    assert_eq!(server.post(&format!("/probe/p/alarm/set?at={}", started - 60_000), "").await.0, 200);
    let fired = wait_fired(&server, "p", 1, Duration::from_secs(5)).await;
    assert!(fired[0]["at_ms"].as_i64().unwrap() - started < 500, "{fired:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_sets_an_alarm_and_traps_leaves_no_alarm() {
    let site = Site::standard();
    let server = site.start(&[]);
    let (status, body) = server.post("/probe/t/alarm/set?in=200&trap=1", "").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(alarm(&server, "t").await, Value::Null);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(fired(&server, "t").await.is_empty());
    let (_, stats) = server.get("/_wdo/stats").await;
    assert!(stats.contains("pending_alarms 0"), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_can_re_arm_its_alarm() {
    let site = Site::standard();
    let server = site.start(&[]);
    plan(&server, "tick", json!({"rearm_every": 100, "rearm_left": 3})).await;
    set_in(&server, "tick", 100).await;
    let fired = wait_fired(&server, "tick", 4, Duration::from_secs(5)).await;
    assert_eq!(fired.len(), 4, "the first firing and three re-armed ones");
    for pair in fired.windows(2) {
        let gap = pair[1]["at_ms"].as_i64().unwrap() - pair[0]["at_ms"].as_i64().unwrap();
        assert!(gap >= 100, "re-armed 100 ms later: {gap}");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(super::alarms::fired(&server, "tick").await.len(), 4, "and then it stops");
    assert_eq!(alarm(&server, "tick").await, Value::Null);
}

/// The retry counts the guest logged for its failed and successful attempts.
fn attempts(server: &Server, object: &str) -> Vec<(u32, bool)> {
    server
        .log()
        .lines()
        .filter(|l| l.contains(&format!("probe/{object}")) && l.contains("alarm fired: retry"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "retry").unwrap();
            (words[at + 1].parse().unwrap(), words[at + 3] == "true")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handlers_are_retried_with_backoff_then_dropped() {
    let site = Site::standard();
    let server = site.start(&["--alarm-retry-base", "50ms"]);
    plan(&server, "f", json!({"mode": "fail"})).await;
    plan(&server, "tr", json!({"mode": "trap"})).await;
    let started = Instant::now();
    set_in(&server, "f", 0).await;
    set_in(&server, "tr", 0).await;
    // 50 + 100 + 200 + 400 + 800 + 1600 ms of backoff (±20%), then nothing more.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let expected: Vec<(u32, bool)> = (0..=6).map(|n| (n, n > 0)).collect();
    assert_eq!(attempts(&server, "f"), expected, "{}", server.log());
    assert_eq!(attempts(&server, "tr"), expected);
    assert!(started.elapsed() >= Duration::from_millis(2_400));
    assert!(server.log().contains("dropped after 6 retries"), "{}", server.log());
    assert_eq!(alarm(&server, "f").await, Value::Null, "the alarm is gone after the last retry");
    assert!(fired(&server, "f").await.is_empty(), "every failed attempt was rolled back");
    // A trapped attempt's retry runs on a fresh instance.
    assert!(server.log().contains("the alarm handler traps on purpose"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_succeeds_sees_its_retry_count() {
    let site = Site::standard();
    let server = site.start(&["--alarm-retry-base", "50ms"]);
    plan(&server, "ok2", json!({"mode": "fail"})).await;
    set_in(&server, "ok2", 0).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while attempts(&server, "ok2").len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    plan(&server, "ok2", json!({"mode": "ok"})).await;
    let fired = wait_fired(&server, "ok2", 1, Duration::from_secs(3)).await;
    assert_eq!(fired.len(), 1);
    assert!(fired[0]["retry_count"].as_u64().unwrap() >= 2, "{fired:?}");
    assert_eq!(fired[0]["is_retry"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_wakes_a_dropped_instance() {
    let site = Site::standard();
    let server = site.start(&["--idle-timeout", "100ms", "--object-idle-timeout", "100ms"]);
    set_in(&server, "sleepy", 800).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, stats) = server.get("/_wdo/stats").await;
    assert!(stats.contains("active_objects 0"), "the object is fully closed before its alarm: {stats}");
    tokio::time::sleep(Duration::from_millis(800)).await; // past its time, without touching it
    let fired = fired(&server, "sleepy").await;
    assert_eq!(fired[0]["instance_events"], 1, "a fresh instance handled the alarm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_survive_kill_9_including_one_due_during_the_downtime() {
    let site = Site::standard();
    let server = site.start(&[]);
    let soon = set_in(&server, "k1", 300).await;
    let later = set_in(&server, "k2", 2_500).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(800)).await; // k1 comes due while the host is down
    let server = site.start(&[]);
    let ready = now_ms();
    let k1 = wait_fired(&server, "k1", 1, Duration::from_secs(5)).await;
    assert_eq!(k1.len(), 1, "the alarm due during the downtime fires after start");
    assert!(k1[0]["at_ms"].as_i64().unwrap() >= soon);
    let k2 = wait_fired(&server, "k2", 1, Duration::from_secs(5)).await;
    assert_eq!(k2.len(), 1);
    // On time, or (on a machine so loaded that the restart took past its time) right at start.
    let fired_at = k2[0]["at_ms"].as_i64().unwrap();
    assert!(fired_at >= later, "fired {} ms before its time", later - fired_at);
    let late = fired_at - later.max(ready);
    assert!(late <= 100, "fired {late} ms after its time (or after the host was ready)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alarm_and_fetch_events_of_one_object_never_overlap() {
    let site = Site::standard();
    let server = site.start(&[]);
    plan(&server, "o", json!({"spin_ms": 150, "rearm_every": 50, "rearm_left": 3})).await;
    set_in(&server, "o", 50).await;
    let addr = server.addr;
    let busy: Vec<_> = (0..12)
        .map(|i| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 60)).await;
                crate::harness::Client::connect(addr).await.send("POST", "/probe/o/busy?ms=40", "").await
            })
        })
        .collect();
    for task in busy {
        assert_eq!(task.await.unwrap().0, 200);
    }
    assert_eq!(wait_fired(&server, "o", 4, Duration::from_secs(5)).await.len(), 4);
    let (_, body) = server.get("/probe/o/intervals").await;
    let mut intervals: Vec<(u64, u64)> = serde_json::from_str(&body).unwrap();
    assert_eq!(intervals.len(), 16, "12 fetches and 4 alarms");
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "events overlapped: {pair:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_fire_in_order_of_their_time_across_a_restart() {
    let site = Site::standard();
    let server = site.start(&[]);
    for (text, in_ms) in [("third", 900), ("first", 200), ("second", 500), ("later", 60_000)] {
        let (status, body) = server.post(&format!("/reminder/me/?in_ms={in_ms}"), text).await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(server.post("/reminder/me", "no delay").await.0, 400);
    let (_, body) = server.get("/reminder/me").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"fired": [], "pending": 4}));
    tokio::time::sleep(Duration::from_millis(350)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let server = site.start(&[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = server.get("/reminder/me").await;
        let state: Value = serde_json::from_str(&body).unwrap();
        if state["fired"].as_array().unwrap().len() == 3 || Instant::now() > deadline {
            assert_eq!(state, json!({"fired": ["first", "second", "third"], "pending": 1}));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meter_ticks_and_keeps_a_rolling_window() {
    let site = Site::standard();
    let server = site.start(&[]);
    assert_eq!(server.post("/meter/m/start?every_ms=0", "").await.0, 400);
    assert_eq!(server.post("/meter/m/start?every_ms=150", "").await.0, 200);
    for value in [1.0, 2.0, 6.0] {
        assert_eq!(server.post(&format!("/meter/m?value={value}"), "").await.0, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let state = loop {
        let state: Value = serde_json::from_str(&server.get("/meter/m").await.1).unwrap();
        if state["ticks"].as_u64().unwrap() >= 13 || Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let windows = state["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 10, "only the last 10 windows are kept: {state}");
    assert!(state["ticks"].as_u64().unwrap() >= 13);
    assert_eq!(state["readings"], json!([]));
    assert!(windows.iter().all(|w| w["count"] == 0), "the first window, with the readings, rolled out: {state}");
    assert_eq!(server.post("/meter/m/stop", "").await.0, 200);
    let ticks = state["ticks"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Value = serde_json::from_str(&server.get("/meter/m").await.1).unwrap();
    assert!(after["ticks"].as_u64().unwrap() <= ticks + 1, "stopped: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meter_rolls_readings_into_a_window() {
    let site = Site::standard();
    let server = site.start(&[]);
    for value in [1.0, 2.0, 6.0] {
        server.post(&format!("/meter/w?value={value}"), "").await;
    }
    assert_eq!(server.post("/meter/w/start?every_ms=200", "").await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state: Value = serde_json::from_str(&server.get("/meter/w").await.1).unwrap();
        if let Some(w) = state["windows"].as_array().unwrap().first() {
            assert_eq!((w["count"].clone(), w["average"].clone()), (json!(3), json!(3.0)), "{state}");
            assert_eq!((w["min"].clone(), w["max"].clone()), (json!(1.0), json!(6.0)));
            break;
        }
        assert!(Instant::now() < deadline, "no tick: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
