//! Draining a host (`wdo cluster drain`, `cluster/drain.rs`): its objects handed over to the
//! other hosts without a failed request, whatever the client that asked does meanwhile.

use crate::cluster::{Hosts, TOKEN};
use crate::harness::Client;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_host_hands_its_objects_over_under_load_with_no_failed_request() {
    let hosts = Hosts::start(3, 1);
    let addrs: Vec<SocketAddr> = (0..3).map(|i| hosts.addr(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (addrs, stop) = (addrs.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut connections = Vec::new();
            for &addr in &addrs {
                connections.push(Client::connect(addr).await);
            }
            let (mut last, mut turn, mut sent) = ([0u64; 10], client, 0);
            while !stop.load(Ordering::Relaxed) {
                for (object, last) in last.iter_mut().enumerate() {
                    // Through every host, the drained one included: it forwards.
                    let connection = &mut connections[turn % 3];
                    turn += 1;
                    let path = format!("/counter/d{client}-{object}/increment");
                    let Some((status, body)) = connection.try_send("POST", &path, "").await else {
                        panic!("host {} closed the connection: {path}", (turn - 1) % 3);
                    };
                    assert_eq!(status, 200, "counter/d{client}-{object} failed during the drain: {body}");
                    assert_eq!(body, (*last + 1).to_string(), "counter/d{client}-{object}");
                    *last += 1;
                    sent += 1;
                }
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let drained_id = std::fs::read_to_string(hosts.site.dir.path().join("host1/cluster/host")).unwrap();
    let before = hosts.admin(0, "cluster").await;
    let held_before =
        before["hosts"].as_array().unwrap().iter().find(|h| h["id"] == drained_id.trim()).unwrap()["objects"]
            .as_u64()
            .unwrap();
    assert!(held_before > 0, "host 1 held nothing to hand over: {before}");
    let drained = Command::new(env!("CARGO_BIN_EXE_wdo"))
        .args([
            "cluster",
            "drain",
            drained_id.trim(),
            "--server",
            &format!("http://{}", hosts.addr(0)),
            "--token",
            TOKEN,
        ])
        .output()
        .unwrap();
    assert!(drained.status.success(), "{}", String::from_utf8_lossy(&drained.stderr));
    assert!(String::from_utf8_lossy(&drained.stdout).contains("drained"));
    // The traffic goes on until every object is held again, by another host (one the drain
    // released with nothing queued is claimed at its next request, which a busy machine may
    // take a while to send).
    let settled = Instant::now() + Duration::from_secs(20);
    let after = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let after = hosts.admin(0, "cluster").await;
        if after["objects"] == 40 || Instant::now() > settled {
            break after;
        }
    };
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        assert!(client.await.unwrap() > 20, "too little traffic to tell");
    }
    let drained = after["hosts"].as_array().unwrap().iter().find(|h| h["id"] == drained_id.trim()).unwrap();
    assert_eq!((drained["draining"].as_bool(), drained["objects"].as_u64()), (Some(true), Some(0)), "{after}");
    assert_eq!(after["objects"], 40, "every object is held by another host: {after}");
}

/// A drain goes on to its end when the client that asked for it hangs up (a `wdo cluster drain`
/// interrupted, a forwarding host's request timing out): cut short, it would leave the objects
/// it had paused waiting for a resume that never comes, every request for them hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_whose_client_hangs_up_still_hands_every_object_over() {
    const OBJECTS: usize = 80;
    let hosts = Hosts::start(2, 1);
    let mut client = Client::connect(hosts.addr(1)).await;
    for n in 0..OBJECTS {
        let (status, body) = client.send("POST", &format!("/counter/h{n}/increment"), "").await;
        assert_eq!((status, body.as_str()), (200, "1"), "counter/h{n}");
    }
    let drained_id = std::fs::read_to_string(hosts.site.dir.path().join("host1/cluster/host")).unwrap();
    let drained_id = drained_id.trim();
    let held = |answer: &serde_json::Value| {
        let host = answer["hosts"].as_array().unwrap().iter().find(|h| h["id"] == drained_id).cloned();
        host.map(|h| (h["draining"].as_bool(), h["objects"].as_u64()))
    };
    let before = hosts.admin(0, "cluster").await;
    let (_, Some(held_before)) = held(&before).unwrap() else { panic!("{before}") };
    assert!(held_before >= 16, "host 1 holds too few objects for a drain that takes a while: {before}");

    // Asked for, then hung up on before it can have finished.
    let mut asking = tokio::net::TcpStream::connect(hosts.addr(1)).await.unwrap();
    let request = format!(
        "POST /_wdo/admin/cluster/drain/{drained_id} HTTP/1.1\r\nhost: wdo\r\nauthorization: Bearer {TOKEN}\r\n\
         content-length: 0\r\n\r\n"
    );
    asking.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    drop(asking);

    // Every object answers, with its next count, through either host.
    let mut clients = [Client::connect(hosts.addr(0)).await, Client::connect(hosts.addr(1)).await]
        .map(|c| c.patient(Duration::from_secs(20)));
    for n in 0..OBJECTS {
        let (status, body) = clients[n % 2].send("POST", &format!("/counter/h{n}/increment"), "").await;
        assert_eq!((status, body.as_str()), (200, "2"), "counter/h{n} after the drain's client hung up");
    }
    // And the drain finished: host 1 holds nothing, every object is held by host 0.
    let settled = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let after = hosts.admin(0, "cluster").await;
        if held(&after) == Some((Some(true), Some(0))) || Instant::now() > settled {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(held(&after), Some((Some(true), Some(0))), "host 1 handed every object over: {after}");
    // Each kept its count across the handover (one released with nothing waiting is claimed
    // by the request that next reaches it).
    for n in 0..OBJECTS {
        let (status, body) = clients[n % 2].send("POST", &format!("/counter/h{n}/increment"), "").await;
        assert_eq!((status, body.as_str()), (200, "3"), "counter/h{n} after the drain");
    }
}

/// A change asked of one host (here secrets set) is made on every host or on none when its
/// client hangs up part way: cut short after the change was made here and before it was
/// recorded in etcd, the hosts would disagree for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_client_hangs_up_is_made_everywhere_or_nowhere() {
    const TRIES: u64 = 40;
    let hosts = Hosts::start(2, 1);
    for n in 0..TRIES {
        let mut asking = tokio::net::TcpStream::connect(hosts.addr(0)).await.unwrap();
        let request = format!(
            "PUT /_wdo/admin/secrets/probe/HUNG_UP_{n} HTTP/1.1\r\nhost: wdo\r\nauthorization: Bearer {TOKEN}\r\n\
             content-length: 5\r\n\r\nvalue"
        );
        asking.write_all(request.as_bytes()).await.unwrap();
        // Hung up at a different point of the change each time.
        tokio::time::sleep(Duration::from_millis(n)).await;
        drop(asking);
    }
    let names = |answer: serde_json::Value| {
        let mut names: Vec<String> =
            answer["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };
    let agreed = Instant::now() + Duration::from_secs(10);
    loop {
        let (here, there) =
            (names(hosts.admin(0, "secrets/probe").await), names(hosts.admin(1, "secrets/probe").await));
        if here == there {
            break;
        }
        assert!(Instant::now() < agreed, "the hosts disagree on the secrets set:\n{here:?}\nvs\n{there:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
