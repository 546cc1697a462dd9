//! What the backup costs (`wdo serve --backup`): increments per second and latency for one hot
//! object and for many objects, with the backup off, async and sync, to a folder and to an S3
//! server (s3s-fs on loopback, which `make test` builds); the bytes shipped per write; and the
//! time `wdo restore` takes to bring every object back.

use crate::http_load::{Connection, drive};
use crate::server::Server;
use crate::stats::Row;
use bytes::Bytes;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An S3-protocol server on a loopback port, its buckets folders under `root`.
pub struct S3 {
    child: Child,
    port: u16,
}

impl S3 {
    const KEY: &str = "wdo-bench-key";
    const SECRET: &str = "wdo-bench-secret-0123456789";

    pub fn start(root: &Path) -> S3 {
        std::fs::create_dir_all(root.join("bench")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let binary = std::env::var("WDO_S3_SERVER")
            .unwrap_or_else(|_| crate::workspace().join(".tools/cargo/bin/s3s-fs").display().to_string());
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", Self::KEY, "--secret-key"])
            .arg(Self::SECRET)
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary} (make builds it): {e}"));
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(25));
        }
        S3 { child, port }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", Self::KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET.into()),
        ]
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A backup setup: its label, `wdo serve` flags and environment.
type Setup = (&'static str, Vec<String>, Vec<(&'static str, String)>);

/// The health's account of the backup: (bytes shipped, commits waiting).
async fn shipped(addr: std::net::SocketAddr) -> (u64, u64) {
    let health = Connection::open(addr).await.get_text("/_wdo/health").await;
    let number = |after: &str| -> u64 {
        health
            .split(after)
            .next()
            .and_then(|head| head.rsplit([' ', ',']).find(|w| !w.is_empty()))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (number(" bytes shipped"), number(" commits waiting"))
}

pub async fn measure(objects: usize, connections: usize, duration: Duration) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(&dir.path().join("s3"));
    let folder = format!("file://{}", dir.path().join("folder-store").display());
    let setups: Vec<Setup> = vec![
        ("off", vec![], vec![]),
        ("async, folder", vec!["--backup".into(), format!("{folder}/async")], vec![]),
        (
            "sync, folder",
            vec!["--backup".into(), format!("{folder}/sync"), "--backup-mode".into(), "sync".into()],
            vec![],
        ),
        ("async, S3", vec!["--backup".into(), "s3://bench/async".into()], s3.env()),
        (
            "sync, S3",
            vec!["--backup".into(), "s3://bench/sync".into(), "--backup-mode".into(), "sync".into()],
            s3.env(),
        ),
    ];
    let mut lines = vec![Row::header()];
    let mut restore_line = String::new();
    for (label, flags, env) in &setups {
        let data = dir.path().join(format!("data-{}", label.replace([',', ' '], "")));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start_env(&data, &[("counter", crate::counter_component())], &flags, &env).await;
        let mut writes = 0;

        let started = Instant::now();
        let (count, latencies, errors) =
            drive(server.addr, connections, duration, Bytes::new(), |_| "/counter/hot/increment".into()).await;
        writes += count;
        lines.push(
            Row {
                name: format!("one hot object, backup {label}"),
                count,
                elapsed: started.elapsed(),
                latencies,
                errors,
            }
            .to_string(),
        );

        // Every object made first (not measured), then increments spread over all of them.
        drive(server.addr, connections, Duration::from_secs(3600), Bytes::new(), {
            let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            move |_| {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n < objects { format!("/counter/o{n}/increment") } else { String::new() }
            }
        })
        .await;
        writes += objects;
        let started = Instant::now();
        let (count, latencies, errors) = drive(server.addr, connections, duration, Bytes::new(), move |n| {
            format!("/counter/o{}/increment", (n * 7919) % objects)
        })
        .await;
        writes += count;
        lines.push(
            Row {
                name: format!("{objects} objects, backup {label}"),
                count,
                elapsed: started.elapsed(),
                latencies,
                errors,
            }
            .to_string(),
        );
        if !flags.is_empty() {
            let waited = Instant::now();
            let mut account = shipped(server.addr).await;
            while account.1 > 0 && waited.elapsed() < Duration::from_secs(120) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                account = shipped(server.addr).await;
            }
            lines.push(format!(
                "  shipped {:.1} MiB for {writes} writes: {} bytes a write",
                account.0 as f64 / (1 << 20) as f64,
                account.0 / writes.max(1) as u64
            ));
        }
        server.kill().await;

        if *label == "async, folder" {
            let restored = dir.path().join("restored");
            let started = Instant::now();
            let output = Command::new(crate::workspace().join("target/release/wdo"))
                .args(["restore", "--from", &format!("{folder}/async"), "--data"])
                .arg(&restored)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
            restore_line = format!(
                "wdo restore of {} objects from a folder: {:.2} s ({said}{})",
                objects + 1,
                started.elapsed().as_secs_f64(),
                if output.status.success() { "" } else { "; FAILED" }
            );
        }
    }
    lines.push(restore_line);
    lines
}
