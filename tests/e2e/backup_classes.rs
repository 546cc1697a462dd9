//! A restore follows what deploys did to classes: a renamed class comes back under its new name
//! with its objects (names still find them), a deleted class's data does not come back, and a
//! restore to a time before the deploy gives the classes as they were then.

use crate::backup::{all_shipped, file_url, restore};
use crate::harness::{Server, guest};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

fn deploy(server: &Server, data: &Path, manifest: &Path, extra: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_wdo"))
        .arg("deploy")
        .arg(manifest)
        .args(extra)
        .arg("--server")
        .arg(format!("http://{}", server.addr))
        .arg("--data")
        .arg(data)
        .env_remove("WDO_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_follows_renamed_and_deleted_classes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, store) = (dir.path().join("data"), dir.path().join("store"));
    let counter = guest("counter").display().to_string();
    let server = Server::launch(None, &data, &["--backup", &file_url(&store), "--backup-interval", "100ms"], None);
    let first = dir.path().join("a.toml");
    std::fs::write(
        &first,
        format!("[classes.alpha]\ncomponent = {counter:?}\n[classes.gone]\ncomponent = {counter:?}\n"),
    )
    .unwrap();
    deploy(&server, &data, &first, &[]);
    for n in 1..=3 {
        assert_eq!(server.post("/alpha/x/increment", "").await, (200, n.to_string()));
    }
    assert_eq!(server.post("/gone/y/increment", "").await, (200, "1".into()));
    all_shipped(&server).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let second = dir.path().join("b.toml");
    std::fs::write(&second, format!("[classes.beta]\ncomponent = {counter:?}\nrenamed_from = \"alpha\"\n")).unwrap();
    deploy(&server, &data, &second, &["--allow-delete"]);
    assert_eq!(server.post("/beta/x/increment", "").await, (200, "4".into()));
    all_shipped(&server).await;
    server.kill();
    std::fs::remove_dir_all(&data).unwrap();

    let now = dir.path().join("now");
    restore(&file_url(&store), &now, None).unwrap();
    assert!(!now.join("objects/alpha").exists() && !now.join("objects/gone").exists());
    let server = Server::launch(None, &now, &[], None);
    assert_eq!(server.get("/beta/x/").await, (200, "4".into()));
    assert_eq!(server.get("/alpha/x/").await.0, 404);
    assert_eq!(server.get("/gone/y/").await.0, 404);
    server.kill();

    let then = dir.path().join("then");
    restore(&file_url(&store), &then, Some(&before)).unwrap();
    let server = Server::launch(None, &then, &[], None);
    assert_eq!(server.get("/alpha/x/").await, (200, "3".into()));
    assert_eq!(server.get("/gone/y/").await, (200, "1".into()));
    assert_eq!(server.get("/beta/x/").await.0, 404);
}
