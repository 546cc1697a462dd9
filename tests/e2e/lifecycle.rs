//! Instances come and go; objects and their data stay.

use crate::harness::{OWN_CACHE, Server, Site, guest};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_is_dropped_and_the_object_answers_afterwards() {
    let site = Site::standard();
    let server = site.start(&["--idle-timeout", "300ms"]);
    assert_eq!(server.post("/probe/nap/put?key=k", "v").await.0, 200);
    assert_eq!(server.get("/probe/nap/instance").await, (200, "2".into()));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(server.get("/probe/nap/instance").await, (200, "1".into()), "a fresh instance after idling");
    assert_eq!(server.get("/probe/nap/get?key=k").await, (200, "v".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_that_close_their_database_reopen_it() {
    let site = Site::standard();
    let server = site.start(&["--idle-timeout", "100ms", "--object-idle-timeout", "100ms"]);
    assert_eq!(server.post("/counter/z/increment", "").await, (200, "1".into()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, stats) = server.get("/_wdo/stats").await;
    assert!(stats.contains("active_objects 0"), "{stats}");
    assert_eq!(server.post("/counter/z/increment", "").await, (200, "2".into()));
}

fn stat(stats: &str, name: &str) -> usize {
    let value = stats.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')));
    value.unwrap_or_else(|| panic!("no {name} in {stats}")).parse().unwrap()
}

/// Under an open-file limit of 1,024, 5,000 objects all stay open (connections are bounded by
/// memory) while their files fit the limit: the storage layer parks the least recently used
/// files and reopens them when their object runs again. Instances have their own bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_objects_under_an_open_file_limit_of_1024() {
    let site = Site::standard();
    let mut server = Server::start(&site.manifest(), &site.data(), &["--max-instances", "100"], Some(1024));
    let (_, stats) = server.get("/_wdo/stats").await;
    let files = stat(&stats, "max_database_files");
    assert!(files < 1024 / 2, "the files' budget fits the limit: {stats}");
    assert!(stat(&stats, "max_open_objects") >= 1024, "not lowered by the file limit: {stats}");
    let mut client = server.client().await;
    // Twice each: a first write makes only the database file, unopened (`held.rs`); the second
    // makes the WAL, which stays open with its connection.
    for i in 0..5000 {
        for expected in ["1", "2"] {
            let (status, body) = client.send("POST", &format!("/counter/o{i}/increment"), "").await;
            assert_eq!((status, body.as_str()), (200, expected), "object o{i}");
        }
    }
    // Early objects' files were parked to make room; their data is still there.
    for i in (0..5000).step_by(500) {
        assert_eq!(client.send("POST", &format!("/counter/o{i}/increment"), "").await, (200, "3".into()));
    }
    let (_, stats) = server.get("/_wdo/stats").await;
    assert_eq!(stat(&stats, "active_objects"), 5000, "{stats}");
    assert!(stat(&stats, "database_files_open") <= files, "{stats}");
    // At least each object's WAL (its database file stays unopened until a checkpoint writes
    // it: reads of a new database come from the template it was made from).
    assert!(stat(&stats, "database_files_parked") >= 5000 - files, "{stats}");
    assert!(stat(&stats, "live_instances") <= 100, "{stats}");
    let open_fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid())).unwrap().count();
    assert!(open_fds < 1024, "{open_fds} descriptors open");
    assert!(!server.log().contains("Too many open files"), "{}", server.log());
    assert!(server.is_running(), "the host stays up");
    // Killed with every database open and most files parked: nothing acknowledged is lost.
    server.kill();
    let server = Server::start(&site.manifest(), &site.data(), &[], Some(1024));
    for i in (0..5000).step_by(250) {
        let expected = if i % 500 == 0 { "4" } else { "3" };
        assert_eq!(server.post(&format!("/counter/o{i}/increment"), "").await, (200, expected.into()), "o{i}");
    }
}

/// An instance takes a place under `--max-instances` for each of its linear memories (each
/// takes a memory slot of the pool, address space and kernel mappings): 16 places hold 8
/// objects of a two-memory class, and objects of both kinds make room for each other by
/// dropping the least recently used instances, never by failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_two_memories_takes_two_places_under_the_bound() {
    let built = tempfile::tempdir().unwrap();
    let site = Site::new(&[("hog", crate::harness::multi_memory_guest(built.path())), ("counter", guest("counter"))]);
    let server = site.start(&["--max-instances", "16"]);
    let mut client = server.client().await;
    let live = |stats: &str| (stat(stats, "live_instances"), stat(stats, "instance_places"));
    for i in 0..12 {
        // Each memory at its first page, the main one grown by a page for the arguments.
        assert_eq!(client.send("POST", &format!("/hog/h{i}/grow"), "").await, (200, "2 1".into()), "h{i}");
    }
    let (_, stats) = server.get("/_wdo/stats").await;
    assert_eq!(live(&stats), (8, 16), "{stats}");
    // Counters take the places of the least recently used hogs, one place each.
    for i in 0..6 {
        assert_eq!(client.send("POST", &format!("/counter/c{i}/increment"), "").await, (200, "1".into()));
    }
    let (_, stats) = server.get("/_wdo/stats").await;
    assert_eq!(live(&stats), (11, 16), "five hogs and six counters: {stats}");
    // And a hog the place of two counters; every object answers throughout.
    for i in 0..12 {
        assert_eq!(client.send("POST", &format!("/hog/h{i}/grow"), "").await, (200, "2 1".into()), "h{i}");
    }
    for i in 0..6 {
        assert_eq!(client.send("POST", &format!("/counter/c{i}/increment"), "").await, (200, "2".into()));
    }
    let (_, stats) = server.get("/_wdo/stats").await;
    let (instances, places) = live(&stats);
    assert!(places <= 16 && (8..16).contains(&instances), "{stats}");
    assert!(!server.log().contains("failed to start"), "{}", server.log());
}

/// Instances are bounded by the host's resident memory as well as by their number: 60 objects
/// keeping 8 MiB each would take the host ~480 MiB past its start; with `--max-resident` at
/// 256 MiB past it the least recently used drop their instances (their stored data stays) and
/// fewer may live, while every object, old and new, keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_resident_the_least_recently_used_instances_are_dropped() {
    let site = Site::standard();
    // The host's own resident size first, to set the budget above it.
    let server = site.start(&[]);
    let (_, stats) = server.get("/_wdo/stats").await;
    let start = stat(&stats, "resident_bytes");
    server.kill();
    let budget = start + (256 << 20);
    let server = site.start(&["--max-resident", &budget.to_string()]);
    let mut client = server.client().await;
    for i in 0..60 {
        assert_eq!(client.send("POST", &format!("/probe/h{i}/put?key=k"), "kept").await.0, 200);
        let (status, held) = client.send("POST", &format!("/probe/h{i}/hold"), "8").await;
        assert_eq!((status, held.as_str()), (200, "8"), "object h{i}");
    }
    // The watcher reads the resident size every 25 ms; give it a few rounds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, stats) = server.get("/_wdo/stats").await;
    let (limit, live) = (stat(&stats, "instance_limit"), stat(&stats, "live_instances"));
    assert!(limit < stat(&stats, "max_instances") && live <= limit && live < 60, "{stats}");
    // Brought back under within a round of the watcher (a request may have allocated since).
    assert!(stat(&stats, "resident_bytes") <= budget + (24 << 20), "{stats}");
    assert!(server.log().contains("over --max-resident"), "{}", server.log());
    // The first objects were the least recently used: their instances went, their data stayed.
    assert_eq!(client.send("GET", "/probe/h0/instance", "").await, (200, "1".into()), "h0 has a fresh instance");
    assert_eq!(client.send("GET", "/probe/h0/get?key=k", "").await, (200, "kept".into()));
    assert_eq!(client.send("POST", "/probe/h59/hold", "0").await, (200, "8".into()), "h59 kept its instance");
    assert_eq!(client.send("POST", "/counter/c/increment", "").await, (200, "1".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_compiled_components_from_the_cache() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let server = site.start(&[OWN_CACHE]);
    assert!(server.log().contains("cached=false"), "{}", server.log());
    server.kill();
    let server = site.start(&[OWN_CACHE]);
    assert!(server.log().contains("cached=true"), "{}", server.log());
    assert_eq!(server.get("/counter/a").await, (200, "0".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_knows_its_id_name_and_class() {
    let site = Site::standard();
    let server = site.start(&[]);
    let (status, body) = server.get("/probe/Zoë%2Fone/whoami").await;
    assert_eq!(status, 200);
    let who: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["name"], "Zoë/one");
    assert_eq!(who["class"], "probe");
    let id = who["id"].as_str().unwrap();
    assert!(id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let (_, again) = server.get("/probe/Zoë%2Fone/whoami").await;
    assert_eq!(again, body, "ids are stable");
    let (_, other) = server.get("/probe/someone-else/whoami").await;
    assert_ne!(serde_json::from_str::<serde_json::Value>(&other).unwrap()["id"], who["id"]);
}

/// The files under a data folder whose names end with `suffix`.
fn files_ending(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found }; // not made (yet)
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_closed_for_idleness_is_one_file_and_keeps_its_data() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let server = site.start(&["--idle-timeout", "100ms", "--object-idle-timeout", "100ms"]);
    for _ in 0..10 {
        assert_eq!(server.post("/counter/idle/increment", "").await.0, 200);
    }
    let objects = site.data().join("objects/counter");
    assert_eq!(files_ending(&objects, ".sqlite-wal").len(), 1, "open, it writes to its WAL");
    // Idle past both timeouts: the WAL is folded into the database and deleted.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !files_ending(&objects, ".sqlite-wal").is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(files_ending(&objects, ".sqlite-wal").is_empty(), "{:?}", files_ending(&objects, ""));
    assert_eq!(files_ending(&objects, ".sqlite").len(), 1);
    server.kill();
    let server = site.start(&[]);
    assert_eq!(server.get("/counter/idle").await, (200, "10".into()));
    assert!(files_ending(&objects, ".sqlite-wal").is_empty(), "a read makes no WAL");
}

/// An object that was only ever read has no file (reads see an empty object); its first write
/// makes its database, which survives a kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_object_that_is_only_read_makes_no_file() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let server = site.start(&[]);
    for name in ["a", "b", "c"] {
        assert_eq!(server.get(&format!("/counter/{name}")).await, (200, "0".into()));
    }
    let objects = site.data().join("objects");
    assert_eq!(files_ending(&objects, ".sqlite"), Vec::<std::path::PathBuf>::new());
    assert_eq!(files_ending(&objects, "-wal"), Vec::<std::path::PathBuf>::new());
    assert_eq!(server.post("/counter/b/increment", "").await, (200, "1".into()));
    assert_eq!(files_ending(&objects, ".sqlite").len(), 1);
    server.kill();
    let server = site.start(&[]);
    assert_eq!(server.get("/counter/b").await, (200, "1".into()));
    assert_eq!(server.get("/counter/a").await, (200, "0".into()));
    assert_eq!(files_ending(&objects, ".sqlite").len(), 1);
}

/// A new object's first write makes its database file alone, the write in it (no WAL beside
/// it); its next write makes the WAL. Killed with objects in both states, the host comes back
/// with every acknowledged write, under either durability.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_objects_first_write_is_its_database_file_alone_and_survives_kill_9() {
    for durability in ["normal", "full"] {
        let site = Site::new(&[("counter", guest("counter"))]);
        let server = site.start(&["--durability", durability]);
        let objects = site.data().join("objects");
        for i in 0..20 {
            assert_eq!(server.post(&format!("/counter/once{i}/increment"), "").await, (200, "1".into()));
        }
        assert_eq!(files_ending(&objects, ".sqlite").len(), 20, "{durability}");
        assert_eq!(files_ending(&objects, "-wal"), Vec::<std::path::PathBuf>::new(), "{durability}");
        for expected in ["1", "2", "3"] {
            assert_eq!(server.post("/counter/thrice/increment", "").await, (200, expected.into()));
        }
        assert_eq!(files_ending(&objects, "-wal").len(), 1, "{durability}: its second write made the WAL");
        server.kill();
        let server = site.start(&["--durability", durability]);
        for i in 0..20 {
            assert_eq!(server.get(&format!("/counter/once{i}")).await, (200, "1".into()), "{durability}");
        }
        assert_eq!(server.get("/counter/thrice").await, (200, "3".into()), "{durability}");
        assert_eq!(server.post("/counter/once0/increment", "").await, (200, "2".into()));
    }
}
