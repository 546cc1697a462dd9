//! A real etcd cluster on loopback for the cluster tests (Debian's etcd, which `make test`
//! installs).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An etcd cluster on loopback, its members' data in a folder of its own (on tmpfs when there is
/// one: etcd fsyncs every write).
pub struct Etcd {
    members: Vec<Option<Child>>,
    pub endpoints: Vec<String>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Etcd {
    /// Starts `count` members and waits until they answer (30 s at most). The ports are picked
    /// free and then handed to etcd, so another test may take one in between: a start whose
    /// member exits is tried again on new ports (three tries); a failure shows the members' logs.
    pub fn start(count: usize) -> Etcd {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Etcd::try_start(count) {
                Ok(etcd) => return etcd,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("etcd did not start:\n{}", failures.join("\n"));
    }

    fn try_start(count: usize) -> Result<Etcd, String> {
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm").unwrap(),
            false => tempfile::tempdir().unwrap(),
        };
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}")).collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let log = std::fs::File::create(dir.path().join(format!("e{i}.log"))).unwrap();
            let child = Command::new("etcd")
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("e{i}")))
                .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new", "--initial-cluster-token", "wdo-test"])
                // Scaled down with the hosts' 2 s lease (etcd's defaults, 100 ms and 1 s, suit
                // the default 5 s lease): a leader's death is over in about half a second.
                .args(["--heartbeat-interval", "50", "--election-timeout", "400"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start etcd (Debian's etcd-server: `make test` installs it)");
            members.push(Some(child));
        }
        let endpoints: Vec<String> = ports.iter().map(|(client, _)| format!("127.0.0.1:{client}")).collect();
        let mut etcd = Etcd { members, endpoints, dir };
        let started = Instant::now();
        while !etcd.healthy() {
            if etcd.members.iter_mut().flatten().any(|m| m.try_wait().is_ok_and(|s| s.is_some())) {
                return Err(format!("a member exited; the members' logs:\n{}", etcd.logs()));
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "etcd did not become healthy in 30 s; the members' logs:\n{}",
                etcd.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(etcd)
    }

    /// The last lines of each member's log.
    fn logs(&self) -> String {
        let mut text = String::new();
        for i in 0..self.members.len() {
            let log = std::fs::read_to_string(self.dir.path().join(format!("e{i}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            text.push_str(&format!("--- e{i}\n"));
            for line in tail.iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    fn healthy(&self) -> bool {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints.join(","), "--command-timeout=2s", "endpoint", "health"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `--cluster`'s value.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints.join(","))
    }

    /// `kill -9` of one member.
    pub fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.members[member].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in self.members.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
