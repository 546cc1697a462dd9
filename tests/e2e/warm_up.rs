//! Spare instances and the optional `warm-up` export (tests/guests/warm-up, registered under
//! several class names: the name says how its warm-up behaves).

use crate::harness::{Server, Site, guest, wake_until_warmed};
use std::time::{Duration, Instant};

async fn visit(server: &Server, class: &str, name: &str) -> serde_json::Value {
    let (status, body) = server.get(&format!("/{class}/{name}")).await;
    assert_eq!(status, 200, "{class}/{name}: {body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((report["class"].as_str(), report["name"].as_str()), (Some(class), Some(name)), "{report}");
    report
}

/// The log's records: a line with a timestamp and the lines after it that have none.
fn records(log: &str) -> Vec<String> {
    let mut records: Vec<String> = Vec::new();
    for line in log.lines() {
        match records.last_mut() {
            Some(record) if !line.starts_with("20") => {
                record.push('\n');
                record.push_str(line);
            }
            _ => records.push(line.to_string()),
        }
    }
    records
}

/// The `class=` field of a log record.
fn class_of(record: &str) -> Option<&str> {
    let (_, rest) = record.split_once("class=")?;
    rest.split_whitespace().next().map(|class| class.trim_matches('"'))
}

/// Wakes new objects of `class` until one comes up in a spare (its instance ran a warm-up);
/// every object it woke must know who it is.
async fn wake_in_spare(server: &Server, class: &str) -> serde_json::Value {
    let answers = wake_until_warmed(server, Duration::from_secs(20), |i| format!("/{class}/o{i}")).await;
    for (i, report) in answers.iter().enumerate() {
        let name = format!("o{i}");
        assert_eq!((report["class"].as_str(), report["name"].as_str()), (Some(class), Some(&*name)), "{report}");
    }
    answers.last().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn spares_are_warmed_up_once_and_a_failed_warm_up_stops_warming_only() {
    let classes = ["warm", "warm-call", "warm-storage", "warm-identity"];
    let site = Site::new(&classes.map(|class| (class, guest("warm-up"))));
    let server = site.start(&[]);

    // The first object of a class starts an instance of its own: no warm-up ran in it.
    for class in classes {
        assert_eq!(visit(&server, class, "first").await["warm_ups"], 0, "{class}");
    }
    // Later objects adopt spares: each warmed up exactly once, and the object's identity is
    // its own (the report checks class and name), not the spare's placeholder.
    let report = wake_in_spare(&server, "warm").await;
    assert_eq!(report["warm_ups"], 1, "{report}");
    assert_eq!(report["call_error"], serde_json::Value::Null, "{report}");
    // A warm-up runs for no object: calling another object fails, and says why.
    let report = wake_in_spare(&server, "warm-call").await;
    let error = report["call_error"].as_str().unwrap_or_default();
    assert!(error.contains("a warm-up runs for no object: it cannot call objects"), "{report}");

    // Storage or the object's identity in a warm-up trap it: the host says so and makes spares
    // without warm-up from then on; the class keeps serving.
    for (class, reason) in [
        ("warm-storage", "storage used during warm-up, which runs for no object"),
        ("warm-identity", "the object's identity asked for during warm-up, which runs for no object"),
    ] {
        let started = Instant::now();
        while !server.log().contains(reason) {
            assert!(started.elapsed() < Duration::from_secs(20), "{class}: no warning in the log:\n{}", server.log());
            visit(&server, class, "again").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = server.log();
        let warning = records(&log).into_iter().find(|record| record.contains(reason)).unwrap();
        assert!(warning.contains("WARN") && class_of(&warning) == Some(class), "{warning}");
        assert!(warning.contains("stopped warming up this version's spares: warm-up failed"), "{warning}");
        for i in 0..20 {
            assert_eq!(visit(&server, class, &format!("after{i}")).await["warm_ups"], 0, "{class}");
        }
    }
    // The classes whose warm-up works were never stopped.
    for record in records(&server.log()).iter().filter(|r| r.contains("warm-up failed")) {
        assert!(!matches!(class_of(record), Some("warm" | "warm-call")), "{record}");
    }
}

/// Spares take no place under `--max-instances` (the pool keeps slots for them past it), so
/// all of them together hold at most 32 memories however many classes keep spares: twenty
/// classes of two spares each would make forty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spares_of_many_classes_together_stay_within_the_pools_room_for_them() {
    let names: Vec<String> = (0..20).map(|i| format!("warm{i}")).collect();
    let classes: Vec<(&str, std::path::PathBuf)> = names.iter().map(|name| (name.as_str(), guest("warm-up"))).collect();
    let server = Site::new(&classes).start(&[]);
    for name in &names {
        visit(&server, name, "a").await;
    }
    // Spares are made in the background: wait until no more come for a second.
    let started = Instant::now();
    let mut last = (usize::MAX, Instant::now());
    while last.1.elapsed() < Duration::from_secs(1) && started.elapsed() < Duration::from_secs(30) {
        let (_, stats) = server.get("/_wdo/stats").await;
        let spares = stats.lines().find_map(|l| l.strip_prefix("spare_instances ")).unwrap().parse().unwrap();
        if spares != last.0 {
            last = (spares, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last.0, 32, "sixteen classes keep their two spares, the others none");
    // Every class serves all the same.
    for name in &names {
        visit(&server, name, "b").await;
    }
}
