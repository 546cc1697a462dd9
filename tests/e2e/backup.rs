//! Backup and restore: a host ships every commit to a backup store (`--backup`), and
//! `wdo restore` rebuilds a data folder from it, as of the latest commit or of a time.

use crate::harness::{Server, Site, concurrent_posts, guest};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Runs `wdo restore --from <store> --data <data> [--at <time>]`; its output, or its error.
fn restore(store: &str, data: &Path, at: Option<&str>) -> Result<String, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wdo"));
    command.args(["restore", "--from", store, "--data"]).arg(data);
    if let Some(at) = at {
        command.args(["--at", at]);
    }
    let output = command.output().expect("run wdo restore");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() { Ok(text) } else { Err(text) }
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Waits until the host's health says a batch was shipped after `batches` had been.
async fn shipped_past(server: &Server, batches: u64) -> u64 {
    for _ in 0..100 {
        let (_, health) = server.get("/_wdo/health").await;
        let shipped = health
            .lines()
            .find_map(|l| l.split(": ").nth(1)?.split(" batches").next()?.parse::<u64>().ok())
            .unwrap_or(0);
        if shipped > batches {
            return shipped;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing shipped past {batches} batches in 5 s");
}

/// The machine is lost (the host killed, its data folder deleted) after its commits shipped: a
/// restore from the store brings back every object (its data, the class's ids: names find the
/// same objects) and the deploy, and the restored folder serves with no manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_data_folder_comes_back_from_the_backup_with_every_shipped_increment() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let store = site.dir.path().join("store");
    let server = site.start(&["--backup", &file_url(&store), "--backup-interval", "100ms"]);
    for round in 0..5 {
        let replies = concurrent_posts(&server, "/counter/shared/increment", 8).await;
        assert!(replies.iter().all(|(status, _)| *status == 200), "round {round}: {replies:?}");
        for i in 0..10 {
            assert_eq!(server.post(&format!("/counter/c{i}/increment"), "").await.0, 200);
        }
    }
    shipped_past(&server, 1).await;
    // Everything acknowledged more than an interval ago has shipped.
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill();
    std::fs::remove_dir_all(site.data()).unwrap();

    let restored = site.dir.path().join("restored");
    let said = restore(&file_url(&store), &restored, None).unwrap();
    assert!(said.contains("restored 11 objects"), "{said}");
    let server = Server::launch(None, &restored, &[], None);
    assert_eq!(server.post("/counter/shared/increment", "").await, (200, "41".into()));
    for i in 0..10 {
        assert_eq!(server.post(&format!("/counter/c{i}/increment"), "").await, (200, "6".into()), "c{i}");
    }
    assert_eq!(server.post("/counter/new/increment", "").await, (200, "1".into()));
}

/// A restore at a time gives each object as its last commit at or before that time left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_at_a_time_gives_the_state_of_that_time() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let store = site.dir.path().join("store");
    let server = site.start(&["--backup", &file_url(&store), "--backup-interval", "100ms"]);
    for _ in 0..3 {
        assert_eq!(server.post("/counter/t/increment", "").await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let between = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        assert_eq!(server.post("/counter/t/increment", "").await.0, 200);
    }
    assert_eq!(server.post("/counter/later/increment", "").await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill();

    let then = site.dir.path().join("then");
    restore(&file_url(&store), &then, Some(&between)).unwrap();
    let server = Server::launch(None, &then, &[], None);
    assert_eq!(server.post("/counter/t/increment", "").await, (200, "4".into()), "three before the time");
    assert_eq!(server.post("/counter/later/increment", "").await, (200, "1".into()), "made after the time");
    server.kill();

    let now = site.dir.path().join("now");
    restore(&file_url(&store), &now, None).unwrap();
    let server = Server::launch(None, &now, &[], None);
    assert_eq!(server.post("/counter/t/increment", "").await, (200, "6".into()));

    // A restore never writes over a data folder.
    let err = restore(&file_url(&store), &now, None).unwrap_err();
    assert!(err.contains("is not empty"), "{err}");
    let err = restore(&file_url(&store), &site.dir.path().join("x"), Some("yesterday")).unwrap_err();
    assert!(err.contains("RFC 3339"), "{err}");
}

/// The store goes away (its folder replaced by a file) and comes back: the host keeps serving,
/// its health says the backup is behind, and it catches up: nothing acknowledged is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_backup_keeps_serving_while_the_store_is_away_and_catches_up() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let store = site.dir.path().join("store");
    let server = site.start(&["--backup", &file_url(&store), "--backup-interval", "100ms"]);
    assert_eq!(server.post("/counter/k/increment", "").await.0, 200);
    shipped_past(&server, 0).await;
    let away = site.dir.path().join("away");
    std::fs::rename(&store, &away).unwrap();
    std::fs::write(&store, "not a folder").unwrap();
    for i in 2..=6 {
        assert_eq!(server.post("/counter/k/increment", "").await, (200, i.to_string()));
    }
    let mut behind = String::new();
    for _ in 0..50 {
        behind = server.get("/_wdo/health").await.1;
        if behind.contains("behind") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(behind.starts_with("ok\n") && behind.contains("behind"), "{behind}");
    assert!(server.log().contains("cannot write to the store"), "{}", server.log());
    std::fs::remove_file(&store).unwrap();
    std::fs::rename(&away, &store).unwrap();
    let mut health = String::new();
    for _ in 0..50 {
        health = server.get("/_wdo/health").await.1;
        if !health.contains("behind") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!health.contains("behind"), "{health}");
    server.kill();
    let restored = site.dir.path().join("restored");
    restore(&file_url(&store), &restored, None).unwrap();
    let server = Server::launch(None, &restored, &[], None);
    assert_eq!(server.post("/counter/k/increment", "").await, (200, "7".into()));
}
