//! Several hosts (`wdo serve --cluster`): the many-objects workload on one host and on three, the
//! latency a forwarded request adds, and the time from a host's death to its objects answering
//! on the others. Everything (etcd, the S3 server, the hosts and the load generator) shares this
//! machine's cores, so three hosts here measure the cluster's overhead, not its capacity.

use crate::backup::S3;
use crate::http_load::{Connection, drive_spread};
use crate::server::Server;
use crate::stats::Row;
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-admin-token";

/// One etcd member on loopback, its data on tmpfs when there is one (etcd fsyncs every write).
struct Etcd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Etcd {
    fn start() -> Etcd {
        let dir = match Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm").unwrap(),
            false => tempfile::tempdir().unwrap(),
        };
        let (port, peer) = (free_port(), free_port());
        let child = Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{port}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &format!("bench=http://127.0.0.1:{peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (Debian's etcd-server: `make` installs it)");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(25));
        }
        Etcd { child, port, _dir: dir }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared pieces of a cluster (etcd, a bucket) and the hosts started on them.
struct Cluster {
    etcd: Etcd,
    s3: S3,
    dir: tempfile::TempDir,
    hosts: Vec<Option<Server>>,
}

impl Cluster {
    async fn start(count: usize, lease: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3::start(&dir.path().join("s3"));
        let mut cluster = Cluster { etcd: Etcd::start(), s3, dir, hosts: Vec::new() };
        for i in 0..count {
            let host = cluster.launch(i, lease).await;
            cluster.hosts.push(Some(host));
        }
        cluster
    }

    async fn launch(&self, i: usize, lease: &str) -> Server {
        let etcd = format!("etcd://127.0.0.1:{}", self.etcd.port);
        let flags =
            ["--cluster", &etcd, "--cluster-lease", lease, "--backup", "s3://bench/cluster", "--admin-token", TOKEN];
        let env = self.s3.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let classes = [("counter", crate::counter_component())];
        Server::start_env(&self.dir.path().join(format!("host{i}")), &classes, &flags, &env).await
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.hosts.iter().flatten().map(|h| h.addr).collect()
    }

    /// The index of the host that holds `counter/<name>`, asking host `asking`.
    async fn owner(&self, asking: usize, name: &str) -> Option<usize> {
        let addr = self.hosts[asking].as_ref()?.addr;
        let bearer = format!("Bearer {TOKEN}");
        let (_, body) = Connection::open(addr)
            .await
            .send_with(
                hyper::Method::GET,
                &format!("/_wdo/admin/cluster/owner/counter/{name}"),
                &[("authorization", &bearer)],
            )
            .await;
        let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let advertise = answer["advertise"].as_str()?;
        self.hosts.iter().position(|h| h.as_ref().is_some_and(|h| advertise == format!("http://{}", h.addr)))
    }

    async fn stop(mut self) {
        for host in self.hosts.iter_mut().filter_map(Option::take) {
            host.kill().await;
        }
    }
}

/// Increments of `objects` objects over `addrs`: first each object once (its first touch,
/// which in a cluster is also its claim in etcd), then spread over all of them for `duration`.
async fn many_objects(label: &str, addrs: &[SocketAddr], objects: usize, duration: Duration) -> [Row; 2] {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let (count, latencies, errors) = drive_spread(addrs, 64, Duration::from_secs(3600), Bytes::new(), move |_| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n < objects { format!("/counter/o{n}/increment") } else { String::new() }
    })
    .await;
    let first = Row { name: format!("first touch, {label}"), count, elapsed: started.elapsed(), latencies, errors };
    let started = Instant::now();
    let (count, latencies, errors) = drive_spread(addrs, 32, duration, Bytes::new(), move |n| {
        format!("/counter/o{}/increment", (n * 7919) % objects)
    })
    .await;
    let spread =
        Row { name: format!("{objects} objects, {label}"), count, elapsed: started.elapsed(), latencies, errors };
    [first, spread]
}

/// The many-objects workload on one host without a cluster (sync backup to the same S3 server,
/// as a cluster requires), a cluster of one host, and a cluster of three, each request through
/// the next host in turn.
pub async fn throughput(objects: usize, duration: Duration) -> Vec<Row> {
    let mut rows = Vec::new();
    {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3::start(&dir.path().join("s3"));
        let env = s3.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let flags = ["--backup", "s3://bench/single", "--backup-mode", "sync"];
        let classes = [("counter", crate::counter_component())];
        let server = Server::start_env(&dir.path().join("data"), &classes, &flags, &env).await;
        rows.extend(many_objects("one host, no cluster", &[server.addr], objects, duration).await);
        server.kill().await;
    }
    for count in [1, 3] {
        let cluster = Cluster::start(count, "5s").await;
        let label = match count {
            1 => "cluster of 1 host".to_string(),
            n => format!("cluster of {n} hosts, round robin"),
        };
        rows.extend(many_objects(&label, &cluster.addrs(), objects, duration).await);
        cluster.stop().await;
    }
    rows
}

/// Sequential increments of one object sent to its owner and through another host (each way
/// warmed up first: the hosts' connections to each other and to the store).
pub async fn forwarding(requests: usize) -> Vec<Row> {
    let cluster = Cluster::start(3, "5s").await;
    let addrs = cluster.addrs();
    assert_eq!(Connection::open(addrs[0]).await.post("/counter/forwarded/increment").await, 200);
    let owner = cluster.owner(0, "forwarded").await.expect("the object has an owner");
    let mut rows = Vec::new();
    for (label, addr) in [("straight to its owner", addrs[owner]), ("through another host", addrs[(owner + 1) % 3])] {
        let mut connection = Connection::open(addr).await;
        for _ in 0..requests / 2 {
            connection.post("/counter/forwarded/increment").await;
        }
        let (mut latencies, mut errors) = (Vec::with_capacity(requests), 0);
        let started = Instant::now();
        for _ in 0..requests {
            let sent = Instant::now();
            errors += usize::from(connection.post("/counter/forwarded/increment").await != 200);
            latencies.push(sent.elapsed());
        }
        rows.push(Row {
            name: format!("one object in a cluster of 3, {label}"),
            count: requests,
            elapsed: started.elapsed(),
            latencies,
            errors,
        });
    }
    cluster.stop().await;
    rows
}

/// `kill -9` of one of three hosts: how long until each object it held answers through the
/// others (its lease must expire, then another host claims the object and restores it from the
/// store), and whether every acknowledged increment is still there.
pub async fn failover(objects: usize, lease: &str) -> String {
    let mut cluster = Cluster::start(3, lease).await;
    let addrs = cluster.addrs();
    let names: Vec<String> = (0..objects).map(|n| format!("f{n}")).collect();
    for round in 0..3 {
        for (n, name) in names.iter().enumerate() {
            let status =
                Connection::open(addrs[(n + round) % 3]).await.post(&format!("/counter/{name}/increment")).await;
            assert_eq!(status, 200, "counter/{name}");
        }
    }
    let victim = 2;
    let mut held = Vec::new();
    for name in &names {
        if cluster.owner(0, name).await == Some(victim) {
            held.push(name.clone());
        }
    }
    cluster.hosts[victim].take().unwrap().kill().await;
    let killed = Instant::now();
    let survivors = [addrs[0], addrs[1]];
    let mut waits = Vec::new();
    for (n, name) in held.iter().enumerate() {
        let path = format!("/counter/{name}/increment");
        waits.push(tokio::spawn(async move {
            let mut turn = n;
            loop {
                let (status, body) =
                    Connection::open(survivors[turn % 2]).await.send_with(hyper::Method::POST, &path, &[]).await;
                turn += 1;
                if status == 200 {
                    return (killed.elapsed(), body == "4");
                }
                if killed.elapsed() > Duration::from_secs(120) {
                    return (Duration::MAX, false);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let mut answered = Vec::new();
    let mut intact = 0;
    for wait in waits {
        let (after, kept) = wait.await.unwrap();
        answered.push(after);
        intact += usize::from(kept);
    }
    answered.sort();
    cluster.stop().await;
    let secs = |d: Option<&Duration>| d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    format!(
        "kill -9 of 1 of 3 hosts (lease {lease}): its {} objects answered elsewhere after {} (first), {} (median), {} (last); {intact} with every acknowledged increment",
        held.len(),
        secs(answered.first()),
        secs(answered.get(answered.len() / 2)),
        secs(answered.last()),
    )
}
