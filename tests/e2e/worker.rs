//! The worker world: a stateless front component, here the product page's worker-counter.

use crate::harness::{Client, Server, guest, start_failure, workspace};

/// What every worker-counter answers, in every language: `GET <path>` → (status, body).
const COUNTER_ROUTES: [(&str, u16, &str); 5] = [
    ("/increment?name=A", 200, "1"),
    ("/increment?name=A", 200, "2"),
    ("/decrement?name=A", 200, "1"),
    ("/?name=A", 200, "1"),
    ("/?name=B", 200, "0"),
];

/// Sends `GET <path>` for each route, in order, and checks the answers.
async fn assert_routes(client: &mut Client, routes: &[(&str, u16, &str)], label: &str) {
    for &(path, status, body) in routes {
        assert_eq!(client.send("GET", path, "").await, (status, body.to_string()), "{label} {path}");
    }
}

fn start() -> (Server, tempfile::TempDir) {
    start_with(&[])
}

fn start_with(flags: &[&str]) -> (Server, tempfile::TempDir) {
    // The example's own manifest: its paths are part of the contract.
    guest("worker-counter-worker");
    guest("worker-counter-object");
    let data = tempfile::tempdir().unwrap();
    let manifest = workspace().join("examples/worker-counter/wdo.toml");
    (Server::start(&manifest, &data.path().join("data"), flags, None), data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_counter_answers_as_on_the_product_page() {
    let (server, _data) = start();
    let mut client = server.client().await;
    assert_routes(&mut client, &COUNTER_ROUTES, "rust").await;
    let cases = [
        ("/increment?name=a%20b", 200, "1"),
        ("/?name=a+b", 200, "1"),
        ("/", 400, "missing ?name"),
        ("/increment", 400, "missing ?name"),
        ("/?name=", 400, "missing ?name"),
        ("/other?name=A", 404, "not found"),
        ("/counter/A?name=A", 404, "not found"),
    ];
    assert_routes(&mut client, &cases, "rust").await;
    // The host's own routes stay the host's; the call route, which would go around the worker,
    // is off unless asked for.
    assert_eq!(client.send("GET", "/_wdo/health", "").await, (200, "ok\n".into()));
    let (status, body) = client.send("POST", "/_call/counter/A/getCounterValue", "").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("the call route is off: start the host with --call-route"), "{body}");
    assert_eq!(client.send("GET", "/?name=A", "").await, (200, "1".into()), "the call changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_route_reaches_objects_only_when_the_host_turns_it_on() {
    let (server, _data) = start_with(&["--call-route"]);
    assert_eq!(server.get("/increment?name=A").await, (200, "1".into()));
    assert_eq!(server.post("/_call/counter/A/getCounterValue", "").await, (200, "1".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_through_the_worker_do_not_race() {
    let (server, _data) = start();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let addr = server.addr;
        tasks.push(tokio::spawn(
            async move { Client::connect(addr).await.send("GET", "/increment?name=hot", "").await },
        ));
    }
    let mut values: Vec<u32> = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        values.push(body.parse().unwrap());
    }
    values.sort();
    assert_eq!(values, (1..=100).collect::<Vec<u32>>());
}

#[test]
fn a_worker_of_the_wrong_world_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("wdo.toml");
    let object = guest("counter").display().to_string();
    std::fs::write(&manifest, format!("[worker]\ncomponent = {object:?}\n[classes.counter]\ncomponent = {object:?}\n"))
        .unwrap();
    let err = start_failure(&manifest, &dir.path().join("data"));
    assert!(err.contains("class `worker`"), "{err}");
    assert!(err.contains("missing export `wdo:object/worker-handler@0.1.0`"), "{err}");
}

/// The worker world from the JavaScript and Python SDKs (`guest-sdk/js/worker.js`,
/// `wdo.worker`), each in front of the counter of its language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_and_python_workers_route_to_their_counters() {
    for suffix in ["-js", "-py"] {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("wdo.toml");
        let text = format!(
            "[worker]\ncomponent = {:?}\n[classes.counter{suffix}]\ncomponent = {:?}\n",
            guest(&format!("worker{suffix}")).display().to_string(),
            guest(&format!("counter{suffix}")).display().to_string()
        );
        std::fs::write(&manifest, text).unwrap();
        let server = Server::start(&manifest, &dir.path().join("data"), &[], None);
        let mut client = server.client().await;
        assert_routes(&mut client, &COUNTER_ROUTES, suffix).await;
        let cases = [("/", 400, "missing ?name=\n"), ("/other?name=A", 404, "not found\n")];
        assert_routes(&mut client, &cases, suffix).await;
        if suffix == "-js" {
            // Spare instances are made ahead of need, but each has run nothing: no request sees
            // another's module state, one after another or at once.
            for _ in 0..20 {
                assert_eq!(client.send("GET", "/seen", "").await, (200, "1".into()));
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            for (status, body) in crate::harness::concurrent_posts(&server, "/seen", 32).await {
                assert_eq!((status, body.as_str()), (200, "1"));
            }
            assert!(
                server.log().contains("spare worker") || !server.log().contains("could not make"),
                "{}",
                server.log()
            );
        }
    }
}

/// `reuse_instances = true`: a JavaScript worker's instance serves request after request with its
/// module state, one request at a time; a request that fails drops its instance, and so does
/// waiting longer than `--idle-timeout`; a deploy without the setting brings fresh instances back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_reuses_instances_keeps_module_state_until_a_request_fails_or_it_idles() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = |reuse: bool| {
        let path = dir.path().join(format!("wdo-{reuse}.toml"));
        let text = format!(
            "[worker]\ncomponent = {:?}\nreuse_instances = {reuse}\n[classes.counter-js]\ncomponent = {:?}\n",
            guest("worker-js").display().to_string(),
            guest("counter-js").display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let data = dir.path().join("data");
    // The CPU limit stops `/spin` below, and must not stop the forty requests that compute at
    // once further down: at 300 ms one of them did, on a VM running at half its usual pace.
    let flags = ["--cpu-limit", "1s", "--idle-timeout", "1s"];
    let server = Server::start(&manifest(true), &data, &flags, None);
    let mut client = server.client().await;
    for expected in 1..=5 {
        assert_eq!(client.send("GET", "/seen", "").await, (200, expected.to_string()));
    }
    assert_routes(&mut client, &COUNTER_ROUTES, "reused").await;
    assert_eq!(client.send("GET", "/seen", "").await, (200, "6".into()), "the same instance after the routes");

    // A request the CPU limit stops fails alone, and its instance (its state may be half
    // changed) serves nothing more: the next request starts from fresh module state.
    let (status, body) = client.send("GET", "/spin", "").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("CPU time limit"), "{body}");
    assert_eq!(client.send("GET", "/seen", "").await, (200, "1".into()));
    assert_eq!(client.send("GET", "/seen", "").await, (200, "2".into()));

    // At once, each request has an instance to itself (none is entered twice), and every
    // instance counts only what it served: forty requests that each compute for tens of
    // milliseconds overlap, so some start afresh (1), and one that answers 2 answered 1 before
    // (the instance at 2 answers 3 and up). At most 32 of their instances wait for more.
    let answers = crate::harness::concurrent_posts(&server, "/seen?loops=1000000", 40).await;
    let mut seen: Vec<u32> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body.parse().unwrap()
        })
        .collect();
    seen.sort();
    let count = |n: u32| seen.iter().filter(|&&s| s == n).count();
    assert!(count(1) >= 1 && count(2) <= count(1) && seen[39] <= 42, "{seen:?}");
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let idle = || async {
        let auth = format!("Bearer {}", token.trim());
        let (status, body) =
            server.client().await.send_with_headers("GET", "/_wdo/metrics", &[("authorization", &auth)], vec![]).await;
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 200, "{body}");
        let line = body.lines().find(|l| l.starts_with("wdo_worker_instances_idle ")).expect("the idle gauge");
        line.split_whitespace().nth(1).unwrap().parse::<u32>().unwrap()
    };
    let waiting = idle().await;
    assert!((1..=32).contains(&waiting), "{waiting} idle instances");

    // Instances idle past --idle-timeout (1 s) are dropped (a sweep every second finds them):
    // fresh state again.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    assert_eq!(idle().await, 0);
    let mut client = server.client().await;
    assert_eq!(client.send("GET", "/seen", "").await, (200, "1".into()));
    assert_eq!(client.send("GET", "/seen", "").await, (200, "2".into()));

    // Taking the setting away is a new version of the worker: a fresh instance per request.
    let deployed = std::process::Command::new(env!("CARGO_BIN_EXE_wdo"))
        .arg("deploy")
        .arg(manifest(false))
        .args(["--server", &format!("http://{}", server.addr), "--data"])
        .arg(&data)
        .env_remove("WDO_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    let mut client = server.client().await;
    for _ in 0..3 {
        assert_eq!(client.send("GET", "/seen", "").await, (200, "1".into()));
    }
}

/// The worker's requests take places under `--max-instances` as objects do, and hold at most
/// half of them at once, so the objects they call always have the other half: forty requests
/// waiting on a slow upstream under 16 places run eight at a time (the rest wait their turn),
/// every one is answered, and the instances never take more than their places.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_requests_hold_at_most_half_the_instance_places() {
    let upstream = crate::upstream::Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("wdo.toml");
    let text = format!(
        "[worker]\ncomponent = {:?}\noutbound = [\"{}\"]\n[classes.counter-js]\ncomponent = {:?}\n",
        guest("worker-js").display().to_string(),
        upstream.addr,
        guest("counter-js").display().to_string()
    );
    std::fs::write(&manifest, text).unwrap();
    let server = Server::start(&manifest, &dir.path().join("data"), &["--max-instances", "16"], None);
    assert_eq!(server.get("/increment?name=A").await, (200, "1".into()));
    let slow = format!("/fetch?url={}", upstream.url("/slow?ms=300"));
    let load = {
        let server_addr = server.addr;
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..40 {
                let slow = slow.clone();
                tasks
                    .push(tokio::spawn(async move { Client::connect(server_addr).await.send("GET", &slow, "").await }));
            }
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await.unwrap());
            }
            answers
        })
    };
    // Mid-load, the places taken stay within the bound.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, stats) = server.get("/_wdo/stats").await;
    let places = stats.lines().find_map(|l| l.strip_prefix("instance_places ")).unwrap().parse::<usize>().unwrap();
    assert!((1..=16).contains(&places), "{stats}");
    for (status, body) in load.await.unwrap() {
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("200 "), "{body}");
    }
    assert!((2..=8).contains(&upstream.peak()), "{} worker requests at once", upstream.peak());
    // Through the worker, the object answers as before.
    assert_eq!(server.get("/increment?name=A").await, (200, "2".into()));
}
