//! Seeing what the host does: `/_wdo/metrics`, JSON logs with request ids, `wdo tail`, and the
//! inspector (`wdo inspect`, `wdo kv`, `wdo sql`).

use crate::harness::{Server, Site, guest};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "observe-token-0123456789";

fn site() -> Site {
    Site::new(&[("counter", guest("counter")), ("probe", guest("probe"))])
}

fn start(site: &Site, flags: &[&str]) -> Server {
    let mut all = vec!["--admin-token", TOKEN, "--cpu-limit", "300ms", "--memory-limit", "32MiB"];
    all.extend_from_slice(flags);
    site.start(&all)
}

/// One request on a connection of its own, written by hand: the status, the headers (lower
/// case) and the body.
async fn raw(server: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nhost: wdo\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

async fn metrics(server: &Server) -> String {
    let (status, _, body) =
        raw(server, "GET", "/_wdo/metrics", &[("authorization", &format!("Bearer {TOKEN}"))], "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of one sample (`name{labels} value`) of the exposition, 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_events_by_class_and_outcome_without_object_names() {
    let site = site();
    let server = start(&site, &["--mailbox-capacity", "4"]);
    for _ in 0..3 {
        assert_eq!(server.post("/counter/secret-name-1/increment", "").await.0, 200);
    }
    // A WebSocket message in and its echo out; an alarm that fires; a full mailbox.
    let mut socket = server.socket("/probe/secret-name-5/ws").await;
    futures_util::SinkExt::send(&mut socket, Message::Binary(b"ping".to_vec().into())).await.unwrap();
    assert_eq!(crate::harness::next_message(&mut socket).await, Message::Binary(b"ping".to_vec().into()));
    assert_eq!(server.post("/probe/secret-name-6/alarm/set?in=50", "").await.0, 200);
    let answers = crate::harness::concurrent_posts(&server, "/probe/secret-name-7/busy?ms=100", 24).await;
    let refused = answers.iter().filter(|(status, _)| *status == 503).count() as f64;
    assert!(refused > 0.0, "{answers:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while sample(&metrics(&server).await, "wdo_alarms_fired_total") < 1.0 {
        assert!(Instant::now() < deadline, "the alarm fires and is counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.get("/counter/secret-name-1/nowhere").await.0, 404);
    assert_eq!(server.post("/probe/secret-name-2/trap", "").await.0, 500);
    assert_eq!(server.post("/probe/secret-name-3/loop", "").await.0, 500);
    assert_eq!(server.post("/probe/secret-name-4/alloc", "").await.0, 500);
    let text = metrics(&server).await;
    let expect = [
        (r#"wdo_requests_total{class="counter",outcome="ok"}"#, 3.0),
        (r#"wdo_requests_total{class="counter",outcome="error_response"}"#, 1.0),
        (r#"wdo_events_total{class="counter",kind="fetch",outcome="ok"}"#, 3.0),
        (r#"wdo_events_total{class="probe",kind="fetch",outcome="trap"}"#, 1.0),
        (r#"wdo_events_total{class="probe",kind="fetch",outcome="cpu_limit"}"#, 1.0),
        (r#"wdo_events_total{class="probe",kind="fetch",outcome="memory_limit"}"#, 1.0),
        (r#"wdo_requests_total{class="probe",outcome="cpu_limit"}"#, 1.0),
        (r#"wdo_event_duration_seconds_count{class="counter"}"#, 4.0),
        (r#"wdo_events_total{class="probe",kind="websocket",outcome="ok"}"#, 1.0),
        (r#"wdo_events_total{class="probe",kind="alarm",outcome="ok"}"#, 1.0),
        (r#"wdo_events_total{class="probe",kind="fetch",outcome="overloaded"}"#, refused),
        (r#"wdo_requests_total{class="probe",outcome="overloaded"}"#, refused),
        (r#"wdo_requests_total{class="probe",outcome="ok"}"#, 24.0 - refused + 2.0),
        ("wdo_websocket_messages_in_total", 1.0),
        ("wdo_websocket_messages_out_total", 1.0),
        ("wdo_alarms_fired_total", 1.0),
        ("wdo_websockets_open", 1.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), value, "{series} in\n{text}");
    }
    // Every probe event ran but the refused: the CPU-limited one took at least its limit.
    let probe_events = sample(&text, r#"wdo_event_duration_seconds_count{class="probe"}"#);
    assert_eq!(probe_events, 3.0 + 24.0 - refused + 4.0, "{text}");
    let slow = probe_events - sample(&text, r#"wdo_event_duration_seconds_bucket{le="0.2048",class="probe"}"#);
    assert!(slow >= 1.0, "{text}");
    // At least a page (1 KiB) of the counter's database.
    assert!(sample(&text, r#"wdo_storage_written_bytes_total{class="counter"}"#) >= 1024.0, "{text}");
    assert!(sample(&text, "wdo_open_objects") >= 2.0, "{text}");
    assert!(text.contains("# TYPE wdo_live_instances gauge"), "{text}");
    assert!(!text.contains("secret-name"), "object names are never labels:\n{text}");
    // Behind the admin token.
    let (status, _, body) = raw(&server, "GET", "/_wdo/metrics", &[], "").await;
    assert_eq!(status, 401, "{body}");
    // Counters only grow: more traffic, higher counts.
    assert_eq!(server.post("/counter/secret-name-1/increment", "").await.0, 200);
    let again = metrics(&server).await;
    assert_eq!(sample(&again, r#"wdo_events_total{class="counter",kind="fetch",outcome="ok"}"#), 4.0);

    let other = self::site();
    let off = start(&other, &["--metrics", "off"]);
    assert_eq!(off.post("/counter/a/increment", "").await.0, 200);
    let (status, _, body) =
        raw(&off, "GET", "/_wdo/metrics", &[("authorization", &format!("Bearer {TOKEN}"))], "").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("metrics are off"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_class_object_kind_and_the_request_id_returned_to_the_client() {
    let site = site();
    let server = start(&site, &["--log-format", "json"]);
    let (status, head, _) = raw(&server, "POST", "/probe/logged/trap", &[("x-request-id", "test-req-42")], "").await;
    assert_eq!(status, 500);
    assert!(head.contains("x-request-id: test-req-42"), "{head}");
    // A request without an id gets one of the host's making.
    let (_, head, _) = raw(&server, "POST", "/counter/a/increment", &[], "").await;
    let made = head.lines().find_map(|l| l.strip_prefix("x-request-id: ")).expect("an id").trim().to_string();
    assert_eq!(made.len(), 16, "{head}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    assert!(lines.iter().all(|l| l["time"].is_string() && l["level"].is_string()), "{log}");
    let of_request: Vec<&Value> = lines.iter().filter(|l| l["request_id"] == "test-req-42").collect();
    // The event's own line: class, object (and its id), kind, outcome, duration, message.
    let event = of_request.iter().find(|l| l["target"] == "wdo::event").unwrap_or_else(|| panic!("{log}"));
    assert_eq!((event["class"].as_str(), event["object"].as_str()), (Some("probe"), Some("probe/logged")), "{event}");
    assert_eq!(event["object_id"].as_str().map(str::len), Some(64), "{event}");
    assert_eq!((event["kind"].as_str(), event["outcome"].as_str()), (Some("fetch"), Some("trap")), "{event}");
    assert!(event["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{event}");
    assert!(event["message"].as_str().unwrap().contains("deliberate panic"), "{event}");
    // What the guest printed carries the same.
    let printed = |l: &&&Value| l["target"] == "wdo::guest" && l["message"].as_str().unwrap().contains("panicked");
    let guest = of_request.iter().find(printed).unwrap_or_else(|| panic!("{log}"));
    assert_eq!(guest["class"], "probe", "{guest}");
    assert!(guest["message"].as_str().unwrap().contains("panicked at"), "{guest}");
}

/// `wdo tail` with its flags, its output read line by line from a thread.
struct Tail {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Tail {
    fn start(server: &Server, args: &[&str]) -> Tail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wdo"))
            .arg("tail")
            .args(args)
            .env("WDO_SERVER", format!("http://{}", server.addr))
            .env("WDO_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Tail { child, lines }
    }

    /// Lines until one contains `text` (within 20 s), that one included.
    fn until(&self, text: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(text);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with `{text}` within 20 s; saw:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wdo_tail_shows_a_trapped_event_with_its_message_and_filters_by_class_and_status() {
    let site = site();
    let server = start(&site, &[]);
    let everything = Tail::start(&server, &["--json"]);
    let failures = Tail::start(&server, &["probe", "--status", "error", "--json"]);
    let human = Tail::start(&server, &["probe"]);
    human.until("watching events");
    let deadline = Instant::now() + Duration::from_secs(20);
    while sample(&metrics(&server).await, "wdo_tails") != 3.0 {
        assert!(Instant::now() < deadline, "three tails open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(server.post("/counter/c/increment", "").await.0, 200);
    assert_eq!(server.post("/probe/fine/put", "x").await.0, 200);
    assert_eq!(server.post("/probe/broken/trap", "").await.0, 500);
    assert_eq!(server.post("/counter/c/increment", "").await.0, 200);

    let seen = everything.until("\"probe\"");
    let counter: Value = serde_json::from_str(&seen[seen.len() - 2]).unwrap();
    assert_eq!((counter["class"].as_str(), counter["outcome"].as_str()), (Some("counter"), Some("ok")), "{seen:?}");
    assert_eq!((counter["name"].as_str(), counter["status"].as_u64()), (Some("c"), Some(200)));
    assert!(counter["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{counter}");
    everything.until("\"broken\"");
    let seen = everything.until("\"counter\"");
    assert_eq!(seen.len(), 1, "every event, in order: {seen:?}");

    // The filtered tail sees only the probe's failure: its message and what the guest printed.
    let seen = failures.until("\"broken\"");
    assert_eq!(seen.len(), 1, "only failures of the probe: {seen:?}");
    let trap: Value = serde_json::from_str(&seen[0]).unwrap();
    assert_eq!((trap["kind"].as_str(), trap["outcome"].as_str()), (Some("fetch"), Some("trap")), "{trap}");
    assert!(trap["error"].as_str().unwrap().contains("deliberate panic"), "{trap}");
    let logs: Vec<&str> = trap["logs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(logs.iter().any(|l| l.contains("panicked at")), "{trap}");
    assert!(failures.lines.recv_timeout(Duration::from_millis(300)).is_err(), "nothing else");

    // For people: one line per event, the guest's lines and the error under it.
    let seen = human.until("! probe/broken");
    assert!(seen.iter().any(|l| l.contains("ok") && l.contains("probe/fine fetch 200")), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("trap") && l.contains("probe/broken fetch 500")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("    | ") && l.contains("deliberate panic")), "{seen:?}");

    let text = metrics(&server).await;
    assert_eq!(sample(&text, "wdo_tails"), 3.0, "{text}");
    // At most 16 tails at once: the 17th is refused, saying why.
    let mut more = Vec::new();
    for _ in 0..13 {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let ask = format!("GET /_wdo/admin/tail HTTP/1.1\r\nhost: wdo\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
        stream.write_all(ask.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        more.push(stream);
    }
    let (status, _, body) =
        raw(&server, "GET", "/_wdo/admin/tail", &[("authorization", &format!("Bearer {TOKEN}"))], "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("16 tails are open"), "{body}");
    drop(more);
    drop((everything, failures, human));
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&metrics(&server).await, "wdo_tails") != 0.0 {
        assert!(Instant::now() < deadline, "tails whose clients left are closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_that_does_not_read_loses_records_and_slows_no_request() {
    let site = site();
    let server = start(&site, &[]);
    // A tail client with a tiny receive window that never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(server.addr).await.unwrap();
    let ask = format!("GET /_wdo/admin/tail HTTP/1.1\r\nhost: wdo\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
    stuck.write_all(ask.as_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&metrics(&server).await, "wdo_tails") != 1.0 {
        assert!(Instant::now() < deadline, "the tail opens");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Far more than the tail's backlog (1,024 records) and the sockets' buffers hold (each
    // record carries ~6 KiB the guest printed): every event is answered while the tail is stuck.
    let said = "x".repeat(6000);
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (addr, said) = (server.addr, said.clone());
            tokio::spawn(async move {
                let mut client = crate::harness::Client::connect(addr).await;
                for _ in 0..400 {
                    assert_eq!(client.send("POST", &format!("/probe/o{task}/say"), &said).await.0, 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(server.post("/counter/after/increment", "").await, (200, "1".to_string()));
    // Read now: the tail says what it dropped, and so do the metrics.
    let mut missed = 0;
    let mut pending = Vec::new();
    let mut buffer = vec![0u8; 64 << 10];
    let deadline = Instant::now() + Duration::from_secs(20);
    while missed == 0 && Instant::now() < deadline {
        let read = tokio::time::timeout(Duration::from_secs(2), stuck.read(&mut buffer)).await;
        let Ok(Ok(n)) = read else { continue };
        assert!(n > 0, "the tail stays open");
        pending.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&pending);
        missed = text
            .split("{\"dropped\":")
            .skip(1)
            .filter_map(|rest| rest.split('}').next()?.trim().parse::<u64>().ok())
            .sum();
    }
    assert!(missed > 0, "the tail tells what it dropped");
    assert!(sample(&metrics(&server).await, "wdo_tail_dropped_total") > 0.0);
}

fn wdo(server: &Server, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wdo"))
        .args(args)
        .env("WDO_SERVER", format!("http://{}", server.addr))
        .env("WDO_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_reads_committed_data_and_refuses_to_write() {
    let site = site();
    let server = start(&site, &[]);
    let sql = |query: &str| serde_json::json!({ "query": query }).to_string();
    assert_eq!(server.post("/probe/shop/sql", &sql("CREATE TABLE items (name TEXT, price INTEGER)")).await.0, 200);
    assert_eq!(server.post("/probe/shop/sql", &sql("INSERT INTO items VALUES ('tea', 3), ('cake', 5)")).await.0, 200);
    let put = r#"{"op": "put-many", "entries": [["user:1", {"name": "ada"}], ["user:2", "bob"], ["other", 7]]}"#;
    assert_eq!(server.post("/probe/shop/kv", put).await.0, 200);

    let (ok, out, err) = wdo(&server, &["sql", "probe", "shop", "SELECT name, price FROM items ORDER BY price"]);
    assert!(ok, "{err}");
    assert_eq!(out, "name\tprice\ntea\t3\ncake\t5\n");
    // Anything that writes is refused, and nothing changes.
    for write in ["DELETE FROM items", "WITH x AS (SELECT 1) DELETE FROM items", "DROP TABLE items", "BEGIN"] {
        let (ok, _, err) = wdo(&server, &["sql", "probe", "shop", write]);
        assert!(!ok && err.contains("refused"), "{write}: {err}");
    }
    let (_, out, _) = wdo(&server, &["sql", "probe", "shop", "SELECT count(*) FROM items"]);
    assert!(out.ends_with("\n2\n"), "{out}");
    // A query that never ends is stopped by the CPU limit (300 ms here); the object answers on.
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let (ok, _, err) = wdo(&server, &["sql", "probe", "shop", endless]);
    assert!(!ok && err.contains("interrupt"), "{err}");
    assert_eq!(server.post("/probe/shop/sql", &sql("SELECT count(*) FROM items")).await.0, 200);
    // In order with the object's events: what the last acknowledged request wrote is there.
    assert_eq!(server.post("/probe/shop/sql", &sql("INSERT INTO items VALUES ('pie', 4)")).await.0, 200);
    let (_, out, _) = wdo(&server, &["sql", "probe", "shop", "SELECT count(*) FROM items", "--json"]);
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["rows"], serde_json::json!([[3]]), "{out}");

    let (ok, out, err) = wdo(&server, &["kv", "probe", "shop", "--prefix", "user:"]);
    assert!(ok, "{err}");
    assert_eq!(out, "user:1\t{\"name\":\"ada\"}\nuser:2\t\"bob\"\n");

    let (ok, out, err) = wdo(&server, &["inspect", "probe", "shop"]);
    assert!(ok, "{err}");
    assert!(out.contains("keys         3") && out.contains("table        items (3 rows)"), "{out}");
    assert!(out.contains("live         yes"), "{out}");
    let (_, out, _) = wdo(&server, &["inspect", "counter", "never-touched"]);
    assert!(out.contains("keys         0") && out.contains("live         no"), "{out}");
    // Inspecting creates nothing on disk.
    let objects = site.data().join("objects").join("counter");
    let databases: Vec<_> = walk(&objects).into_iter().filter(|f| f.to_string_lossy().contains(".sqlite")).collect();
    assert!(databases.is_empty(), "{databases:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_inspector_answers_through_any_host_and_request_ids_cross_hosts() {
    let hosts = crate::cluster::Hosts::start(2, 1);
    let addrs = [hosts.addr(0), hosts.addr(1)];
    let mut turn = 0;
    for _ in 0..2 {
        crate::cluster::increment(&addrs, "seen", &mut turn, Duration::from_secs(20)).await;
    }
    let owner = hosts.owner("counter", "seen").await.expect("held");
    let other = 1 - owner;
    // Through the host that does not hold it: the owner answers, as an event of the object.
    let summary = hosts.admin(other, "objects/counter/seen").await;
    assert_eq!((summary["keys"].as_i64(), summary["was_open"].as_bool()), (Some(1), Some(true)), "{summary}");
    let keys = hosts.admin(other, "objects/counter/seen/kv").await;
    assert_eq!(keys["keys"], serde_json::json!([{ "key": "value", "value": 2 }]), "{keys}");
    let (status, answer) = hosts.admin_send(other, "POST", "objects/counter/seen/sql", b"SELECT 6 * 7").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("42"), "{answer}");
    let (status, answer) = hosts.admin_send(other, "POST", "objects/counter/seen/sql", b"DELETE FROM t").await;
    assert!(status == 400 && answer.contains("refused"), "{status} {answer}");

    // A request through one host keeps its id on the host that runs it.
    let mut tries = 0;
    let speaker = loop {
        // An object of the probe held by the host that the request does not enter.
        tries += 1;
        assert!(tries < 64, "no probe object landed on host {owner}");
        let name = format!("speaker-{}", rand_name());
        let mut client = crate::harness::Client::connect(hosts.addr(other)).await;
        let (status, _) = client.send("POST", &format!("/probe/{name}/put"), "x").await;
        assert_eq!(status, 200);
        if hosts.owner("probe", &name).await == Some(owner) {
            break name;
        }
    };
    let mut client = crate::harness::Client::connect(hosts.addr(other)).await;
    let headers = [("x-request-id", "crossing-hosts-7")];
    let (status, _) = client
        .send_with_headers("POST", &format!("/probe/{speaker}/say"), &headers, b"said across hosts".to_vec())
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = hosts.server(owner).log();
    assert!(log.lines().any(|l| l.contains("said across hosts") && l.contains("request_id=crossing-hosts-7")), "{log}");
}

fn rand_name() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_requests_and_the_calls_it_makes_are_counted() {
    guest("worker-counter-worker");
    guest("worker-counter-object");
    let data = tempfile::tempdir().unwrap();
    let manifest = crate::harness::workspace().join("examples/worker-counter/wdo.toml");
    let server = Server::start(&manifest, &data.path().join("data"), &["--admin-token", TOKEN], None);
    for _ in 0..3 {
        assert_eq!(server.post("/increment?name=w", "").await.0, 200);
    }
    assert_eq!(server.get("/increment").await.0, 400);
    let text = metrics(&server).await;
    assert_eq!(sample(&text, r#"wdo_requests_total{class="_worker",outcome="ok"}"#), 3.0, "{text}");
    assert_eq!(sample(&text, r#"wdo_requests_total{class="_worker",outcome="error_response"}"#), 1.0, "{text}");
    assert_eq!(sample(&text, r#"wdo_events_total{class="_worker",kind="fetch",outcome="ok"}"#), 3.0, "{text}");
    assert!(sample(&text, r#"wdo_rpc_calls_total{class="counter"}"#) >= 3.0, "{text}");
    assert!(text.contains(r#"wdo_events_total{class="counter",kind="call",outcome="ok"}"#), "{text}");
}
