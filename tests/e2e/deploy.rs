//! `wdo deploy`, `wdo versions`, `wdo rollback` and the admin API, against a running host that
//! started without a manifest. deploy-v1 and deploy-v2 are the same counter (storage key
//! `value`) answering `/version` with 1 or 2, and echoing WebSocket text as `v1:` or `v2:`.

use crate::harness::{OWN_CACHE, Server, guest};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A host started with no manifest, and a folder for manifests.
struct Deploying {
    server: Server,
    dir: tempfile::TempDir,
    flags: Vec<String>,
}

/// What a `wdo` command printed.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Deploying {
    /// A host with its own compile cache: the tests look at what a deploy compiles and deletes.
    fn start(flags: &[&str]) -> Deploying {
        let dir = tempfile::tempdir().unwrap();
        let flags: Vec<String> = flags.iter().copied().chain([OWN_CACHE]).map(str::to_string).collect();
        let flags_ref: Vec<&str> = flags.iter().map(String::as_str).collect();
        let server = Server::launch(None, &dir.path().join("data"), &flags_ref, None);
        Deploying { server, dir, flags }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `kill -9` and start again on the same data folder, still without a manifest.
    fn restart(self) -> Deploying {
        let Deploying { server, dir, flags } = self;
        server.kill();
        let flags_ref: Vec<&str> = flags.iter().map(String::as_str).collect();
        let server = Server::launch(None, &dir.path().join("data"), &flags_ref, None);
        Deploying { server, dir, flags }
    }

    /// Writes a manifest: (class, guest, renamed_from).
    fn manifest(&self, file: &str, classes: &[(&str, &str, Option<&str>)]) -> PathBuf {
        let mut text = String::new();
        for (class, component, renamed_from) in classes {
            text.push_str(&format!("[classes.{class}]\ncomponent = {:?}\n", component_path(component)));
            if let Some(from) = renamed_from {
                text.push_str(&format!("renamed_from = {from:?}\n"));
            }
        }
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `wdo <args> --server <this host> --data <its data>` (the token comes from the data).
    fn wdo(&self, args: &[&str]) -> Ran {
        let output = Command::new(env!("CARGO_BIN_EXE_wdo"))
            .args(args)
            .arg("--server")
            .arg(format!("http://{}", self.server.addr))
            .arg("--data")
            .arg(self.data())
            .env_remove("WDO_ADMIN_TOKEN")
            .output()
            .expect("run wdo");
        Ran {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn deploy(&self, manifest: &Path, extra: &[&str]) -> Ran {
        let mut args = vec!["deploy", manifest.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.wdo(&args)
    }

    /// Deploys and expects success; returns the report's changes.
    fn deploy_ok(&self, manifest: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let ran = self.deploy(manifest, &args);
        assert!(ran.ok, "deploy failed: {}", ran.stderr);
        let report: serde_json::Value = serde_json::from_str(&ran.stdout).expect("a JSON report");
        report["changes"].as_array().unwrap().clone()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.data().join("admin-token")).unwrap().trim().to_string()
    }

    /// A raw admin API request with the right token.
    async fn admin(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, String) {
        let auth = format!("Bearer {}", self.token());
        let mut client = self.server.client().await;
        let (status, body) = client.send_with_headers(method, path, &[("authorization", &auth)], body).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn component_path(guest_name: &str) -> String {
    if guest_name.starts_with('/') { guest_name.to_string() } else { guest(guest_name).display().to_string() }
}

/// A copy of a guest with a custom section appended: the same code under another sha256.
fn variant_of(guest_name: &str, dir: &Path, tag: &str) -> String {
    let mut bytes = std::fs::read(guest(guest_name)).unwrap();
    let name = b"wdo-test";
    let body = 1 + name.len() + tag.len();
    assert!(body < 128, "sizes are one LEB128 byte each");
    bytes.extend_from_slice(&[0, body as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    let path = dir.join(format!("{guest_name}-{tag}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn sha256_of_file(path: &str) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Where a host keeps the uploaded component with this sha256.
fn stored_component(data: &Path, hash: &str) -> PathBuf {
    data.join(format!("deploy/components/{hash}.wasm"))
}

/// The one change for `class` in a report.
fn change<'a>(changes: &'a [serde_json::Value], class: &str) -> &'a serde_json::Value {
    changes.iter().find(|c| c["class"] == class).unwrap_or_else(|| panic!("no change for {class} in {changes:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_host_takes_a_deploy_and_keeps_it_across_a_restart() {
    let site = Deploying::start(&[]);
    assert_eq!(site.server.get("/deployed/a/version").await.0, 404);
    let v1 = site.manifest("v1.toml", &[("deployed", "deploy-v1", None)]);
    let ran = site.deploy(&v1, &[]);
    assert!(ran.ok, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("deployed") && ran.stdout.contains("created") && ran.stdout.contains("v1"),
        "{}",
        ran.stdout
    );
    // Visible as soon as deploy returns.
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "1".into()));
    assert_eq!(site.server.post("/deployed/a/increment", "").await, (200, "1".into()));

    let site = site.restart();
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "1".into()));
    assert_eq!(site.server.post("/deployed/a/increment", "").await, (200, "2".into()));
    let versions = site.wdo(&["versions"]);
    assert!(versions.ok, "{}", versions.stderr);
    let hash = sha256_of_file(&component_path("deploy-v1"));
    assert!(versions.stdout.contains("deployed") && versions.stdout.contains(&hash[..12]), "{}", versions.stdout);
    // The token file is the host's secret.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(site.data().join("admin-token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_under_load_loses_no_increment_and_fails_no_request() {
    let site = std::sync::Arc::new(Deploying::start(&[]));
    let v1 = site.manifest("v1.toml", &[("deployed", "deploy-v1", None)]);
    let v2 = site.manifest("v2.toml", &[("deployed", "deploy-v2", None)]);
    site.deploy_ok(&v1, &[]);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for object in 0..4 {
        let (site, stop) = (site.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut client = site.server.client().await;
            let mut count = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || count < 50 {
                let (status, body) = client.send("POST", &format!("/deployed/o{object}/increment"), "").await;
                assert_eq!(status, 200, "increment {} of o{object} failed: {body}", count + 1);
                count += 1;
                assert_eq!(body, count.to_string(), "o{object} skipped or repeated an increment");
            }
            count
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // An event that is running when the switch happens finishes on the old version.
    let slow = {
        let site = site.clone();
        tokio::spawn(async move { site.server.get("/deployed/slow-one/slow").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let deployer = site.clone();
    let changes = tokio::task::spawn_blocking(move || deployer.deploy_ok(&v2, &[])).await.unwrap();
    assert_eq!(change(&changes, "deployed")["action"], "updated");
    assert_eq!(change(&changes, "deployed")["version"], 2);
    // The next event of every object runs the new version, right after deploy returns.
    assert_eq!(site.server.get("/deployed/o0/version").await, (200, "2".into()));
    assert_eq!(site.server.get("/deployed/fresh/version").await, (200, "2".into()));
    assert_eq!(slow.await.unwrap(), (200, "1".into()));
    assert_eq!(site.server.get("/deployed/slow-one/slow").await, (200, "2".into()));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for (object, client) in clients.into_iter().enumerate() {
        let count = client.await.unwrap();
        assert_eq!(site.server.get(&format!("/deployed/o{object}/")).await, (200, count.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_stay_open_across_a_deploy_and_then_see_the_new_code() {
    let site = Deploying::start(&[]);
    site.deploy_ok(&site.manifest("v1.toml", &[("deployed", "deploy-v1", None)]), &[]);
    let mut socket = site.server.socket("/deployed/room/ws").await;
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("v1:hello"));

    site.deploy_ok(&site.manifest("v2.toml", &[("deployed", "deploy-v2", None)]), &[]);
    socket.send(Message::text("again")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("v2:again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_the_reason_and_the_running_version_serves() {
    let site = Deploying::start(&["--max-component-size", "120KiB"]);
    site.deploy_ok(&site.manifest("v1.toml", &[("deployed", "deploy-v1", None)]), &[]);
    site.server.post("/deployed/a/increment", "").await;

    let junk = site.dir.path().join("junk.wasm");
    std::fs::write(&junk, "not wasm at all").unwrap();
    let core = site.dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let cases: [(&str, String, &str); 6] = [
        ("not a component", junk.display().to_string(), "is not WebAssembly"),
        ("a core module", core.display().to_string(), "is a core WebAssembly module, not a component"),
        ("another world", "other-world".into(), "does not implement the world `wdo:object/durable-object`"),
        ("the worker world", "worker-counter-worker".into(), "missing export `wdo:object/handler@0.1.0`"),
        ("an unknown import", "stray-import".into(), "test:stray/gadget"),
        ("over the size limit", "chat".into(), "larger than the limit of 122880 bytes"),
    ];
    for (what, component, expected) in cases {
        let manifest = site.manifest("bad.toml", &[("deployed", &component, None)]);
        let ran = site.deploy(&manifest, &[]);
        assert!(!ran.ok, "{what}: deploy succeeded");
        assert!(ran.stderr.contains(expected), "{what}: expected {expected:?} in {:?}", ran.stderr);
        assert!(
            ran.stderr.contains("deployed") || what == "over the size limit",
            "{what}: the class is not named: {}",
            ran.stderr
        );
        assert_eq!(site.server.get("/deployed/a/version").await, (200, "1".into()), "{what}");
    }

    // The same refusals over the admin API are 4xx.
    let bytes = std::fs::read(guest("deploy-v2")).unwrap();
    let hash = hex::encode(Sha256::digest(&bytes));
    let (status, body) = site.admin("PUT", &format!("/_wdo/admin/components/{hash}"), bytes[..1000].to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("truncated or damaged") && body.contains("1000 bytes"), "{body}");
    assert_eq!(site.admin("HEAD", &format!("/_wdo/admin/components/{hash}"), Vec::new()).await.0, 404);
    let chat = std::fs::read(guest("chat")).unwrap();
    let chat_hash = hex::encode(Sha256::digest(&chat));
    assert_eq!(site.admin("PUT", &format!("/_wdo/admin/components/{chat_hash}"), chat).await.0, 413);
    let stray = std::fs::read(guest("stray-import")).unwrap();
    let stray_hash = hex::encode(Sha256::digest(&stray));
    assert_eq!(site.admin("PUT", &format!("/_wdo/admin/components/{stray_hash}"), stray).await.0, 201);
    let (status, body) =
        site.admin("POST", &format!("/_wdo/admin/components/{stray_hash}/compile?class=deployed"), Vec::new()).await;
    assert_eq!(status, 422, "{body}");
    let plan = serde_json::json!({ "classes": [{ "name": "deployed", "hash": stray_hash }] });
    let (status, body) = site.admin("POST", "/_wdo/admin/deploy", plan.to_string().into_bytes()).await;
    assert_eq!((status, body.contains("test:stray/gadget")), (422, true), "{body}");
    let plan = serde_json::json!({ "classes": [{ "name": "deployed", "hash": "ab".repeat(32) }] });
    let (status, body) = site.admin("POST", "/_wdo/admin/deploy", plan.to_string().into_bytes()).await;
    assert_eq!((status, body.contains("was uploaded")), (400, true), "{body}");

    // An upload whose connection ends early: the host sees fewer bytes than announced.
    let mut stream = tokio::net::TcpStream::connect(site.server.addr).await.unwrap();
    let head = format!(
        "PUT /_wdo/admin/components/{hash} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n",
        site.token(),
        bytes.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("cut short"), "{answer}");
    assert_eq!(site.admin("HEAD", &format!("/_wdo/admin/components/{hash}"), Vec::new()).await.0, 404);

    // Nothing changed: one version, still serving, its data intact.
    let versions = site.wdo(&["versions", "deployed", "--json"]);
    let versions: serde_json::Value = serde_json::from_str(&versions.stdout).unwrap();
    assert_eq!(versions["deployed"]["versions"].as_array().unwrap().len(), 1);
    assert_eq!(site.server.post("/deployed/a/increment", "").await, (200, "2".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_redeploy_uploads_and_compiles_nothing() {
    let site = Deploying::start(&[]);
    let manifest = site.manifest("app.toml", &[("deployed", "deploy-v1", None), ("counter", "counter", None)]);
    let first = site.deploy_ok(&manifest, &[]);
    assert_eq!(change(&first, "deployed")["action"], "created");
    assert_eq!(change(&first, "deployed")["uploaded"], true);
    assert_eq!(change(&first, "deployed")["compiled"], true);
    let again = site.deploy_ok(&manifest, &[]);
    for class in ["deployed", "counter"] {
        let line = change(&again, class);
        assert_eq!(
            (&line["action"], &line["uploaded"], &line["compiled"]),
            (&"unchanged".into(), &false.into(), &false.into())
        );
        assert_eq!(line["version"], 1);
    }
    // The same bytes under a new class name: uploaded already, compiled already.
    let more = site.manifest(
        "more.toml",
        &[("deployed", "deploy-v1", None), ("counter", "counter", None), ("twin", "deploy-v1", None)],
    );
    let line = change(&site.deploy_ok(&more, &[]), "twin").clone();
    assert_eq!(
        (&line["action"], &line["uploaded"], &line["compiled"]),
        (&"created".into(), &false.into(), &false.into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_class_keeps_its_objects_data_and_alarms() {
    let site = Deploying::start(&[]);
    site.deploy_ok(&site.manifest("a.toml", &[("alpha", "deploy-v1", None), ("notes", "reminder", None)]), &[]);
    for n in 1..=3 {
        assert_eq!(site.server.post("/alpha/x/increment", "").await, (200, n.to_string()));
    }
    // A reminder due after the rename.
    assert_eq!(site.server.post("/notes/x?in_ms=1000", "after the rename").await.0, 201);
    let renamed =
        site.manifest("b.toml", &[("beta", "deploy-v2", Some("alpha")), ("memos", "reminder", Some("notes"))]);
    let changes = site.deploy_ok(&renamed, &[]);
    let line = change(&changes, "beta");
    assert_eq!(
        (&line["action"], &line["renamed_from"], &line["version"]),
        (&"renamed".into(), &"alpha".into(), &2.into())
    );
    assert_eq!(site.server.get("/beta/x/").await, (200, "3".into()));
    assert_eq!(site.server.get("/beta/x/version").await, (200, "2".into()));
    assert_eq!(site.server.get("/alpha/x/").await.0, 404);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = site.server.get("/memos/x").await;
        assert_eq!(status, 200, "{body}");
        let state: serde_json::Value = serde_json::from_str(&body).unwrap();
        if state["fired"] == serde_json::json!(["after the rename"]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the alarm did not follow the rename: {state}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Deploying the same manifest again is a no-op, and so is a restart.
    assert_eq!(change(&site.deploy_ok(&renamed, &[]), "beta")["action"], "unchanged");
    let site = site.restart();
    assert_eq!(site.server.post("/beta/x/increment", "").await, (200, "4".into()));
    assert!(site.data().join("objects/beta/secret").exists() && !site.data().join("objects/alpha").exists());

    // Renaming from a class that does not exist is refused.
    let wrong = site.manifest("c.toml", &[("gamma", "deploy-v2", Some("nope"))]);
    let ran = site.deploy(&wrong, &[]);
    assert!(!ran.ok && ran.stderr.contains("no class `nope` is deployed"), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_class_needs_allow_delete_and_removes_its_data() {
    let site = Deploying::start(&[]);
    let beta = variant_of("deploy-v1", site.dir.path(), "beta");
    let beta_component = stored_component(&site.data(), &sha256_of_file(&beta));
    site.deploy_ok(&site.manifest("ab.toml", &[("alpha", "deploy-v1", None), ("beta", &beta, None)]), &[]);
    site.server.post("/beta/x/increment", "").await;
    let mut socket = site.server.socket("/beta/x/ws").await;

    let only_alpha = site.manifest("a.toml", &[("alpha", "deploy-v1", None)]);
    let ran = site.deploy(&only_alpha, &[]);
    assert!(!ran.ok, "deploy deleted without --allow-delete");
    assert!(
        ran.stderr.contains("would delete class `beta`") && ran.stderr.contains("--allow-delete"),
        "{}",
        ran.stderr
    );
    assert_eq!(site.server.get("/beta/x/").await, (200, "1".into()));

    let changes = site.deploy_ok(&only_alpha, &["--allow-delete"]);
    assert_eq!(change(&changes, "beta")["action"], "deleted");
    assert_eq!(change(&changes, "alpha")["action"], "unchanged");
    assert_eq!(site.server.get("/beta/x/").await.0, 404);
    assert!(!site.data().join("objects/beta").exists());
    assert!(!beta_component.exists(), "no version uses the deleted class's component");
    // Its sockets are closed with 1001 (going away).
    match socket.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // A new class of that name starts from nothing.
    site.deploy_ok(&site.manifest("ab.toml", &[("alpha", "deploy-v1", None), ("beta", &beta, None)]), &[]);
    assert_eq!(site.server.get("/beta/x/").await, (200, "0".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_token() {
    let site = Deploying::start(&[]);
    let mut client = site.server.client().await;
    for headers in
        [vec![], vec![("authorization", "Bearer wrong-token-wrong-token")], vec![("authorization", "Basic abc")]]
    {
        let (status, body) = client.send_with_headers("GET", "/_wdo/admin/deployed", &headers, Vec::new()).await;
        assert_eq!(status, 401, "{headers:?}: {}", String::from_utf8_lossy(&body));
        let plan = br#"{"classes": []}"#.to_vec();
        assert_eq!(client.send_with_headers("POST", "/_wdo/admin/deploy", &headers, plan).await.0, 401);
    }
    let manifest = site.manifest("v1.toml", &[("deployed", "deploy-v1", None)]);
    let ran = site.deploy(&manifest, &["--token", "wrong-token-wrong-token"]);
    assert!(!ran.ok && ran.stderr.contains("admin token"), "{}", ran.stderr);
    assert_eq!(site.server.get("/deployed/a/version").await.0, 404);
    assert!(site.deploy(&manifest, &["--token", &site.token()]).ok);
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "1".into()));

    // A token given to `serve` replaces the file's.
    let other = Deploying::start(&["--admin-token", "a-token-of-my-own-choosing"]);
    let manifest = other.manifest("v1.toml", &[("deployed", "deploy-v1", None)]);
    assert!(!other.deploy(&manifest, &[]).ok, "the token file's token must not work");
    let ran = other.deploy(&manifest, &["--token", "a-token-of-my-own-choosing"]);
    assert!(ran.ok, "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_switches_versions_without_an_upload_and_survives_a_restart() {
    let site = Deploying::start(&[]);
    site.deploy_ok(&site.manifest("v1.toml", &[("deployed", "deploy-v1", None)]), &[]);
    site.deploy_ok(&site.manifest("v2.toml", &[("deployed", "deploy-v2", None)]), &[]);
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "2".into()));
    site.server.post("/deployed/a/increment", "").await;

    let ran = site.wdo(&["rollback", "deployed"]);
    assert!(ran.ok && ran.stdout.contains("rolled back") && ran.stdout.contains("v1"), "{} {}", ran.stdout, ran.stderr);
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "1".into()));
    assert_eq!(site.server.get("/deployed/a/").await, (200, "1".into()));
    let ran = site.wdo(&["rollback", "deployed"]);
    assert!(!ran.ok && ran.stderr.contains("no version before 1"), "{}", ran.stderr);
    let ran = site.wdo(&["rollback", "deployed", "7"]);
    assert!(!ran.ok && ran.stderr.contains("has no version 7 (versions: 1, 2)"), "{}", ran.stderr);
    let ran = site.wdo(&["rollback", "nope"]);
    assert!(!ran.ok && ran.stderr.contains("no class `nope` is deployed"), "{}", ran.stderr);

    let site = site.restart();
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "1".into()));
    let ran = site.wdo(&["rollback", "deployed", "v2"]);
    assert!(ran.ok, "{}", ran.stderr);
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "2".into()));
    let versions = site.wdo(&["versions", "--json"]);
    let versions: serde_json::Value = serde_json::from_str(&versions.stdout).unwrap();
    assert_eq!(versions["deployed"]["current"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_past_keep_versions_are_forgotten_with_their_components() {
    let site = Deploying::start(&["--keep-versions", "2"]);
    let (one, two) = (component_path("deploy-v1"), component_path("deploy-v2"));
    let three = variant_of("deploy-v1", site.dir.path(), "three");
    let (h1, h2, h3) = (sha256_of_file(&one), sha256_of_file(&two), sha256_of_file(&three));
    for (file, component) in [("1.toml", &one), ("2.toml", &two), ("3.toml", &three)] {
        site.deploy_ok(&site.manifest(file, &[("deployed", component, None)]), &[]);
    }
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "1".into()), "v3 runs deploy-v1's code");
    let data = site.data();
    let stored = |hash: &str| stored_component(&data, hash).exists();
    let compiled = |hash: &str| {
        let fingerprints = std::fs::read_dir(data.join("cache")).unwrap();
        fingerprints.flatten().any(|dir| dir.path().join(format!("{hash}.cwasm")).exists())
    };
    assert!(!stored(&h1) && stored(&h2) && stored(&h3));
    assert!(!compiled(&h1) && compiled(&h2) && compiled(&h3));
    let ran = site.wdo(&["rollback", "deployed", "1"]);
    assert!(!ran.ok && ran.stderr.contains("has no version 1 (versions: 2, 3)"), "{}", ran.stderr);

    // Back to version 2, then deploy-v1 again: version 4 (a new upload of a deleted component)
    // and version 3 stay; version 2's component goes although it ran a moment ago.
    assert!(site.wdo(&["rollback", "deployed", "2"]).ok);
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "2".into()));
    let changes = site.deploy_ok(&site.manifest("4.toml", &[("deployed", &one, None)]), &[]);
    assert_eq!(change(&changes, "deployed")["version"], 4);
    assert!(stored(&h1) && !stored(&h2) && stored(&h3) && !compiled(&h2));
    let versions: serde_json::Value = serde_json::from_str(&site.wdo(&["versions", "--json"]).stdout).unwrap();
    let numbers: Vec<u64> =
        versions["deployed"]["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [3, 4]);

    // A deploy that asked for a component (as `wdo deploy` does before it uploads) and has not
    // been applied yet keeps it, though the deploy in between forgets the version that used it.
    assert_eq!(site.admin("GET", &format!("/_wdo/admin/components/{h3}"), Vec::new()).await.0, 200);
    site.deploy_ok(&site.manifest("5.toml", &[("deployed", &two, None)]), &[]);
    assert!(stored(&h3) && stored(&h2) && stored(&h1), "version 3 is forgotten but its component is awaited");
    site.deploy_ok(&site.manifest("6.toml", &[("deployed", &three, None)]), &[]);
    assert!(!stored(&h1) && stored(&h2) && stored(&h3));

    // Uploads no deploy used: deleted at start-up once a day old, kept before.
    let (old, fresh) = ("a".repeat(64), "b".repeat(64));
    for hash in [&old, &fresh] {
        std::fs::write(stored_component(&data, hash), b"\0asm never deployed").unwrap();
    }
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
    let file = std::fs::File::options().write(true).open(stored_component(&data, &old)).unwrap();
    file.set_modified(two_days_ago).unwrap();
    let site = site.restart();
    assert_eq!(site.server.get("/deployed/a/version").await, (200, "1".into()));
    assert!(!stored(&old) && stored(&fresh) && stored(&h2) && stored(&h3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_manifest_deploys_it_and_keeps_what_was_deployed_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let manifest = dir.path().join("wdo.toml");
    std::fs::write(&manifest, format!("[classes.counter]\ncomponent = {:?}\n", component_path("counter"))).unwrap();
    let server = Server::launch(Some(&manifest), &data, &[], None);
    assert_eq!(server.post("/counter/a/increment", "").await, (200, "1".into()));
    let site = Deploying { server, dir, flags: Vec::new() };
    site.deploy_ok(&site.manifest("more.toml", &[("counter", "counter", None), ("deployed", "deploy-v1", None)]), &[]);
    let Deploying { server, dir, .. } = site;
    server.kill();
    let server = Server::launch(Some(&manifest), &data, &[], None);
    assert_eq!(server.post("/counter/a/increment", "").await, (200, "2".into()));
    assert_eq!(server.get("/deployed/a/version").await, (200, "1".into()));
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_is_deployed_switched_and_deleted_like_a_class() {
    guest("worker-counter-worker");
    guest("worker-counter-object");
    let site = Deploying::start(&["--call-route"]);
    let with_worker = crate::harness::workspace().join("examples/worker-counter/wdo.toml");
    let changes = site.deploy_ok(&with_worker, &[]);
    assert_eq!(change(&changes, "[worker]")["action"], "created");
    assert_eq!(site.server.get("/increment?name=A").await, (200, "1".into()));

    // Without the worker in the manifest, the deploy needs --allow-delete.
    let classes_only = site.manifest("plain.toml", &[("counter", "worker-counter-object", None)]);
    let ran = site.deploy(&classes_only, &[]);
    assert!(!ran.ok && ran.stderr.contains("would delete the worker"), "{}", ran.stderr);
    assert_eq!(site.server.get("/increment?name=A").await, (200, "2".into()));
    assert_eq!(change(&site.deploy_ok(&classes_only, &["--allow-delete"]), "[worker]")["action"], "deleted");
    // Requests reach objects by path again (this counter only answers calls), with their data.
    assert_eq!(site.server.get("/increment?name=A").await.0, 400); // no object name: no worker
    assert_eq!(site.server.post("/_call/counter/A/getCounterValue", "").await, (200, "2".into()));

    // Back, then rolled back to nothing earlier: the worker has one version only.
    site.deploy_ok(&with_worker, &[]);
    assert_eq!(site.server.get("/?name=A").await, (200, "2".into()));
    let versions = site.wdo(&["versions", "[worker]"]);
    assert!(versions.ok && versions.stdout.contains("[worker]"), "{}", versions.stdout);
    let ran = site.wdo(&["rollback", "--worker"]);
    assert!(!ran.ok && ran.stderr.contains("[worker] has no version before"), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_deploy_interrupted_at_any_step_is_finished_at_the_next_start() {
    for step in ["deploy:intent-written", "deploy:moved", "deploy:state-written"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = Server::launch_with_env(None, &data, &[], None, &[("WDO_CRASH_AT", step)]);
        let site = Deploying { server, dir, flags: Vec::new() };
        let first = site.manifest("first.toml", &[("counter", "deploy-v1", None)]);
        site.deploy_ok(&first, &[]);
        for _ in 0..3 {
            assert_eq!(site.server.post("/counter/kept/increment", "").await.0, 200);
        }
        // The rename's deploy dies with the host at `step`.
        let renamed = site.manifest("renamed.toml", &[("tally", "deploy-v1", Some("counter"))]);
        let ran = site.deploy(&renamed, &[]);
        assert!(!ran.ok, "{step}: the host should have died mid-deploy");
        let Deploying { mut server, dir, flags } = site;
        assert!(server.wait_for_exit(std::time::Duration::from_secs(10)), "{step}: the host is still running");
        // Restarted (without the crash point), the host finishes the rename: the data is under
        // the new name with its id, and the old name is gone, not made afresh.
        let site = Deploying { server: Server::launch(None, &data, &[], None), dir, flags };
        assert_eq!(site.server.get("/tally/kept").await, (200, "3".into()), "{step}");
        assert_eq!(site.server.get("/counter/kept").await.0, 404, "{step}");
        assert!(!data.join("deploy/intent.json").exists(), "{step}: the intent was finished");
        assert!(!data.join("objects/counter").exists(), "{step}");
        let state = std::fs::read_to_string(data.join("deploy/state.json")).unwrap();
        assert!(state.contains("\"tally\"") && !state.contains("\"counter\""), "{step}: {state}");
        // And the same deploy again changes nothing.
        assert_eq!(change(&site.deploy_ok(&renamed, &[]), "tally")["action"], "unchanged", "{step}");
    }
}
