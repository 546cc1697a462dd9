//! Where a cluster finds an object's state (`cluster/anchor.rs`): objects held long are stored
//! whole now and then (`--cluster-checkpoint`), and a host taking one over after a crash reads
//! that copy and the dead host's batches after it, not the whole log.

use crate::cluster::{Hosts, increment};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Files under `folder` (recursively) whose name ends with `suffix`.
fn files(folder: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

/// The `batches=N` of the takeover line a host logged for `object` (its id in hex).
fn batches_read(log: &str, object: &str) -> Option<usize> {
    let line = log.lines().rev().find(|l| l.contains("took an object over") && l.contains(object))?;
    line.split("batches=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_after_a_crash_reads_the_last_checkpoint_and_the_batches_after_it() {
    let mut hosts = Hosts::start_with(3, 1, &["--cluster-checkpoint", "1s"]);
    let addrs: Vec<SocketAddr> = (0..3).map(|i| hosts.addr(i)).collect();
    // Increments round robin for a few checkpoint periods: the objects pause for their
    // checkpoints meanwhile, and no request fails for it.
    let names: Vec<String> = (0..6).map(|n| format!("c{n}")).collect();
    let mut counts = vec![0u64; names.len()];
    let mut turn = 0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for (name, count) in names.iter().zip(&mut counts) {
            let (value, unknown) = increment(&addrs, name, &mut turn, Duration::from_secs(30)).await;
            assert_eq!((value, unknown), (*count + 1, 0), "counter/{name}");
            *count = value;
        }
    }
    // Idle now: the next checkpoints only move the anchors' times. Each object has one stored
    // copy: the copies its earlier checkpoints made are deleted.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let store = hosts.store.path().join("wdo");
    let copies = files(&store.join("cluster/wdo/v1/objects"), ".db");
    assert_eq!(copies.len(), names.len(), "one stored copy per object: {copies:?}");
    let log_batches = files(&store.join("cluster/wdo/v1/log"), ".wdob").len();

    // The owner of c0 dies; another host takes it over from its copy.
    let owner = hosts.owner("counter", "c0").await.expect("c0 is held");
    let object = {
        let answer = hosts.admin((owner + 1) % 3, "cluster/owner/counter/c0").await;
        answer["id"].as_str().expect("the owner answer names the object's id").to_string()
    };
    hosts.kill(owner);
    let survivors: Vec<SocketAddr> = (0..3).filter(|&i| i != owner).map(|i| addrs[i]).collect();
    let mut turn = 0;
    let (value, _) = increment(&survivors, "c0", &mut turn, Duration::from_secs(30)).await;
    assert_eq!(value, counts[0] + 1, "counter/c0 after its host died");
    let new_owner = hosts.owner("counter", "c0").await.expect("c0 is held again");
    let read = batches_read(&hosts.server(new_owner).log(), &object)
        .unwrap_or_else(|| panic!("host {new_owner} logged no takeover of {object}"));
    eprintln!("the takeover read {read} of the log's {log_batches} batches");
    assert!(read <= 3, "the takeover read {read} of the log's {log_batches} batches: not from the last checkpoint");
}

/// A cluster's store is bounded like one host's (`backup/compact.rs`): one host writes
/// snapshots from every host's batches, leaving out the newest, and history past the retention
/// is removed; objects taken over after a crash, and a `wdo restore` of the store, still have
/// every acknowledged increment. The snapshot writer is given one object, written once: what
/// it snapshots is the other hosts' batches, which it learns by reading the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_store_is_snapshotted_and_trimmed_and_keeps_every_acknowledged_write() {
    let flags = ["--backup-snapshot-every", "8KiB", "--backup-retention", "3s", "--cluster-checkpoint", "1h"];
    let mut hosts = Hosts::start_with(3, 1, &flags);
    let addrs: Vec<SocketAddr> = (0..3).map(|i| hosts.addr(i)).collect();
    let root = hosts.store.path().join("wdo/cluster/wdo/v1");
    // Seven objects the writer does not hold, and one it does.
    let candidates: Vec<String> = (0..64).map(|n| format!("t{n}")).collect();
    let (owners, writer) = hosts.placement(&candidates).await;
    let mut names: Vec<String> =
        candidates.iter().zip(&owners).filter(|(_, owner)| **owner != writer).map(|(n, _)| n.clone()).take(7).collect();
    let writers_own = candidates.iter().zip(&owners).find(|(_, owner)| **owner == writer).expect("the writer wins one");
    names.push(writers_own.0.clone());
    let mut counts = vec![0u64; names.len()];
    let (mut turn, mut first_batch) = (0, None);
    let (value, unknown) = increment(&addrs, &names[7], &mut turn, Duration::from_secs(30)).await;
    assert_eq!((value, unknown), (1, 0), "counter/{}", names[7]);
    counts[7] = 1;
    assert_eq!(hosts.owner("counter", &names[7]).await, Some(writer), "the placement this test computed");
    let started = Instant::now();
    // The snapshots leave out batches named less than three leases (6 s) ago: the history is
    // trimmed once a snapshot older than the retention exists. The writer reads the size of the
    // others' batches once per retention (3 s), not once a minute.
    while started.elapsed() < Duration::from_secs(12) || !root.join("retention.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(45), "no history was removed in 45 s");
        for (name, count) in names.iter().zip(&mut counts).take(7) {
            let (value, unknown) = increment(&addrs, name, &mut turn, Duration::from_secs(30)).await;
            assert_eq!((value, unknown), (*count + 1, 0), "counter/{name}");
            *count = value;
        }
        if first_batch.is_none() {
            let mut log = files(&root.join("log"), ".wdob");
            log.sort();
            first_batch = log.first().cloned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("history removed after {:?}", started.elapsed());
    let first_batch = first_batch.expect("batches were written");
    assert!(!first_batch.exists(), "{} is still in the store past the retention", first_batch.display());
    let snapshots = files(&root.join("snapshots"), "manifest.json");
    assert!(!snapshots.is_empty(), "no snapshot in the store");
    let writers: Vec<usize> = (0..3).filter(|&i| hosts.server(i).log().contains("snapshot written")).collect();
    assert_eq!(writers, vec![writer], "one host writes the snapshots: the one with the lowest id");

    // The snapshot writer dies: another host takes over writing them, and its objects come
    // back elsewhere with every increment.
    let dead = writers[0];
    hosts.kill(dead);
    let survivors: Vec<SocketAddr> = (0..3).filter(|&i| i != dead).map(|i| addrs[i]).collect();
    let mut turn = 0;
    for (name, count) in names.iter().zip(&mut counts) {
        let (value, _) = increment(&survivors, name, &mut turn, Duration::from_secs(30)).await;
        assert_eq!(value, *count + 1, "counter/{name} after host {dead} died");
        *count = value;
    }
    // The writer's object was anchored before the history now kept: it came back from the
    // latest snapshot and the log after it.
    let object = hosts.admin((dead + 1) % 3, &format!("cluster/owner/counter/{}", names[7])).await;
    let object = object["id"].as_str().unwrap().to_string();
    let took_over =
        (0..3).filter(|&i| i != dead).flat_map(|i| hosts.server(i).log().lines().map(String::from).collect::<Vec<_>>());
    let line = took_over.into_iter().find(|l| l.contains("took an object over") && l.contains(&object));
    let line = line.unwrap_or_else(|| panic!("no survivor logged taking {} ({object}) over", names[7]));
    assert!(line.contains("from the store's latest snapshot and the log after it"), "{line}");
    let before = snapshots.len();
    let more = Instant::now() + Duration::from_secs(40);
    while files(&root.join("snapshots"), "manifest.json").len() <= before
        && !(0..3).filter(|&i| i != dead).any(|i| hosts.server(i).log().contains("snapshot written"))
    {
        assert!(Instant::now() < more, "no host took over writing the snapshots");
        for (name, count) in names.iter().zip(&mut counts) {
            let (value, _) = increment(&survivors, name, &mut turn, Duration::from_secs(30)).await;
            assert_eq!(value, *count + 1, "counter/{name}");
            *count = value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restored from the store, every object has its count. (The hosts stop first: with a
    // retention of 3 s they would trim the history a restore is reading.)
    for i in (0..3).filter(|&i| i != dead) {
        hosts.kill(i);
    }
    let restored = hosts.site.dir.path().join("restored");
    let env = hosts.s3.env();
    let said = crate::backup::restore_with_env("s3://wdo/cluster", &restored, None, &crate::backup::borrowed(&env));
    assert!(said.is_ok(), "{said:?}");
    let server = crate::harness::Server::launch(None, &restored, &[], None);
    for (name, count) in names.iter().zip(&counts) {
        assert_eq!(server.get(&format!("/counter/{name}/")).await, (200, count.to_string()), "counter/{name}");
    }
}

/// `wdo restore --server`'s admin route through a host that does not hold the object: the
/// object's host restores it, and it answers as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_is_restored_through_a_host_that_does_not_hold_it() {
    let hosts = Hosts::start(3, 1);
    let addrs: Vec<SocketAddr> = (0..3).map(|i| hosts.addr(i)).collect();
    let mut turn = 0;
    for expected in 1..=3 {
        assert_eq!(increment(&addrs, "r", &mut turn, Duration::from_secs(20)).await.0, expected);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let then = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for expected in 4..=5 {
        assert_eq!(increment(&addrs, "r", &mut turn, Duration::from_secs(20)).await.0, expected);
    }
    let owner = hosts.owner("counter", "r").await.expect("r is held");
    let other = (owner + 1) % 3;
    let asked = serde_json::json!({ "at_ms": then }).to_string();
    let (status, body) = hosts.admin_send(other, "POST", "restore/counter/r", asked.as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    for i in 0..3 {
        assert_eq!(hosts.server(i).get("/counter/r/").await, (200, "3".to_string()), "through host {i}");
    }
    assert_eq!(hosts.owner("counter", "r").await, Some(owner), "restored where it is held");
}

/// Idle objects let go of their claims (`--object-idle-timeout`), many at once, each stored
/// whole for the next holder: the cluster then holds nothing, and each object comes back with
/// its count wherever it is asked for next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_objects_are_released_stored_whole_and_come_back_with_their_state() {
    let hosts = Hosts::start_with(3, 1, &["--idle-timeout", "200ms", "--object-idle-timeout", "1s"]);
    let addrs: Vec<SocketAddr> = (0..3).map(|i| hosts.addr(i)).collect();
    let names: Vec<String> = (0..150).map(|n| format!("idle{n}")).collect();
    let mut turn = 0;
    for name in &names {
        for expected in 1..=2 {
            assert_eq!(increment(&addrs, name, &mut turn, Duration::from_secs(20)).await, (expected, 0), "{name}");
        }
    }
    let released = Instant::now() + Duration::from_secs(30);
    loop {
        let status = hosts.admin(0, "cluster").await;
        if status["objects"] == 0 {
            break;
        }
        assert!(Instant::now() < released, "objects still held 30 s after they went idle: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = hosts.store.path().join("wdo/cluster/wdo/v1/objects");
    assert_eq!(files(&store, ".db").len(), names.len(), "one stored copy per released object");
    for name in &names {
        assert_eq!(increment(&addrs, name, &mut turn, Duration::from_secs(20)).await, (3, 0), "{name}");
    }
}
