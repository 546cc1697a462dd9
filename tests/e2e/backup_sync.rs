//! `--backup-mode sync`: a reply, and the outbound requests its event makes, leave only once the
//! commit is in the backup store, so an acknowledged write survives the loss of the machine;
//! while the store does not answer, writes get 503 and reads go on.

use crate::backup::{S3Server, borrowed, file_url, restore_with_env};
use crate::harness::{Client, Server, Site, guest};
use crate::upstream::Upstream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What one client saw: the highest value acknowledged for its counter, and the increments it
/// sent (answered or not).
struct Seen {
    counter: usize,
    acknowledged: u64,
    sent: u64,
}

/// Eight clients increment four counters until the host dies under them (`kill -9`), then the
/// data folder is deleted: the folder restored from the store has every acknowledged increment,
/// and none that was never sent. `env` reaches the store.
async fn lose_the_machine_under_load(
    url: &str,
    env: &[(&'static str, String)],
    restore_env: &[(&'static str, String)],
) {
    let site = Site::new(&[("counter", guest("counter"))]);
    let flags = ["--backup", url, "--backup-mode", "sync"];
    let server = Server::launch_with_env(Some(&site.manifest()), &site.data(), &flags, None, &borrowed(env));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (addr, stop) = (server.addr, stop.clone());
        clients.push(tokio::spawn(async move {
            let counter = client % 4;
            let mut seen = Seen { counter, acknowledged: 0, sent: 0 };
            let Some(mut connection) = Client::try_connect(addr).await else { return seen };
            while !stop.load(Ordering::Relaxed) {
                seen.sent += 1;
                match connection.try_send("POST", &format!("/counter/c{counter}/increment"), "").await {
                    Some((200, value)) => seen.acknowledged = seen.acknowledged.max(value.parse().unwrap()),
                    Some((status, body)) => panic!("{status}: {body}"),
                    None => break, // the host is gone
                }
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    stop.store(true, Ordering::Relaxed);
    let (mut acknowledged, mut sent) = ([0u64; 4], [0u64; 4]);
    for client in clients {
        let seen = client.await.unwrap();
        acknowledged[seen.counter] = acknowledged[seen.counter].max(seen.acknowledged);
        sent[seen.counter] += seen.sent;
    }
    assert!(acknowledged.iter().all(|&a| a >= 5), "too little traffic to tell: {acknowledged:?}");
    std::fs::remove_dir_all(site.data()).unwrap();

    let restored = site.dir.path().join("restored");
    restore_with_env(url, &restored, None, &borrowed(restore_env)).unwrap();
    let server = Server::launch(None, &restored, &[], None);
    for counter in 0..4 {
        let (status, value) = server.get(&format!("/counter/c{counter}/")).await;
        assert_eq!(status, 200, "{value}");
        let value: u64 = value.parse().unwrap();
        assert!(
            (acknowledged[counter]..=sent[counter]).contains(&value),
            "c{counter}: restored {value}, acknowledged {}, sent {}",
            acknowledged[counter],
            sent[counter]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_backup_to_a_folder_keeps_every_acknowledged_increment_when_the_machine_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    lose_the_machine_under_load(&file_url(&dir.path().join("store")), &[], &[]).await;
}

/// The same with a slow S3 store (60 ms a request): commits waiting together ship together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_backup_to_a_slow_s3_store_keeps_every_acknowledged_increment_when_the_machine_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"), "backups");
    let mut slow_env = s3.env();
    slow_env[0].1 = format!("http://127.0.0.1:{}", slow_proxy(s3.port, Duration::from_millis(60)).await);
    lose_the_machine_under_load("s3://backups/load", &slow_env, &s3.env()).await;
}

/// A TCP proxy to `target` that holds what the client sends for `delay` before passing it on:
/// a slow store, so that what waits for it is seen waiting.
async fn slow_proxy(target: u16, delay: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                let (mut client_reads, mut client_writes) = client.into_split();
                let (mut server_reads, mut server_writes) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut server_reads, &mut client_writes).await });
                let mut buffer = vec![0; 64 * 1024];
                while let Ok(n) = client_reads.read(&mut buffer).await {
                    tokio::time::sleep(delay).await;
                    if n == 0 || server_writes.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// The output gate waits for the store too: with a store slower than the network, the upstream
/// kills the host (`kill -9`) the moment the request reaches it, the data folder is lost, and
/// the write the event made before the request is in the restored folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sync_mode_a_write_is_in_the_store_before_an_outbound_request_leaves() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"), "backups");
    let mut slow_env = s3.env();
    let slow = slow_proxy(s3.port, Duration::from_millis(300)).await;
    slow_env[0].1 = format!("http://127.0.0.1:{slow}");
    let manifest = dir.path().join("wdo.toml");
    let component = guest("probe").display().to_string();
    std::fs::write(
        &manifest,
        format!("[classes.probe]\ncomponent = {component:?}\noutbound = [\"{}\"]\n", upstream.addr),
    )
    .unwrap();
    let data = dir.path().join("data");
    let url = "s3://backups/gate";
    let flags = ["--backup", url, "--backup-mode", "sync"];
    let server = Server::launch_with_env(Some(&manifest), &data, &flags, None, &borrowed(&slow_env));
    let ask = serde_json::json!({"url": upstream.url(&format!("/kill?pid={}", server.pid())), "write": "gated"});
    let mut client = Client::connect(server.addr).await;
    let answer = client.try_send("POST", "/probe/a/fetch", &ask.to_string()).await;
    assert_eq!(answer, None, "the host answered");
    let mut killed = server;
    assert!(killed.wait_for_exit(Duration::from_secs(5)));
    std::fs::remove_dir_all(&data).unwrap();

    let restored = dir.path().join("restored");
    restore_with_env(url, &restored, None, &borrowed(&s3.env())).unwrap();
    let server = Server::launch(None, &restored, &[], None);
    assert_eq!(server.get("/probe/a/get?key=gated").await, (200, "written before the request".into()));
}

/// The S3 server stops: the write in flight is not acknowledged (it stays on the host and ships
/// later), later writes are refused with 503 and nothing saved, reads go on, and the health says
/// so; once the server is back writes are taken again, and a restore has exactly what the host
/// had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_backup_refuses_writes_while_the_store_is_away_and_loses_nothing_acknowledged() {
    let site = Site::new(&[("counter", guest("counter"))]);
    let s3 = S3Server::start(&site.dir.path().join("s3"), "backups");
    let env = s3.env();
    let url = "s3://backups/sync";
    let token = "sync-test-token-0123456789";
    let flags = ["--backup", url, "--backup-mode", "sync", "--backup-interval", "200ms", "--admin-token", token];
    let server = Server::launch_with_env(Some(&site.manifest()), &site.data(), &flags, None, &borrowed(&env));
    for i in 1..=5 {
        assert_eq!(server.post("/counter/k/increment", "").await, (200, i.to_string()));
    }
    let (root, port) = s3.stop();

    // The first write after the store went away commits here but is not acknowledged; the
    // next ones are refused before they commit.
    let (status, kept) = server.post("/counter/k/increment", "").await;
    assert_eq!(status, 503, "{kept}");
    assert!(kept.contains("it is kept on this host") && kept.contains(url), "{kept}");
    let (status, refused) = server.post("/counter/k/increment", "").await;
    assert_eq!(status, 503, "{refused}");
    assert!(refused.contains("does not answer") && refused.contains("safe to retry"), "{refused}");
    assert_eq!(server.get("/counter/k/").await, (200, "6".into()), "reads go on");
    let health = server.get("/_wdo/health").await.1;
    assert!(health.contains("writes refused"), "{health}");
    // A change to the data folder's files is not acknowledged either.
    let bearer = format!("Bearer {token}");
    let mut admin = Client::connect(server.addr).await;
    let secret = "/_wdo/admin/secrets/counter/API_KEY";
    let (status, body) = admin.send_with_headers("PUT", secret, &[("authorization", &bearer)], b"v".to_vec()).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("setting the secret is done on this host") && body.contains("not acknowledged"), "{body}");

    let _s3 = S3Server::start_on(&root, port);
    let mut answer = (0, String::new());
    for _ in 0..100 {
        answer = server.post("/counter/k/increment", "").await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, (200, "7".into()), "writes are taken again once the store answers");
    let health = server.get("/_wdo/health").await.1;
    assert!(!health.contains("refused") && health.contains(" 0 commits waiting"), "{health}");
    let (status, _) = admin.send_with_headers("PUT", secret, &[("authorization", &bearer)], b"w".to_vec()).await;
    assert_eq!(status, 200);
    server.kill();
    std::fs::remove_dir_all(site.data()).unwrap();

    let restored = site.dir.path().join("restored");
    restore_with_env(url, &restored, None, &borrowed(&env)).unwrap();
    let server = Server::launch(None, &restored, &[], None);
    assert_eq!(server.get("/counter/k/").await, (200, "7".into()));
    let secrets = std::fs::read_to_string(restored.join("objects/counter/secrets.json")).unwrap();
    assert!(secrets.contains("API_KEY"), "{secrets}");
}
