//! Several hosts, one owner per object (`wdo serve --cluster`): three hosts on loopback, a real
//! etcd (Debian's, started here) and a shared backup store.

use crate::backup::{S3Server, borrowed};
use crate::etcd::Etcd;
use crate::harness::{Client, Server, Site, guest};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "cluster-test-token";

/// Three hosts of one cluster (counter, probe and chat classes), sharing a backup bucket on an
/// S3-protocol server.
pub struct Hosts {
    pub site: Site,
    pub s3: S3Server,
    pub etcd: Etcd,
    pub hosts: Vec<Option<Server>>,
    /// The S3 server's folder (its bucket `wdo` in it).
    pub store: tempfile::TempDir,
    /// More `wdo serve` flags for every host.
    flags: Vec<String>,
    /// What the hosts serve instead of the site's manifest (a wrangler project, say).
    config: Option<std::path::PathBuf>,
}

/// The backup store of the test clusters, in the S3 server's bucket `wdo`.
const STORE: &str = "s3://wdo/cluster";

impl Drop for Hosts {
    /// A failing test shows what the hosts logged: a cluster's failures are rarely one host's.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if let Some(host) = host {
                let log = host.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- host {i} ({}), last lines of its log:", host.addr);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// The lease of the test hosts: short, so that failover tests are quick.
pub const LEASE: Duration = Duration::from_secs(2);

impl Hosts {
    pub fn start(count: usize, etcd_members: usize) -> Hosts {
        Self::start_with(count, etcd_members, &[])
    }

    /// With these `wdo serve` flags as well.
    pub fn start_with(count: usize, etcd_members: usize, flags: &[&str]) -> Hosts {
        Self::start_serving(count, etcd_members, None, flags)
    }

    /// Serving `config` (`None`: the site's manifest of counter, probe and chat).
    pub fn start_serving(
        count: usize,
        etcd_members: usize,
        config: Option<std::path::PathBuf>,
        flags: &[&str],
    ) -> Hosts {
        let site = Site::new(&[("counter", guest("counter")), ("probe", guest("probe")), ("chat", guest("chat"))]);
        let store = tempfile::tempdir().unwrap();
        let s3 = S3Server::start(store.path(), "wdo");
        let etcd = Etcd::start(etcd_members);
        let flags = flags.iter().map(|f| f.to_string()).collect();
        let mut hosts = Hosts { site, s3, etcd, hosts: Vec::new(), store, flags, config };
        for i in 0..count {
            let server = hosts.launch(i);
            hosts.hosts.push(Some(server));
        }
        hosts
    }

    fn launch(&self, i: usize) -> Server {
        let data = self.site.dir.path().join(format!("host{i}"));
        let url = self.etcd.url();
        let lease = format!("{}s", LEASE.as_secs());
        let mut flags = vec!["--cluster", &url, "--backup", STORE, "--admin-token", TOKEN];
        if !self.flags.iter().any(|flag| flag == "--cluster-lease") {
            flags.extend(["--cluster-lease", &lease]);
        }
        flags.extend(self.flags.iter().map(String::as_str));
        let env = self.s3.env();
        let config = self.config.clone().unwrap_or_else(|| self.site.manifest());
        Server::launch_with_env(Some(&config), &data, &flags, None, &borrowed(&env))
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.hosts[i].as_ref().expect("a live host").addr
    }

    pub fn server(&self, i: usize) -> &Server {
        self.hosts[i].as_ref().expect("a live host")
    }

    /// Starts one more host; its index.
    pub fn add_host(&mut self) -> usize {
        let server = self.launch(self.hosts.len());
        self.hosts.push(Some(server));
        self.hosts.len() - 1
    }

    /// Which live host the cluster's placement (`cluster/placement.rs`: rendezvous hashing)
    /// gives `counter/<name>` to, and which host writes the snapshots (the lowest id), as
    /// indices. Asks the first live host.
    pub async fn placement(&self, names: &[String]) -> (Vec<usize>, usize) {
        use sha2::{Digest, Sha256};
        let asked = (0..self.hosts.len()).find(|&i| self.hosts[i].is_some()).expect("a live host");
        let status = self.admin(asked, "cluster").await;
        let live: Vec<usize> = (0..self.hosts.len()).filter(|&i| self.hosts[i].is_some()).collect();
        let members: Vec<(String, usize)> = status["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let advertise = m["advertise"].as_str().unwrap();
                let index = live.iter().copied().find(|&i| advertise == format!("http://{}", self.addr(i))).unwrap();
                (m["id"].as_str().unwrap().to_string(), index)
            })
            .collect();
        assert_eq!(members.len(), live.len(), "every host is a member: {status}");
        let writer = members.iter().min_by_key(|(id, _)| id.clone()).unwrap().1;
        let mut owners = Vec::new();
        for name in names {
            let answer = self.admin(asked, &format!("cluster/owner/counter/{name}")).await;
            let id = hex::decode(answer["id"].as_str().unwrap()).unwrap();
            let weight = |host: &str| {
                let digest =
                    Sha256::new().chain_update(host).chain_update([0]).chain_update("counter").chain_update([0]);
                u64::from_be_bytes(digest.chain_update(&id).finalize()[..8].try_into().unwrap())
            };
            owners.push(members.iter().max_by_key(|(host, _)| weight(host)).unwrap().1);
        }
        (owners, writer)
    }

    /// `kill -9` of one host.
    pub fn kill(&mut self, i: usize) {
        self.hosts[i].take().expect("a live host").kill();
    }

    /// The admin API of host `i`.
    pub async fn admin(&self, i: usize, path: &str) -> serde_json::Value {
        let mut client = Client::connect(self.addr(i)).await;
        let bearer = format!("Bearer {TOKEN}");
        let (status, body) = client
            .send_with_headers("GET", &format!("/_wdo/admin/{path}"), &[("authorization", &bearer)], vec![])
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// The index of the live host holding `class/name`, if any.
    pub async fn owner(&self, class: &str, name: &str) -> Option<usize> {
        let i = (0..self.hosts.len()).find(|&i| self.hosts[i].is_some())?;
        self.owner_asking(i, class, name).await
    }

    /// Like [`Hosts::owner`], asking host `i`.
    pub async fn owner_asking(&self, i: usize, class: &str, name: &str) -> Option<usize> {
        let answer = self.admin(i, &format!("cluster/owner/{class}/{name}")).await;
        let advertise = answer["advertise"].as_str()?.to_string();
        (0..self.hosts.len())
            .find(|&i| self.hosts[i].as_ref().is_some_and(|s| advertise == format!("http://{}", s.addr)))
    }
}

/// Increments `/counter/<name>` through host after host until one answers 200; counts on the
/// way the attempts whose outcome is unknown (no answer, or 503). Gives up after `within`.
pub async fn increment(addrs: &[SocketAddr], name: &str, turn: &mut usize, within: Duration) -> (u64, u32) {
    let started = Instant::now();
    let mut unknown = 0;
    loop {
        let addr = addrs[*turn % addrs.len()];
        *turn += 1;
        if let Some(mut client) = Client::try_connect(addr).await {
            match client.try_send("POST", &format!("/counter/{name}/increment"), "").await {
                Some((200, value)) => return (value.parse().unwrap(), unknown),
                Some((503, body)) => {
                    eprintln!("counter/{name} through {addr}: 503 {body}");
                    unknown += 1;
                }
                None => unknown += 1,
                Some((status, body)) => panic!("counter/{name}: {status}: {body}"),
            }
        }
        assert!(started.elapsed() < within, "counter/{name} did not answer for {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Hosts learn of a host that joins at once (a watch on etcd's host keys; they also read the
/// list every half second): right after a new host is ready, the objects rendezvous hashing
/// gives it are claimed by it, though the request reaches a host that started before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_joins_gets_its_share_of_new_objects_at_once() {
    let mut hosts = Hosts::start(1, 1);
    let first = hosts.addr(0);
    let joined = hosts.add_host();
    // Straight away, one new object after another through the first host.
    let names: Vec<String> = (0..16).map(|n| format!("joined{n}")).collect();
    let mut turn = 0;
    for name in &names {
        assert_eq!(increment(&[first], name, &mut turn, Duration::from_secs(30)).await, (1, 0), "counter/{name}");
    }
    let (placed, _) = hosts.placement(&names).await;
    assert!(placed.contains(&joined), "the placement gives the new host some of {names:?}");
    for (name, placed) in names.iter().zip(placed) {
        assert_eq!(hosts.owner("counter", name).await, Some(placed), "counter/{name} is held where it was placed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_host_serves_any_object_exactly_once_and_each_object_has_one_owner() {
    let hosts = Hosts::start(3, 1);
    let addrs: Vec<SocketAddr> = (0..3).map(|i| hosts.addr(i)).collect();
    // Six clients, fifty objects each, four rounds: each increment through the next host.
    let mut clients = Vec::new();
    for client in 0..6 {
        let addrs = addrs.clone();
        clients.push(tokio::spawn(async move {
            let mut turn = client;
            for round in 1..=4u64 {
                for object in 0..50 {
                    let name = format!("o{client}-{object}");
                    let (value, unknown) = increment(&addrs, &name, &mut turn, Duration::from_secs(30)).await;
                    assert_eq!(unknown, 0, "counter/{name} failed before answering");
                    assert_eq!(value, round, "counter/{name}: increments lost or doubled");
                }
            }
        }));
    }
    // Meanwhile, one hot object through all three hosts at once: every value once.
    let mut hot = Vec::new();
    for &addr in &addrs {
        hot.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut values = Vec::new();
            for _ in 0..100 {
                let (status, value) = client.send("POST", "/counter/hot/increment", "").await;
                assert_eq!(status, 200, "{value}");
                values.push(value.parse::<u64>().unwrap());
            }
            assert!(values.windows(2).all(|w| w[0] < w[1]), "one client's increments out of order: {values:?}");
            values
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let mut values: Vec<u64> = Vec::new();
    for task in hot {
        values.extend(task.await.unwrap());
    }
    values.sort();
    assert_eq!(values, (1..=300).collect::<Vec<u64>>(), "the hot object's replies are not each value once");

    let status = hosts.admin(0, "cluster").await;
    assert_eq!(status["objects"], 301, "every object has exactly one owner: {status}");
    let held: Vec<u64> = status["hosts"].as_array().unwrap().iter().map(|h| h["objects"].as_u64().unwrap()).collect();
    assert_eq!(held.len(), 3, "{status}");
    assert!(held.iter().all(|&n| n >= 50), "rendezvous hashing spreads the objects: {held:?}");
    // Every host reads every object's latest value.
    for i in 0..3 {
        for name in ["o0-0", "o5-49", "hot"] {
            let (status, value) = hosts.server(i).get(&format!("/counter/{name}/")).await;
            assert_eq!(status, 200, "{value}");
            assert_eq!(value, if name == "hot" { "300" } else { "4" });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hosts_objects_come_back_elsewhere_with_every_acknowledged_increment() {
    let mut hosts = Hosts::start(3, 1);
    let addrs: Vec<SocketAddr> = (0..3).map(|i| hosts.addr(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (addrs, stop) = (addrs.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            // Each object is this client's alone: every value it sees must be the last one
            // plus one, or plus the attempts whose outcome it could not know.
            let mut last = [0u64; 10];
            let mut turn = client;
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                for (object, last) in last.iter_mut().enumerate() {
                    let name = format!("k{client}-{object}");
                    let started = Instant::now();
                    let (value, unknown) = increment(&addrs, &name, &mut turn, Duration::from_secs(60)).await;
                    longest = longest.max(started.elapsed());
                    assert!(
                        value > *last && value <= *last + 1 + u64::from(unknown),
                        "counter/{name}: {value} after {last} with {unknown} unknown attempts"
                    );
                    *last = value;
                }
            }
            (client, last, longest)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    hosts.kill(1);
    // Requests through the other hosts recover within the lease and a restore.
    tokio::time::sleep(LEASE * 3).await;
    stop.store(true, Ordering::Relaxed);
    let mut finals = Vec::new();
    for client in clients {
        let (client, last, longest) = client.await.unwrap();
        assert!(longest < Duration::from_secs(20), "an increment took {longest:?} to get through");
        finals.push((client, last));
    }
    eprintln!("objects answered again within {:?} of the kill", killed.elapsed());
    for (client, last) in finals {
        for (object, last) in last.iter().enumerate() {
            let name = format!("k{client}-{object}");
            for i in [0, 2] {
                let (status, value) = hosts.server(i).get(&format!("/counter/{name}/")).await;
                assert_eq!((status, value), (200, last.to_string()), "counter/{name} through host {i}");
            }
            assert_ne!(hosts.owner("counter", &name).await, Some(1));
        }
    }
}

/// The answer to an event that ran across a pause of its host.
type PausedAnswer = tokio::task::JoinHandle<Option<(u16, String)>>;

/// Puts `k` = "first" in probe object `name`, then sends its owner an event that spins and then
/// writes, and pauses the owner (SIGSTOP) in the middle of it, past the owner's lease. The event
/// spins on until 1.5 s after the pause ends: by then its host took a new lease (and dropped
/// its objects), under which nothing the event of the old one wrote may be committed. Returns
/// the owner, its pid (for SIGCONT) and the event's answer to come.
async fn pause_an_owner_mid_event(hosts: &Hosts, name: &str) -> (usize, String, PausedAnswer) {
    let (status, _) = hosts.server(0).post(&format!("/probe/{name}/put?key=k"), "first").await;
    assert_eq!(status, 200);
    let owner = hosts.owner("probe", name).await.expect("an owner");
    let addr = hosts.addr(owner);
    let spin = (Duration::from_millis(300) + LEASE + Duration::from_secs(2) + Duration::from_millis(1500)).as_millis();
    let path = format!("/probe/{name}/busy?ms={spin}");
    let slow = tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        client.try_send("POST", &path, "").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = hosts.server(owner).pid().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    tokio::time::sleep(LEASE + Duration::from_secs(2)).await;
    (owner, pid, slow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_cannot_commit_after_another_host_took_its_object_over() {
    let hosts = Hosts::start(3, 1);
    let (owner, pid, slow) = pause_an_owner_mid_event(&hosts, "paused").await;
    let other = (owner + 1) % 3;
    // Another host takes the object over and writes.
    let (status, body) = hosts.server(other).post("/probe/paused/put?key=k", "second").await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(hosts.owner_asking(other, "probe", "paused").await, Some(owner));
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let answer = slow.await.unwrap();
    assert!(
        matches!(&answer, Some((503, body)) if body.contains("lease")),
        "the paused host's event was acknowledged: {answer:?}"
    );
    // Nothing of it stuck: not on the new owner, not through the paused host, not in the store.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        let (status, intervals) = hosts.server(i).get("/probe/paused/intervals").await;
        assert_eq!((status, intervals.as_str()), (200, "[]"), "through host {i}");
        let (status, value) = hosts.server(i).get("/probe/paused/get?key=k").await;
        assert_eq!((status, value.as_str()), (200, "second"), "through host {i}");
    }
    assert_eq!(
        in_the_store(&hosts, "paused").await,
        ("[]".into(), "second".into()),
        "the store kept the paused host's write"
    );
}

/// Probe object `name`'s `intervals` and `k` in a copy restored from the cluster's store.
async fn in_the_store(hosts: &Hosts, name: &str) -> (String, String) {
    let restored = hosts.site.dir.path().join(format!("restored-{name}"));
    crate::backup::restore_with_env(STORE, &restored, None, &borrowed(&hosts.s3.env())).unwrap();
    let server = Server::launch(None, &restored, &[], None);
    let (_, intervals) = server.get(&format!("/probe/{name}/intervals")).await;
    let (status, value) = server.get(&format!("/probe/{name}/get?key=k")).await;
    assert_eq!(status, 200, "{value}");
    (intervals, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_keeps_nothing_of_the_event_it_told_to_retry_though_nobody_took_its_object_over() {
    let hosts = Hosts::start(3, 1);
    // As above, but no other host asks for the object while its owner is paused: when the event
    // ends, the object is held by nobody, and its last holder (this host) would keep its own copy
    // when it claims the object again. The event was answered "not saved, retry", so its write
    // must be in no copy: not in the host's own, not in the store.
    let (owner, pid, slow) = pause_an_owner_mid_event(&hosts, "lone").await;
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let answer = slow.await.unwrap();
    assert!(
        matches!(&answer, Some((503, body)) if body.contains("lease") && body.contains("safe to retry")),
        "the paused host's event: {answer:?}"
    );
    for i in [owner, (owner + 1) % 3] {
        let (status, intervals) = hosts.server(i).get("/probe/lone/intervals").await;
        assert_eq!((status, intervals.as_str()), (200, "[]"), "through host {i}");
    }
    let kept = in_the_store(&hosts, "lone").await;
    assert_eq!(kept, ("[]".into(), "first".into()), "the store kept the write of an event answered 'retry'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_keeps_serving_when_one_etcd_member_dies() {
    // The default lease (5 s), not the tests' short one: what is tested is that no request fails
    // while etcd elects a new leader, and with a 2 s lease a host has only ~0.8 s between its last
    // renewal and the refusal of commits for that (cold CI once took longer, all 3 hosts loaded).
    let mut hosts = Hosts::start_with(3, 3, &["--cluster-lease", "5s"]);
    for i in 0..3 {
        assert_eq!(hosts.server(i).post(&format!("/counter/m{i}/increment"), "").await.0, 200);
    }
    hosts.etcd.kill(0);
    // Past several leases: the hosts renew theirs with the two members left.
    let addrs: Vec<SocketAddr> = (0..3).map(|i| hosts.addr(i)).collect();
    let mut turn = 0;
    let until = Instant::now() + LEASE * 4;
    let mut expected = [1u64; 3];
    while Instant::now() < until {
        for (i, expected) in expected.iter_mut().enumerate() {
            let (value, unknown) = increment(&addrs, &format!("m{i}"), &mut turn, Duration::from_secs(20)).await;
            assert_eq!((value, unknown), (*expected + 1, 0), "counter/m{i} with an etcd member down");
            *expected = value;
        }
        // New objects are claimed too.
        let (value, _) = increment(&addrs, &format!("new{turn}"), &mut turn, Duration::from_secs(20)).await;
        assert_eq!(value, 1);
    }
    let status = hosts.admin(2, "cluster").await;
    assert_eq!(status["hosts"].as_array().unwrap().len(), 3, "{status}");
}

/// Opens a WebSocket through `addr`, retrying (the object may be moving) for up to `within`.
pub async fn connect(addr: SocketAddr, path: &str, within: Duration) -> crate::harness::Socket {
    let started = Instant::now();
    loop {
        match tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await {
            Ok((socket, _)) => return socket,
            Err(e) => assert!(started.elapsed() < within, "no WebSocket to {path} through {addr} in {within:?}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `socket` closes (or fails) within `within`, whatever it receives meanwhile.
pub async fn closes_within(socket: &mut crate::harness::Socket, within: Duration) -> bool {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let closed = async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(within, closed).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_through_one_host_reaches_the_owner_and_reconnects_when_the_owner_dies() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut hosts = Hosts::start(3, 1);
    let json = |m: Message| serde_json::from_str::<serde_json::Value>(m.to_text().unwrap()).unwrap();
    // A room whose owner is not host 0, joined through host 0.
    let mut room = None;
    for n in 0..30 {
        let name = format!("r{n}");
        let ann = connect(hosts.addr(0), &format!("/chat/{name}/ws?name=Ann"), Duration::from_secs(10)).await;
        match hosts.owner("chat", &name).await {
            Some(owner) if owner != 0 => {
                room = Some((name, owner, ann));
                break;
            }
            _ => continue,
        }
    }
    let (room, owner, mut ann) = room.expect("some room is held by another host");
    assert_eq!(json(crate::harness::next_message(&mut ann).await)["type"], "history");
    assert_eq!(json(crate::harness::next_message(&mut ann).await)["type"], "join");
    // Bob joins through the third host; messages go both ways.
    let third = 3 - owner;
    let mut bob = connect(hosts.addr(third), &format!("/chat/{room}/ws?name=Bob"), Duration::from_secs(10)).await;
    assert_eq!(json(crate::harness::next_message(&mut bob).await)["present"], serde_json::json!(["Ann", "Bob"]));
    assert_eq!(json(crate::harness::next_message(&mut ann).await)["name"], "Bob");
    assert_eq!(json(crate::harness::next_message(&mut bob).await)["type"], "join");
    ann.send(Message::text("hello from Ann")).await.unwrap();
    for socket in [&mut ann, &mut bob] {
        assert_eq!(json(crate::harness::next_message(socket).await)["text"], "hello from Ann");
    }
    bob.send(Message::text("hello from Bob")).await.unwrap();
    for socket in [&mut bob, &mut ann] {
        assert_eq!(json(crate::harness::next_message(socket).await)["text"], "hello from Bob");
    }
    // The owner dies: the client through host 0 sees its connection close.
    hosts.kill(owner);
    assert!(closes_within(&mut ann, Duration::from_secs(10)).await, "the client was not told its room's host died");
    // It reconnects through host 0 once another host holds the room: its history is intact.
    let mut ann = connect(hosts.addr(0), &format!("/chat/{room}/ws?name=Ann"), LEASE * 10).await;
    let history = json(crate::harness::next_message(&mut ann).await);
    let texts: Vec<&str> = history["messages"].as_array().unwrap().iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["hello from Ann", "hello from Bob"], "{history}");
    assert_ne!(hosts.owner("chat", &room).await, Some(owner));
}

impl Hosts {
    /// `wdo deploy MANIFEST` through host `i`.
    fn deploy(&self, i: usize, classes: &[(&str, &str)]) -> std::process::Output {
        let manifest = self.site.dir.path().join(format!("deploy-{}.toml", classes.len()));
        let text: String = classes
            .iter()
            .map(|(name, guest_name)| {
                format!("[classes.{name}]\ncomponent = {:?}\n", guest(guest_name).display().to_string())
            })
            .collect();
        std::fs::write(&manifest, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_wdo"))
            .arg("deploy")
            .arg(&manifest)
            .args(["--server", &format!("http://{}", self.addr(i)), "--token", TOKEN])
            .output()
            .expect("run wdo deploy")
    }

    /// Every class's versions on host `i`: (class, current, [(version, sha256)]).
    async fn versions(&self, i: usize) -> Vec<(String, u64, Vec<(u64, String)>)> {
        let deployed = self.admin(i, "deployed").await;
        let classes = deployed["classes"].as_object().unwrap();
        classes
            .iter()
            .map(|(name, track)| {
                let versions = track["versions"].as_array().unwrap();
                let versions = versions
                    .iter()
                    .map(|v| (v["version"].as_u64().unwrap(), v["hash"].as_str().unwrap().to_string()))
                    .collect();
                (name.clone(), track["current"].as_u64().unwrap(), versions)
            })
            .collect()
    }

    /// Sends `method /_wdo/admin/<path>` with `body` to host `i`.
    pub async fn admin_send(&self, i: usize, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut client = Client::connect(self.addr(i)).await;
        let bearer = format!("Bearer {TOKEN}");
        let (status, answer) = client
            .send_with_headers(method, &format!("/_wdo/admin/{path}"), &[("authorization", &bearer)], body.to_vec())
            .await;
        (status, String::from_utf8_lossy(&answer).into_owned())
    }

    /// The classes host `i` serves.
    async fn classes(&self, i: usize) -> Vec<String> {
        let deployed = self.admin(i, "deployed").await;
        let mut names: Vec<String> = deployed["classes"].as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_through_one_host_switches_every_host_or_names_the_one_that_did_not() {
    // A lease long enough that the host killed below is still listed when the deploy that
    // compiles a new class (seconds, on a busy machine) reaches the others.
    let mut hosts = Hosts::start_with(3, 1, &["--cluster-lease", "6s"]);
    let mut classes = vec![("counter", "counter"), ("probe", "probe"), ("chat", "chat"), ("ticket", "ticket")];
    let deployed = hosts.deploy(1, &classes);
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    for i in 0..3 {
        assert_eq!(hosts.classes(i).await, ["chat", "counter", "probe", "ticket"], "host {i}");
    }
    // Host 2 took the new component from the backup store: it never got an upload.
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(guest("ticket")).unwrap()));
    let stored = hosts.site.dir.path().join(format!("host2/deploy/components/{hash}.wasm"));
    assert!(stored.is_file(), "host 2 has the component");
    // Every host serves the new class's objects, wherever they live.
    for i in 0..3 {
        let (status, body) = hosts.server(i).post(&format!("/ticket/t{i}"), "").await;
        assert_eq!((status, body.as_str()), (200, "{\"ticket\":1}"), "host {i}");
    }

    // A deploy while a host is down (its lease not yet expired) says which host did not switch.
    hosts.kill(2);
    classes.push(("history", "history"));
    let deployed = hosts.deploy(0, &classes);
    let said = String::from_utf8_lossy(&deployed.stderr).into_owned();
    assert!(!deployed.status.success(), "the deploy said it switched everywhere");
    assert!(said.contains("not everywhere") && said.contains("did not answer"), "{said}");
    let down = hosts.site.dir.path().join("host2/cluster/host");
    assert!(
        said.contains(std::fs::read_to_string(down).unwrap().trim()),
        "the host that did not switch is named: {said}"
    );
    for i in 0..2 {
        assert!(hosts.classes(i).await.contains(&"history".to_string()), "host {i}");
    }

    // Once its lease expired host 2 is no longer a member: changes through the others succeed
    // without it. When it comes back it makes every change it missed, in order, instead of
    // deploying its manifest again: `counter` runs the ticket component now, the secret is set,
    // and its versions are the other hosts' to the number.
    let gone = Instant::now() + Duration::from_secs(20);
    while hosts.admin(0, "cluster").await["hosts"].as_array().unwrap().len() != 2 {
        assert!(Instant::now() < gone, "host 2 is still listed as live");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    classes[0] = ("counter", "ticket");
    let deployed = hosts.deploy(0, &classes);
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    let (status, body) = hosts.admin_send(1, "PUT", "secrets/counter/API_KEY", b"s3cret").await;
    assert_eq!(status, 200, "{body}");
    hosts.hosts[2] = Some(hosts.launch(2));
    // The secret is the change after the deploy: the versions can match a moment before it is made.
    let caught_up = Instant::now() + Duration::from_secs(20);
    loop {
        let (here, there) = (hosts.versions(0).await, hosts.versions(2).await);
        let secrets = hosts.admin(2, "secrets/counter").await["names"].clone();
        if here == there && secrets == serde_json::json!(["API_KEY"]) {
            break;
        }
        assert!(Instant::now() < caught_up, "host 2 did not catch up:\n{there:?}\nvs\n{here:?}\nsecrets {secrets}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = hosts.server(2).post("/counter/after-catch-up", "").await;
    assert_eq!((status, body.as_str()), (200, "{\"ticket\":1}"), "counter runs what the cluster deployed");
    // Restarted again, it still serves the cluster's deploys, not its manifest's.
    hosts.kill(2);
    hosts.hosts[2] = Some(hosts.launch(2));
    assert_eq!(hosts.versions(2).await, hosts.versions(0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_two_hosts_at_once_are_made_in_one_order_everywhere() {
    let hosts = Hosts::start(2, 1);
    // Secrets set through both hosts at once: the change lock takes them one at a time, so
    // every host ends with the same value for each, whichever came last.
    let sets = (0..6).map(|n| {
        let hosts = &hosts;
        async move {
            let value = format!("value-{n}");
            let (status, body) = hosts.admin_send(n % 2, "PUT", "secrets/probe/SHARED", value.as_bytes()).await;
            assert_eq!(status, 200, "{body}");
        }
    });
    futures_util::future::join_all(sets).await;
    // Objects on both hosts read one value.
    let mut read = std::collections::BTreeMap::new();
    for n in 0..24 {
        let (status, value) = hosts.server(0).get(&format!("/probe/p{n}/env?key=SHARED")).await;
        assert_eq!(status, 200, "{value}");
        let owner = hosts.owner("probe", &format!("p{n}")).await.expect("an owner");
        read.entry(owner).or_insert_with(std::collections::BTreeSet::new).insert(value);
    }
    assert_eq!(read.len(), 2, "objects on both hosts: {read:?}");
    let values: std::collections::BTreeSet<_> = read.values().flatten().collect();
    assert_eq!(values.len(), 1, "one value everywhere: {read:?}");
    let deployed =
        hosts.deploy(1, &[("counter", "counter"), ("probe", "probe"), ("chat", "chat"), ("ticket", "ticket")]);
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    assert_eq!(hosts.versions(0).await, hosts.versions(1).await);
    let status = hosts.admin(0, "cluster").await;
    let changes = &status["changes"];
    assert_eq!(changes["applied_here"], changes["newest"], "{status}");
    assert!(changes["newest"].as_u64().unwrap() > 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alarm_of_an_object_whose_host_died_fires_on_another_host() {
    let mut hosts = Hosts::start(3, 1);
    let (status, body) = hosts.server(0).post("/probe/alarmed/alarm/set?in=4000", "").await;
    assert_eq!(status, 200, "{body}");
    // Killed at once: the acknowledgement waited until etcd had the alarm.
    let owner = hosts.owner("probe", "alarmed").await.expect("an owner");
    hosts.kill(owner);
    // Nobody touches the object: a live host claims it for its alarm, which then fires there.
    let started = Instant::now();
    let claimed = loop {
        let survivor = (0..3)
            .filter(|&i| i != owner)
            .find(|&i| hosts.server(i).log().contains("claiming an object whose alarm no host holds"));
        if let Some(survivor) = survivor {
            break survivor;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no host claimed the object for its alarm");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let fired = loop {
        let (status, fired) = hosts.server(claimed).get("/probe/alarmed/alarm/fired").await;
        assert_eq!(status, 200, "{fired}");
        let fired: serde_json::Value = serde_json::from_str(&fired).unwrap();
        if fired.as_array().is_some_and(|f| !f.is_empty()) {
            break fired;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the alarm never fired: {fired}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(fired.as_array().unwrap().len(), 1, "fired once: {fired}");
    assert_eq!(hosts.owner("probe", "alarmed").await, Some(claimed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_between_objects_reach_the_callee_on_whichever_host_holds_it() {
    use serde_json::{Value, json};
    let hosts = Hosts::start(3, 1);
    let rpc = |i: usize, caller: String, call: Value| {
        let server = hosts.server(i);
        async move {
            let (status, body) = server.post(&format!("/probe/{caller}/rpc"), &call.to_string()).await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    // Callers and callees land on all three hosts: most calls cross from one host to another.
    for round in 1..=3 {
        for n in 0..12 {
            let call = json!({"class": "probe", "name": format!("callee{n}"), "method": "count", "args": ""});
            let answer = rpc(n % 3, format!("caller{n}"), call).await;
            assert_eq!(answer, json!({"ok": round.to_string()}), "callee{n}, round {round}");
        }
    }
    let mut holders = std::collections::HashSet::new();
    for n in 0..12 {
        holders.insert(hosts.owner("probe", &format!("callee{n}")).await.expect("an owner"));
    }
    assert!(holders.len() >= 2, "the callees are all on one host: {holders:?}");
    // A chain of calls through eight objects, wherever each lives, answers back down the chain.
    let call = json!({"class": "probe", "name": "link0", "method": "chain", "args": "link1,link2,link3,link4,link5,link6,link7"});
    assert_eq!(rpc(1, "start".into(), call).await, json!({"ok": "end"}));
    // A cycle across hosts is still found: the chain travels with forwarded calls.
    let call = json!({"class": "probe", "name": "loop1", "method": "chain", "args": "loop2,loop1"});
    let answer = rpc(2, "loop0".into(), call).await;
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("re-entrant call")), "{answer}");
}
