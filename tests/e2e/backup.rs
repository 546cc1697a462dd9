//! Backup and restore: a host ships every commit to a backup store (`--backup`), and
//! `wdo restore` rebuilds a data folder from it, as of the latest commit or of a time.

use crate::harness::{Server, Site, concurrent_posts, guest};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Runs `wdo restore --from <store> --data <data> [--at <time>]`; its output, or its error.
pub(crate) fn restore(store: &str, data: &Path, at: Option<&str>) -> Result<String, String> {
    restore_with_env(store, data, at, &[])
}

pub(crate) fn restore_with_env(
    store: &str,
    data: &Path,
    at: Option<&str>,
    env: &[(&str, &str)],
) -> Result<String, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wdo"));
    command.args(["restore", "--from", store, "--data"]).arg(data);
    command.envs(env.iter().copied());
    if let Some(at) = at {
        command.args(["--at", at]);
    }
    let output = command.output().expect("run wdo restore");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() { Ok(text) } else { Err(text) }
}

pub(crate) fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Polls the host's health until `done` says yes (10 s at most); answers the health.
pub(crate) async fn health_until(server: &Server, what: &str, done: impl Fn(&str) -> bool) -> String {
    let mut health = String::new();
    for _ in 0..200 {
        health = server.get("/_wdo/health").await.1;
        if done(&health) {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("after 10 s the health does not say {what}: {health}\n{}", server.log());
}

/// Waits until every commit acknowledged so far is in the store.
pub(crate) async fn all_shipped(server: &Server) {
    health_until(server, "0 commits waiting", |h| h.contains(" 0 commits waiting")).await;
}

/// Waits until the health says the backup is behind (or no longer says so).
pub(crate) async fn health_when(server: &Server, behind: bool) -> String {
    health_until(server, if behind { "behind" } else { "caught up" }, |h| h.contains("behind") == behind).await
}

/// The batches shipped, as the health says.
pub(crate) fn batches(health: &str) -> u64 {
    health.lines().find_map(|l| l.split(": ").nth(1)?.split(" batches").next()?.parse().ok()).unwrap_or(0)
}

/// Waits until the health says a batch was shipped after `past` had been.
pub(crate) async fn shipped_past(server: &Server, past: u64) {
    health_until(server, &format!("more than {past} batches"), |h| batches(h) > past).await;
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
    all_shipped(&server).await;
    server.kill();
    let component = |store: &Path| {
        let dir = store.join("wdo/v1/components");
        let files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|f| f.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        std::fs::metadata(&files[0]).unwrap().modified().unwrap()
    };
    let written = component(&store);
    // A restart ships its commits again, but not the component: the store has it.
    let server = site.start(&["--backup", &file_url(&store), "--backup-interval", "100ms"]);
    assert_eq!(server.post("/counter/c0/increment", "").await, (200, "6".into()));
    all_shipped(&server).await;
    server.kill();
    let sizes = |folder: &str| -> Vec<u64> {
        let dir = store.join("wdo/v1").join(folder);
        std::fs::read_dir(dir).unwrap().map(|f| f.unwrap().metadata().unwrap().len()).collect()
    };
    assert_eq!(component(&store), written, "the component was stored once");
    let (components, batches) = (sizes("components"), sizes("log"));
    assert!(batches.iter().sum::<u64>() < components[0], "batches {batches:?}, component {components:?}");
    std::fs::remove_dir_all(site.data()).unwrap();

    let restored = site.dir.path().join("restored");
    let said = restore(&file_url(&store), &restored, None).unwrap();
    assert!(said.contains("restored 11 objects"), "{said}");
    let server = Server::launch(None, &restored, &[], None);
    assert_eq!(server.post("/counter/shared/increment", "").await, (200, "41".into()));
    assert_eq!(server.post("/counter/c0/increment", "").await, (200, "7".into()));
    for i in 1..10 {
        assert_eq!(server.post(&format!("/counter/c{i}/increment"), "").await, (200, "6".into()), "c{i}");
    }
    assert_eq!(server.post("/counter/new/increment", "").await, (200, "1".into()));
}

/// A restore at a time gives each object as its last commit at or before that time left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_at_a_time_gives_the_state_of_that_time() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let store = site.dir.path().join("store");
    // A second: the first increment's commit is dated before the first batch is written.
    let server = site.start(&["--backup", &file_url(&store), "--backup-interval", "1s"]);
    assert_eq!(server.post("/counter/t/increment", "").await.0, 200);
    // Times are kept to the millisecond: keep the next commit out of this one.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let first = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..2 {
        assert_eq!(server.post("/counter/t/increment", "").await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let between = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        assert_eq!(server.post("/counter/t/increment", "").await.0, 200);
    }
    assert_eq!(server.post("/counter/later/increment", "").await.0, 200);
    all_shipped(&server).await;
    server.kill();

    let then = site.dir.path().join("then");
    restore(&file_url(&store), &then, Some(&between)).unwrap();
    let server = Server::launch(None, &then, &[], None);
    assert_eq!(server.post("/counter/t/increment", "").await, (200, "4".into()), "three before the time");
    assert_eq!(server.post("/counter/later/increment", "").await, (200, "1".into()), "made after the time");
    server.kill();

    // Right after the first commit: the class's id secret, made before it, is there too (the
    // name finds the same object).
    let early = site.dir.path().join("early");
    restore(&file_url(&store), &early, Some(&first)).unwrap();
    let server = Server::launch(None, &early, &[], None);
    assert_eq!(server.post("/counter/t/increment", "").await, (200, "2".into()));
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
    let behind = health_when(&server, true).await;
    assert!(behind.starts_with("ok\n"), "{behind}");
    assert!(server.log().contains("cannot write to the store"), "{}", server.log());
    std::fs::remove_file(&store).unwrap();
    std::fs::rename(&away, &store).unwrap();
    health_when(&server, false).await;
    all_shipped(&server).await;
    server.kill();
    let restored = site.dir.path().join("restored");
    restore(&file_url(&store), &restored, None).unwrap();
    let server = Server::launch(None, &restored, &[], None);
    assert_eq!(server.post("/counter/k/increment", "").await, (200, "7".into()));
}

/// Async mode under load, the machine lost (`kill -9`, the data folder deleted): each object
/// comes back as one of its commits left it, never part of one (every event inserts 40 rows, so
/// the count is a multiple of 40), and no older than the interval (plus slack for a slow
/// machine) before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_backup_loses_at_most_the_last_interval_and_never_part_of_a_transaction() {
    use crate::harness::Client;
    let site = Site::new(&[("probe", guest("probe"))]);
    let store = site.dir.path().join("store");
    let server = site.start(&["--backup", &file_url(&store), "--backup-interval", "200ms"]);
    let started = std::time::Instant::now();
    let mut clients = Vec::new();
    for object in 0..4 {
        let addr = server.addr;
        clients.push(tokio::spawn(async move {
            // When each acknowledged event was answered.
            let mut acknowledged = Vec::new();
            let Some(mut connection) = Client::try_connect(addr).await else { return acknowledged };
            while let Some((status, body)) =
                connection.try_send("POST", &format!("/probe/p{object}/sql-insert?rows=40"), "").await
            {
                assert_eq!(status, 200, "{body}");
                acknowledged.push(started.elapsed());
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let killed_at = started.elapsed();
    server.kill();
    let slack = Duration::from_millis(200 + 1000);
    let mut must_have = Vec::new();
    for client in clients {
        let acknowledged = client.await.unwrap();
        assert!(acknowledged.len() >= 5, "too little traffic to tell: {acknowledged:?}");
        must_have.push(acknowledged.iter().filter(|at| **at + slack < killed_at).count() as i64 * 40);
    }
    std::fs::remove_dir_all(site.data()).unwrap();

    let restored = site.dir.path().join("restored");
    restore(&file_url(&store), &restored, None).unwrap();
    let server = Server::launch(None, &restored, &[], None);
    for (object, must_have) in must_have.into_iter().enumerate() {
        let query = serde_json::json!({"query": "SELECT count(*) FROM bench", "params": []});
        let (status, body) = server.post(&format!("/probe/p{object}/sql"), &query.to_string()).await;
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let rows = answer["rows"][0][0]["integer"].as_i64().unwrap();
        assert_eq!(rows % 40, 0, "p{object}: {rows} rows, part of a transaction");
        assert!(
            rows >= must_have,
            "p{object}: {rows} rows restored, {must_have} acknowledged over 1.2 s before the kill"
        );
    }
}

/// The names under the store's `folder`, sorted.
fn stored(store: &Path, folder: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.join("wdo/v1").join(folder))
        .map(|d| d.map(|f| f.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// With snapshots due often and a retention of 3 s: the host writes snapshots of every object,
/// deletes the batches and snapshots no restore inside the window needs, and a restore to now or
/// to a time inside the window gives that state, while one to a time before it is refused with
/// the earliest time it can reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_bound_the_log_and_history_past_the_retention_is_removed() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let store = site.dir.path().join("store");
    let flags = [
        "--backup",
        &file_url(&store),
        "--backup-interval",
        "100ms",
        "--backup-snapshot-every",
        "8KiB",
        "--backup-retention",
        "3s",
    ];
    let server = site.start(&flags);
    let mut before_the_window = None;
    let mut inside_the_window = (String::new(), 0);
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(7) || !store.join("wdo/v1/retention.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "no history was removed in 30 s: {}", server.log());
        rounds += 1;
        for i in 0..10 {
            assert_eq!(server.post(&format!("/counter/c{i}/increment"), "").await, (200, rounds.to_string()));
        }
        all_shipped(&server).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        if rounds == 1 {
            before_the_window = Some(now);
        } else {
            inside_the_window = (now, rounds);
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let health = server.get("/_wdo/health").await.1;
    let log = stored(&store, "log");
    assert!((log.len() as u64) < batches(&health), "{} batches kept of {}", log.len(), batches(&health));
    let snapshots = stored(&store, "snapshots");
    assert!(!snapshots.is_empty() && snapshots.len() < 8, "{snapshots:?}");
    // What is left of the log is what came after the oldest snapshot kept.
    assert!(log[0].as_str() > snapshots[0].as_str(), "log from {}, snapshots {snapshots:?}", log[0]);
    assert!(server.log().contains("snapshot written"), "{}", server.log());
    server.kill();

    let now = site.dir.path().join("now");
    let said = restore(&file_url(&store), &now, None).unwrap();
    assert!(said.contains("restored 10 objects"), "{said}");
    let server = Server::launch(None, &now, &[], None);
    for i in 0..10 {
        assert_eq!(server.get(&format!("/counter/c{i}/")).await, (200, rounds.to_string()), "c{i}");
    }
    server.kill();
    let (time, value) = inside_the_window;
    let then = site.dir.path().join("then");
    restore(&file_url(&store), &then, Some(&time)).unwrap();
    let server = Server::launch(None, &then, &[], None);
    assert_eq!(server.get("/counter/c3/").await, (200, value.to_string()));
    let err = restore(&file_url(&store), &site.dir.path().join("x"), before_the_window.as_deref()).unwrap_err();
    assert!(err.contains("keeps history from") && err.contains("--backup-retention"), "{err}");
}

/// `wdo restore --server URL CLASS NAME --at TIME`: the object's next event sees it as it was
/// then (in a fresh instance), other objects are untouched, the restore can be undone (it is a
/// change in the backup like any other), and a whole-host restore afterwards has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_object_is_restored_to_a_time_on_the_running_host_and_the_restore_can_be_undone() {
    let site = Site::new(&[("probe", guest("probe"))]);
    let store = site.dir.path().join("store");
    let token = "restore-test-token-0123456789";
    let server = site.start(&["--backup", &file_url(&store), "--backup-interval", "100ms", "--admin-token", token]);
    let now = || {
        std::thread::sleep(Duration::from_millis(20));
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        std::thread::sleep(Duration::from_millis(20));
        now
    };
    assert_eq!(server.post("/probe/p/put?key=k", "v1").await.0, 200);
    assert_eq!(server.post("/probe/other/put?key=k", "o1").await.0, 200);
    assert_eq!(server.post("/probe/p/alarm/set?in=1500", "").await.0, 200);
    let first = now();
    assert_eq!(server.post("/probe/p/put?key=k", "v2").await.0, 200);
    assert_eq!(server.post("/probe/p/alarm/delete", "").await.0, 200);
    let query = serde_json::json!({"query": "CREATE TABLE later (x)", "params": []}).to_string();
    assert_eq!(server.post("/probe/p/sql", &query).await.0, 200);
    assert_eq!(server.post("/probe/other/put?key=k", "o2").await.0, 200);
    let second = now();
    let restore_one = |at: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_wdo"))
            .args([
                "restore",
                "--server",
                &format!("http://{}", server.addr),
                "--token",
                token,
                "probe",
                "p",
                "--at",
                at,
            ])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{said}");
        said
    };

    let said = restore_one(&first);
    assert!(said.contains("restored probe/p as of"), "{said}");
    assert_eq!(server.get("/probe/p/instance").await, (200, "1".into()), "a fresh instance");
    assert_eq!(server.get("/probe/p/get?key=k").await, (200, "v1".into()));
    let (status, body) = server
        .post("/probe/p/sql", &serde_json::json!({"query": "SELECT * FROM later", "params": []}).to_string())
        .await;
    assert!(status != 200 && body.contains("no such table"), "{status} {body}");
    assert_eq!(server.get("/probe/other/get?key=k").await, (200, "o2".into()), "other objects are untouched");
    // The alarm it had then (deleted since) is back in the alarm index, and fires.
    let mut fired = String::new();
    for _ in 0..100 {
        fired = server.get("/probe/p/alarm/fired").await.1;
        if fired != "[]" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(fired, "[]", "the restored alarm did not fire");
    let third = now();
    // Undone: back to before the restore, then forward to after it.
    restore_one(&second);
    assert_eq!(server.get("/probe/p/get?key=k").await, (200, "v2".into()));
    restore_one(&third);
    assert_eq!(server.get("/probe/p/get?key=k").await, (200, "v1".into()));
    assert_eq!(server.post("/probe/p/put?key=n", "after").await.0, 200);

    // Clear refusals: an object with nothing in the backup by then, an unknown class.
    let output = Command::new(env!("CARGO_BIN_EXE_wdo"))
        .args(["restore", "--server", &format!("http://{}", server.addr), "--token", token, "probe", "nobody"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && said.contains("probe/nobody has no commit in the backup store"), "{said}");
    let output = Command::new(env!("CARGO_BIN_EXE_wdo"))
        .args(["restore", "--server", &format!("http://{}", server.addr), "--token", token, "nope", "p"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && said.contains("unknown class `nope`"), "{said}");
    all_shipped(&server).await;
    server.kill();

    let restored = site.dir.path().join("restored");
    restore(&file_url(&store), &restored, None).unwrap();
    let server = Server::launch(None, &restored, &[], None);
    assert_eq!(server.get("/probe/p/get?key=k").await, (200, "v1".into()));
    assert_eq!(server.get("/probe/p/get?key=n").await, (200, "after".into()));
    assert_eq!(server.get("/probe/other/get?key=k").await, (200, "o2".into()));
    // A host without a backup store says what restoring an object needs.
    let bearer = format!("Bearer {}", std::fs::read_to_string(restored.join("admin-token")).unwrap().trim());
    let (status, body) = server
        .client()
        .await
        .send_with_headers("POST", "/_wdo/admin/restore/probe/p", &[("authorization", &bearer)], b"{}".to_vec())
        .await;
    let body = String::from_utf8_lossy(&body);
    assert!(status == 400 && body.contains("needs a backup store: start the host with --backup"), "{status} {body}");
}

/// An object's alarm comes back with a restore, and one that came due while no host ran fires
/// once the restored folder is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_due_while_the_host_was_lost_fires_after_the_restore() {
    let site = Site::new(&[("probe", guest("probe"))]);
    let store = site.dir.path().join("store");
    let server = site.start(&["--backup", &file_url(&store), "--backup-interval", "100ms"]);
    let (status, at) = server.post("/probe/waker/alarm/set?in=1500", "").await;
    assert_eq!(status, 200, "{at}");
    assert_eq!(server.post("/probe/plain/put?key=k", "v").await.0, 200);
    all_shipped(&server).await;
    server.kill();

    let restored = site.dir.path().join("restored");
    let said = restore(&file_url(&store), &restored, None).unwrap();
    assert!(said.contains("1 alarms"), "{said}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let server = Server::launch(None, &restored, &[], None);
    let mut fired = String::new();
    for _ in 0..100 {
        fired = server.get("/probe/waker/alarm/fired").await.1;
        if fired != "[]" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fired: serde_json::Value = serde_json::from_str(&fired).unwrap();
    assert_eq!(fired.as_array().map(Vec::len), Some(1), "{fired}");
    let (due, ran) = (at.parse::<i64>().unwrap(), fired[0]["at_ms"].as_i64().unwrap());
    assert!(ran >= due, "ran at {ran}, due at {due}");
    assert_eq!(server.get("/probe/plain/get?key=k").await, (200, "v".into()));
}

/// A real S3-protocol server (s3s-fs, which `make test` builds into .tools) on a loopback port,
/// its buckets folders under `root`; killed when dropped.
pub(crate) struct S3Server {
    child: std::process::Child,
    pub(crate) port: u16,
    root: std::path::PathBuf,
}

impl S3Server {
    const KEY: &str = "wdo-test-key";
    const SECRET: &str = "wdo-test-secret-0123456789";

    pub(crate) fn start(root: &Path, bucket: &str) -> S3Server {
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        S3Server::start_on(root, port)
    }

    pub(crate) fn start_on(root: &Path, port: u16) -> S3Server {
        let binary = std::env::var("WDO_S3_SERVER")
            .unwrap_or_else(|_| crate::harness::workspace().join(".tools/cargo/bin/s3s-fs").display().to_string());
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", Self::KEY, "--secret-key"])
            .arg(Self::SECRET)
            .arg(root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary} (make test builds it): {e}"));
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return S3Server { child, port, root: root.to_path_buf() };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the S3 server did not listen on {port}");
    }

    /// What a host or `wdo restore` needs in its environment to reach it.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", Self::KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET.into()),
        ]
    }

    pub(crate) fn stop(mut self) -> (std::path::PathBuf, u16) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.root.clone(), self.port)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The same against an S3 server: the host ships there, the server stops (the host keeps
/// serving and says the backup is behind) and comes back (it catches up), the data folder is
/// lost, and a restore from the bucket has every increment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_in_an_s3_bucket_survives_the_server_going_away_and_restores_every_increment() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let s3 = S3Server::start(&site.dir.path().join("s3"), "backups");
    let env = s3.env();
    let url = "s3://backups/hosts/one";
    let flags = ["--backup", url, "--backup-interval", "100ms"];
    let server = Server::launch_with_env(Some(&site.manifest()), &site.data(), &flags, None, &borrowed(&env));
    for i in 0..10 {
        assert_eq!(server.post(&format!("/counter/s{i}/increment"), "").await.0, 200);
    }
    shipped_past(&server, 0).await;
    let (root, port) = s3.stop();
    for i in 0..10 {
        assert_eq!(server.post(&format!("/counter/s{i}/increment"), "").await, (200, "2".into()));
    }
    health_when(&server, true).await;
    let _s3 = S3Server::start_on(&root, port);
    health_when(&server, false).await;
    all_shipped(&server).await;
    server.kill();
    std::fs::remove_dir_all(site.data()).unwrap();

    let restored = site.dir.path().join("restored");
    let said = restore_with_env(url, &restored, None, &borrowed(&env)).unwrap();
    assert!(said.contains("restored 10 objects"), "{said}");
    let server = Server::launch(None, &restored, &[], None);
    for i in 0..10 {
        assert_eq!(server.post(&format!("/counter/s{i}/increment"), "").await, (200, "3".into()), "s{i}");
    }
    // A bucket that does not exist is an error naming it.
    let err = restore_with_env("s3://nowhere/x", &site.dir.path().join("none"), None, &borrowed(&env)).unwrap_err();
    assert!(err.contains("nowhere"), "{err}");
}
