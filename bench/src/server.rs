//! A real `wdo serve` for the benchmarks: started on an ephemeral port, on a data folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

pub struct Server {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// From spawning the process to its "listening" line.
    pub startup: Duration,
}

impl Server {
    pub async fn start(data: &Path, classes: &[(&str, PathBuf)], flags: &[&str]) -> Server {
        Self::start_manifest(data, classes, None, flags, &[]).await
    }

    /// With these environment variables set as well.
    pub async fn start_env(data: &Path, classes: &[(&str, PathBuf)], flags: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_manifest(data, classes, None, flags, env).await
    }

    /// With a worker in front of the classes.
    pub async fn start_with_worker(data: &Path, classes: &[(&str, PathBuf)], worker: &Path) -> Server {
        Self::start_manifest(data, classes, Some(worker), &[], &[]).await
    }

    async fn start_manifest(
        data: &Path,
        classes: &[(&str, PathBuf)],
        worker: Option<&Path>,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut text: String = classes
            .iter()
            .map(|(name, path)| format!("[classes.{name}]\ncomponent = {:?}\n", path.display().to_string()))
            .collect();
        if let Some(worker) = worker {
            text.push_str(&format!("[worker]\ncomponent = {:?}\n", worker.display().to_string()));
        }
        Self::start_text_env(data, &text, flags, env).await
    }

    /// With this manifest text.
    pub async fn start_text(data: &Path, text: &str, flags: &[&str]) -> Server {
        Self::start_text_env(data, text, flags, &[]).await
    }

    async fn start_text_env(data: &Path, text: &str, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let manifest = data.with_extension("toml");
        std::fs::write(&manifest, text).unwrap();
        let started = Instant::now();
        let mut child = tokio::process::Command::new(crate::workspace().join("target/release/wdo"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(flags)
            .arg(&manifest)
            .env("WDO_LOG", "error")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start target/release/wdo (make build)");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).await.unwrap();
        let addr = line.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).expect("wdo started");
        // It listens at once; measure once every class serves.
        let mut ready = String::new();
        while !ready.starts_with("wdo ready") {
            ready.clear();
            assert!(out.read_line(&mut ready).await.unwrap() > 0, "wdo serve stopped before it was ready");
        }
        Server { child, addr: addr.parse().unwrap(), startup: started.elapsed() }
    }

    /// Resident memory of the host process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id().unwrap())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}
