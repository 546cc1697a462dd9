//! Objects reach the outside world: outbound HTTP under the manifest's allow list and the output
//! gate, and the vars and secrets their code reads. The remote side is `upstream`, a real HTTP
//! server on loopback.

use crate::harness::{Server, guest};
use crate::upstream::Upstream;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A folder with a manifest serving the probe with these extra lines in its table.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(probe_lines: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let site = Site { dir };
        site.write(probe_lines);
        site
    }

    fn write(&self, probe_lines: &str) {
        let manifest = format!(
            "[classes.probe]\ncomponent = {:?}\n{probe_lines}\n[classes.counter]\ncomponent = {:?}\n",
            guest("probe").display().to_string(),
            guest("counter").display().to_string()
        );
        std::fs::write(self.manifest(), manifest).unwrap();
    }

    fn manifest(&self) -> PathBuf {
        self.dir.path().join("wdo.toml")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start(&self, flags: &[&str]) -> Server {
        Server::start(&self.manifest(), &self.data(), flags, None)
    }
}

async fn fetch(server: &Server, object: &str, ask: Value) -> (u16, Value) {
    let (status, body) = server.post(&format!("/probe/{object}/fetch"), &ask.to_string()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_carries_its_method_headers_and_body_and_gets_the_answer() {
    let upstream = Upstream::start().await;
    let site = Site::new(&format!("outbound = [\"{}\"]", upstream.addr));
    let server = site.start(&[]);
    let ask = json!({
        "method": "POST", "url": upstream.url("/echo?x=1"), "headers": [["x-token", "abc"]], "body": "hello",
    });
    let (status, answer) = fetch(&server, "a", ask).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], 200);
    let echo: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!((echo["method"].as_str(), echo["path"].as_str()), (Some("POST"), Some("/echo?x=1")));
    assert_eq!((echo["headers"]["x-token"].as_str(), echo["body"].as_str()), (Some("abc"), Some("hello")));
    assert!(answer["headers"].as_array().unwrap().iter().any(|h| h[0] == "x-upstream" && h[1] == "yes"), "{answer}");
    // A status other than 2xx is an answer like any other; a redirect is followed.
    let (_, missing) = fetch(&server, "a", json!({"url": upstream.url("/nowhere")})).await;
    assert_eq!(missing["status"], 404);
    let to = upstream.url("/echo?hop=2");
    let (_, hopped) = fetch(&server, "a", json!({"url": upstream.url(&format!("/redirect?to={to}"))})).await;
    assert!(hopped["body"].as_str().unwrap().contains("/echo?hop=2"), "{hopped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_anything_not_allowed_are_refused_with_the_host_and_the_manifest_key() {
    let upstream = Upstream::start().await;
    // `*` allows any public name; loopback is reached only through the entry naming its address.
    let site = Site::new(&format!("outbound = [\"*\", \"localhost\", \"{}\"]", upstream.addr));
    let server = site.start(&[]);
    let refused = |answer: &Value| answer.as_str().unwrap_or_default().to_string();
    let cases = [
        // A name that resolves to loopback, though `localhost` is listed by name.
        (format!("http://localhost:{}/echo", upstream.addr.port() + 1), "127.0.0.1, a loopback address"),
        // The cloud metadata address, a private address, loopback on another port.
        ("http://169.254.169.254/latest/meta-data/".to_string(), "link-local address"),
        ("http://10.0.0.1/".to_string(), "a private address"),
        (format!("http://127.0.0.1:{}/", upstream.addr.port() + 1), "a loopback address"),
        // The host's own listener.
        (format!("http://{}/_wdo/health", server.addr), "one of this host's own listeners"),
        // A redirect from an allowed server to a refused address: the hop is checked.
        (upstream.url("/redirect?to=http://169.254.169.254/"), "169.254.169.254"),
    ];
    for (url, why) in cases {
        let (status, answer) = fetch(&server, "a", json!({"url": url})).await;
        let message = refused(&answer);
        assert_eq!(status, 502, "{url}: {message}");
        assert!(message.contains(why) && message.contains("[classes.probe] outbound"), "{url}: {message}");
    }
    // Without an entry the class has no network at all.
    let quiet = Site::new("");
    let server = quiet.start(&[]);
    let (status, answer) = fetch(&server, "a", json!({"url": upstream.url("/echo")})).await;
    let message = refused(&answer);
    assert_eq!(status, 502);
    assert!(message.contains(&format!("127.0.0.1:{}", upstream.addr.port())), "{message}");
    assert!(message.contains("may not reach the network") && message.contains("[classes.probe] outbound"), "{message}");
    // Nothing refused ever reached the upstream, but the redirect itself.
    assert!(
        upstream.seen().iter().all(|s| s.method == "GET" && s.path.starts_with("/redirect")),
        "{:?}",
        upstream.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_answers_fail_at_their_limits() {
    let upstream = Upstream::start().await;
    let site = Site::new(&format!("outbound = [\"{}\"]", upstream.addr));
    let server = site.start(&["--event-timeout", "2s", "--max-outbound-response", "1MiB"]);
    let started = Instant::now();
    let (status, answer) = fetch(&server, "a", json!({"url": upstream.url("/slow")})).await;
    let took = started.elapsed();
    assert_eq!(status, 502, "{answer}");
    assert!(answer.as_str().unwrap().contains("did not answer in time"), "{answer}");
    // It gives up a little before the event's deadline, so the guest can answer with the reason.
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(10), "took {took:?}");
    let (status, answer) = fetch(&server, "a", json!({"url": upstream.url("/big?bytes=2000000")})).await;
    assert_eq!(status, 502);
    assert!(answer.as_str().unwrap().contains("larger than the host allows (1048576 bytes)"), "{answer}");
    let (status, answer) = fetch(&server, "a", json!({"url": upstream.url("/big?bytes=1000000")})).await;
    assert_eq!((status, answer["body"].as_str().map(str::len)), (200, Some(1_000_000)));
    // Waiting on the network is not CPU time: a 1 s CPU limit lets a 1.5 s wait through.
    drop(server);
    let server = site.start(&["--cpu-limit", "1s", "--event-timeout", "1500ms"]);
    let (status, answer) = fetch(&server, "b", json!({"url": upstream.url("/slow")})).await;
    assert!(answer.as_str().unwrap().contains("did not answer in time"), "{status} {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_gate_makes_writes_durable_before_a_request_leaves() {
    let upstream = Upstream::start().await;
    let site = Site::new(&format!("outbound = [\"{}\"]", upstream.addr));
    let server = site.start(&[]);
    // The upstream kills the host (`kill -9`) the moment the request reaches it: the write the
    // event made before the request must survive, though the event never finished.
    let ask = json!({"url": upstream.url(&format!("/kill?pid={}", server.pid())), "write": "gated"});
    let mut connection = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = ask.to_string();
    let head = format!("POST /probe/a/fetch HTTP/1.1\r\nhost: wdo\r\ncontent-length: {}\r\n\r\n", body.len());
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    connection.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), connection.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "the host answered: {}", String::from_utf8_lossy(&answer));
    let mut killed = server;
    assert!(killed.wait_for_exit(Duration::from_secs(5)));
    let server = site.start(&[]);
    assert_eq!(server.get("/probe/a/get?key=gated").await, (200, "written before the request".into()));
    // A failure after the request rolls back only what follows it.
    let ask = json!({"url": upstream.url("/echo"), "write": "kept", "then_trap": true});
    let (status, body) = fetch(&server, "b", ask).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(server.get("/probe/b/get?key=kept").await.0, 200);
    assert_eq!(server.get("/probe/b/get?key=after").await.0, 404);
    // Inside an open transaction a request cannot leave: its writes could still be undone.
    let (status, refused) = server.post("/probe/c/fetch-in-transaction", &upstream.url("/echo")).await;
    assert_eq!(status, 200);
    assert!(refused.contains("cannot leave while a transaction (savepoint) is open"), "{refused}");
    assert_eq!(upstream.seen().iter().filter(|s| s.path == "/echo").count(), 1, "{:?}", upstream.seen());
}

/// Runs `wdo` with these arguments against `server`, `stdin` as its input.
fn wdo(server: &Server, data: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wdo"))
        .args(args)
        .args(["--server", &format!("http://{}", server.addr), "--data"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vars_and_secrets_reach_the_next_event_and_a_secret_is_never_shown() {
    const SECRET: &str = "sk-test-0123456789";
    let site = Site::new("vars = { GREETING = \"hi\", PERIOD = 30 }");
    let server = site.start(&[]);
    assert_eq!(server.get("/probe/a/env?key=GREETING").await, (200, "hi".into()));
    assert_eq!(server.get("/probe/a/env?key=PERIOD").await, (200, "30".into()));
    assert_eq!(server.get("/probe/a/env?key=API_KEY").await.0, 404);
    let data = site.data();
    let (ok, said) = wdo(&server, &data, &["secret", "put", "probe", "API_KEY"], &format!("{SECRET}\n"));
    assert!(ok && said.contains("API_KEY set"), "{said}");
    // The running instance's next event reads it.
    assert_eq!(server.get("/probe/a/env?key=API_KEY").await, (200, SECRET.into()));
    let (ok, listed) = wdo(&server, &data, &["secret", "list", "probe"], "");
    assert!(ok && listed.trim() == "API_KEY", "{listed}");
    let (ok, replaced) = wdo(&server, &data, &["secret", "put", "probe", "API_KEY"], "second");
    assert!(ok && replaced.contains("replaced"), "{replaced}");
    assert_eq!(server.get("/probe/a/env?key=API_KEY").await, (200, "second".into()));
    let (ok, refused) = wdo(&server, &data, &["secret", "put", "nosuch", "API_KEY"], "x");
    assert!(!ok && refused.contains("nosuch"), "{refused}");
    // A secret shadows a var of the same name; another class does not see it.
    wdo(&server, &data, &["secret", "put", "probe", "GREETING"], SECRET);
    assert_eq!(server.get("/probe/a/env?key=GREETING").await, (200, SECRET.into()));
    // A changed var is a new version, and reaches the next event.
    site.write("vars = { GREETING = \"hello\" }");
    let (ok, deployed) = wdo(&server, &data, &["deploy", site.manifest().to_str().unwrap()], "");
    assert!(ok && deployed.contains("probe") && deployed.contains("updated"), "{deployed}");
    let (ok, _) = wdo(&server, &data, &["secret", "delete", "probe", "GREETING"], "");
    assert!(ok);
    assert_eq!(server.get("/probe/a/env?key=GREETING").await, (200, "hello".into()));
    // Secrets survive a restart, and no log, listing, file outside the secrets or answer shows one.
    let (_, versions) = wdo(&server, &data, &["versions"], "");
    server.kill();
    let server = site.start(&[]);
    assert_eq!(server.get("/probe/b/env?key=API_KEY").await, (200, "second".into()));
    let (_, missing) = server.get("/probe/b/nosuch-route").await;
    for (what, text) in [("versions", versions), ("answer", missing), ("log", server.log())] {
        assert!(!text.contains(SECRET) && !text.contains("second"), "{what} shows a secret: {text}");
    }
    let state = std::fs::read_to_string(data.join("deploy/state.json")).unwrap();
    assert!(!state.contains("second") && state.contains("hello"), "{state}");
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::metadata(data.join("objects/probe/secrets.json")).unwrap();
    assert_eq!(file.permissions().mode() & 0o777, 0o600);
}

/// The JavaScript and Python probes: each language's own HTTP path (`fetch` over wasi:http in
/// JavaScript, `wdo.fetch` in Python), the host's refusal in the guest's error, and `env`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_and_python_reach_the_network_and_read_vars_and_secrets() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = String::new();
    for class in ["probe-js", "probe-py"] {
        manifest.push_str(&format!(
            "[classes.{class}]\ncomponent = {:?}\noutbound = [\"{}\"]\nvars = {{ MODE = \"{class}\" }}\n",
            guest(class).display().to_string(),
            upstream.addr
        ));
    }
    std::fs::write(dir.path().join("wdo.toml"), manifest).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&dir.path().join("wdo.toml"), &data, &[], None);
    for class in ["probe-js", "probe-py"] {
        assert_eq!(server.get(&format!("/{class}/a/env?key=MODE")).await, (200, class.into()));
        assert_eq!(server.get(&format!("/{class}/a/env?key=API_KEY")).await.0, 404, "{class}");
        let (ok, said) = wdo(&server, &data, &["secret", "put", class, "API_KEY"], "from-stdin\n");
        assert!(ok, "{said}");
        assert_eq!(server.get(&format!("/{class}/a/env?key=API_KEY")).await, (200, "from-stdin".into()));

        let ask = json!({"url": upstream.url("/echo?from=guest"), "method": "POST", "body": "hi", "write": "gated"});
        let (status, body) = server.post(&format!("/{class}/a/fetch"), &ask.to_string()).await;
        assert_eq!(status, 200, "{class}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((answer["status"].as_u64(), answer["upstream"].as_str()), (Some(200), Some("yes")), "{class}");
        let echo: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!((echo["method"].as_str(), echo["body"].as_str()), (Some("POST"), Some("hi")), "{class}");
        // Refused: the guest's own error carries the host's reason.
        let ask = json!({"url": "http://10.0.0.1/"});
        let (status, refused) = server.post(&format!("/{class}/a/fetch"), &ask.to_string()).await;
        assert_eq!(status, 502, "{class}: {refused}");
        let key = format!("[classes.{class}] outbound");
        assert!(refused.contains("10.0.0.1:80") && refused.contains(&key), "{class}: {refused}");
    }
    // A WebSocket client in each language: the remote end's greeting reaches the object.
    let feed = crate::upstream::WsUpstream::start().await;
    let (status, refused) = server.post("/probe-js/w/ws-connect", &feed.url()).await;
    assert_eq!(status, 502, "not listed: {refused}");
    assert!(refused.contains("[classes.probe-js] outbound"), "{refused}");
    drop(server);
    let listed = format!("outbound = [\"{}\", \"{}\"]", upstream.addr, feed.addr);
    let manifest = std::fs::read_to_string(dir.path().join("wdo.toml")).unwrap();
    std::fs::write(
        dir.path().join("wdo.toml"),
        manifest.replace(&format!("outbound = [\"{}\"]", upstream.addr), &listed),
    )
    .unwrap();
    let server = Server::start(&dir.path().join("wdo.toml"), &data, &[], None);
    for class in ["probe-js", "probe-py"] {
        let (status, socket) = server.post(&format!("/{class}/w/ws-connect"), &feed.url()).await;
        assert_eq!(status, 200, "{class}: {socket}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_, heard) = server.get(&format!("/{class}/w/ws-upstream")).await;
            if heard.contains("hello") {
                break;
            }
            assert!(Instant::now() < deadline, "{class} heard nothing: {heard}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // An async handler that rejects is a thrown error: a 500 with its message, writes rolled back.
    let (status, body) = server.post("/probe-js/b/async-throw", "").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("rejected on purpose"), "{body}");
    assert_eq!(server.get("/probe-js/b/written").await, (200, "false".into()));
}

/// examples/poller: an alarm polls the URL of its vars on a timer and keeps what came back; a URL
/// whose host `outbound` does not list is a result with the host's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_polls_its_url_on_a_timer_and_keeps_the_results() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let poller = guest("poller").display().to_string();
    let manifest = format!(
        "[classes.poller]\ncomponent = {poller:?}\noutbound = [\"{addr}\"]\n\
         vars = {{ URL = \"{url}\", PERIOD = 0.2 }}\n\n\
         [classes.stray]\ncomponent = {poller:?}\noutbound = [\"{addr}\"]\n\
         vars = {{ URL = \"http://10.0.0.1/\", PERIOD = 0.2 }}\n",
        addr = upstream.addr,
        url = upstream.url("/big?bytes=1234"),
    );
    std::fs::write(dir.path().join("wdo.toml"), manifest).unwrap();
    let server = Server::start(&dir.path().join("wdo.toml"), &dir.path().join("data"), &[], None);
    let (status, first) = server.get("/poller/status").await;
    assert_eq!(status, 200, "{first}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let polls = loop {
        let (_, body) = server.get("/poller/status").await;
        let answer: Value = serde_json::from_str(&body).unwrap();
        let polls = answer["polls"].as_array().unwrap().clone();
        if polls.len() >= 3 || Instant::now() > deadline {
            assert_eq!(answer["period_ms"], 200);
            break polls;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(polls.len() >= 3, "{polls:?}");
    assert!(polls.iter().all(|p| p["status"] == 200 && p["bytes"] == 1234), "{polls:?}");
    assert!(upstream.seen().iter().filter(|s| s.path == "/big?bytes=1234").count() >= 3);
    // Stopped, it polls no more.
    server.post("/poller/status/stop", "").await;
    let before = upstream.seen().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(upstream.seen().len() <= before + 1, "still polling after stop");
    // A refused URL is a result that says why.
    server.get("/stray/s").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, body) = server.get("/stray/s").await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    let error = answer["polls"][0]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("10.0.0.1:80") && error.contains("[classes.stray] outbound"), "{body}");
}

/// Waits (at most 5 s) until the probe `object` has heard `text` from its upstream socket;
/// answers everything it heard.
async fn heard(server: &Server, object: &str, text: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = server.get(&format!("/probe/{object}/ws-upstream")).await;
        let heard: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
        if heard.iter().any(|h| h["text"] == text) || Instant::now() > deadline {
            return heard;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `websockets.connect`: the object is the client of a remote WebSocket the host owns; messages
/// flow both ways, and one from the remote end wakes the object after it hibernated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_websocket_carries_messages_both_ways_across_hibernation() {
    let feed = crate::upstream::WsUpstream::start().await;
    let site = Site::new(&format!("outbound = [\"{}\"]", feed.addr));
    let server = site.start(&["--idle-timeout", "150ms", "--object-idle-timeout", "150ms"]);
    let (status, socket) = server.post("/probe/r/ws-connect", &feed.url()).await;
    assert_eq!(status, 200, "{socket}");
    assert_eq!(server.get("/probe/r/get?key=before-connect").await.0, 200);
    assert!(heard(&server, "r", "hello").await.iter().any(|h| h["text"] == "hello"));
    server.post("/probe/r/ws-upstream-send", "one").await;
    assert!(heard(&server, "r", "echo:one").await.iter().any(|h| h["text"] == "echo:one"));
    assert!(feed.received().contains(&"one".to_string()), "{:?}", feed.received());
    // Ask for a message in 800 ms; meanwhile the object hibernates (instance and database gone).
    server.post("/probe/r/ws-upstream-send", "later:800").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, stats) = server.get("/_wdo/stats").await;
    assert!(stats.contains("active_objects 0"), "the object hibernated: {stats}");
    // Untouched until the message has come (asking would wake it first).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let late = heard(&server, "r", "late").await;
    let late = late.iter().find(|h| h["text"] == "late").unwrap_or_else(|| panic!("{late:?}"));
    assert_eq!(late["events"], 1, "a fresh instance heard it: {late}");
    // The remote end closes: the object hears it as for any socket.
    server.post("/probe/r/ws-upstream-send", "bye").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, closes) = server.get("/probe/r/closes").await;
        if closes.contains(&format!("\"socket\":{socket}")) {
            assert!(closes.contains("\"attachment\":\"mine\""), "{closes}");
            break;
        }
        assert!(Instant::now() < deadline, "no close heard: {closes}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not listed, or not a WebSocket URL: refused with the reason.
    let (status, refused) = server.post("/probe/s/ws-connect", "ws://10.0.0.1/feed").await;
    assert_eq!(status, 502, "{refused}");
    assert!(refused.contains("10.0.0.1:80") && refused.contains("[classes.probe] outbound"), "{refused}");
    let (status, bad) = server.post("/probe/s/ws-connect", "http://example.org/").await;
    assert_eq!(status, 502, "{bad}");
    assert!(bad.contains("not a ws:// or wss:// URL"), "{bad}");
}

/// examples/relay: one outbound WebSocket to a feed, rebroadcast to the object's clients, and
/// clients' messages sent up, across a hibernation of the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_rebroadcasts_its_feed_to_its_clients_across_hibernation() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let feed = crate::upstream::WsUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "[classes.relay]\ncomponent = {:?}\noutbound = [\"{}\"]\nvars = {{ FEED = \"{}\" }}\n",
        guest("relay").display().to_string(),
        feed.addr,
        feed.url()
    );
    std::fs::write(dir.path().join("wdo.toml"), manifest).unwrap();
    let flags = ["--idle-timeout", "150ms", "--object-idle-timeout", "150ms"];
    let server = Server::start(&dir.path().join("wdo.toml"), &dir.path().join("data"), &flags, None);
    let text = |m: Message| m.into_text().map(|t| t.to_string()).unwrap_or_default();
    let mut first = server.socket("/relay/main").await;
    assert_eq!(text(crate::harness::next_message(&mut first).await), "hello");
    let mut second = server.socket("/relay/main").await;
    first.send(Message::text("ping")).await.unwrap();
    for client in [&mut first, &mut second] {
        assert_eq!(text(crate::harness::next_message(client).await), "echo:ping");
    }
    // The object hibernates; the feed's connection and the clients' stay, and the next message
    // wakes it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, stats) = server.get("/_wdo/stats").await;
    assert!(stats.contains("active_objects 0"), "{stats}");
    second.send(Message::text("again")).await.unwrap();
    for client in [&mut first, &mut second] {
        assert_eq!(text(crate::harness::next_message(client).await), "echo:again");
    }
    assert_eq!(feed.received(), ["ping", "again"]);
    let (_, status) = server.get("/relay/main").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!((status["feed_open"].as_bool(), status["clients"].as_u64()), (Some(true), Some(2)), "{status}");
    assert_eq!(status["relayed"], 3);
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it (openssl); answers the folder with
/// `ca.pem`, `leaf.pem` and `leaf.key`.
fn test_ca() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new("openssl").args(args).current_dir(dir.path()).output().expect("openssl");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=wdo test CA"],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]].concat());
    let extensions = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.path().join("leaf.ext"), extensions).unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    dir
}

/// HTTPS goes through rustls with the machine's CA roots (`SSL_CERT_FILE` names them here): a
/// server whose certificate chains to them answers; one that does not is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_checked_against_the_machines_ca_roots() {
    let ca = test_ca();
    let upstream = Upstream::start_tls(&ca.path().join("leaf.pem"), &ca.path().join("leaf.key")).await;
    let site = Site::new(&format!("outbound = [\"{}\"]", upstream.addr));
    let roots = ca.path().join("ca.pem").display().to_string();
    let trusting =
        Server::launch_with_env(Some(&site.manifest()), &site.data(), &[], None, &[("SSL_CERT_FILE", &roots)]);
    let (status, answer) = fetch(&trusting, "a", json!({"url": upstream.url("/echo?tls=1")})).await;
    assert_eq!((status, answer["status"].as_u64()), (200, Some(200)), "{answer}");
    drop(trusting);
    // The system's roots (the test CA is not among them): the certificate is refused.
    let system = Server::start(&site.manifest(), &site.data(), &[], None);
    let (status, answer) = fetch(&system, "b", json!({"url": upstream.url("/echo?tls=2")})).await;
    assert_eq!(status, 502, "{answer}");
    assert!(answer.as_str().unwrap_or_default().to_lowercase().contains("tls"), "{answer}");
    assert_eq!(upstream.seen().len(), 1, "only the trusted request was served");
}

/// A folder whose `wdo.toml` serves the JavaScript probe, allowed to reach `addr`.
fn js_probe_site(addr: std::net::SocketAddr) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "[classes.probe-js]\ncomponent = {:?}\noutbound = [\"{addr}\"]\n",
        guest("probe-js").display().to_string()
    );
    std::fs::write(dir.path().join("wdo.toml"), manifest).unwrap();
    dir
}

/// `--max-outbound-per-object`: a JavaScript object sending six requests at once has at most
/// that many in flight; the others wait for a slot and all are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_per_object_are_bounded() {
    let upstream = Upstream::start().await;
    let dir = js_probe_site(upstream.addr);
    let ask = json!({"url": upstream.url("/slow?ms=300"), "n": 6}).to_string();
    for (limit, most) in [("2", 2), ("6", 6)] {
        let data = dir.path().join(format!("data-{limit}"));
        let flags = ["--max-outbound-per-object", limit];
        let server = Server::start(&dir.path().join("wdo.toml"), &data, &flags, None);
        let before = upstream.peak();
        let (status, statuses) = server.post("/probe-js/a/fetch-many", &ask).await;
        assert_eq!((status, statuses.as_str()), (200, "[200,200,200,200,200,200]"), "limit {limit}");
        let peak = upstream.peak().max(before);
        assert!(peak <= most, "limit {limit}: {peak} requests at once");
        if most == 6 {
            assert!(peak > 2, "six at once should overlap beyond two without the lower limit: {peak}");
        }
    }
}

/// The worker reaches the network under `[worker] outbound` and reads `[worker]` vars and the
/// worker's secrets, in JavaScript and in Python.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_fetch_under_their_own_list_and_read_their_vars_and_secrets() {
    let upstream = Upstream::start().await;
    for suffix in ["-js", "-py"] {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("wdo.toml");
        let text = format!(
            "[worker]\ncomponent = {:?}\noutbound = [\"{}\"]\nvars = {{ GREETING = \"hi{suffix}\" }}\n\
             [classes.counter{suffix}]\ncomponent = {:?}\n",
            guest(&format!("worker{suffix}")).display().to_string(),
            upstream.addr,
            guest(&format!("counter{suffix}")).display().to_string()
        );
        std::fs::write(&manifest, text).unwrap();
        let data = dir.path().join("data");
        let server = Server::start(&manifest, &data, &[], None);
        assert_eq!(server.get("/env?key=GREETING").await, (200, format!("hi{suffix}")));
        let (ok, said) = wdo(&server, &data, &["secret", "put", "[worker]", "TOKEN"], "t0k3n");
        assert!(ok, "{said}");
        assert_eq!(server.get("/env?key=TOKEN").await, (200, "t0k3n".into()), "{suffix}");
        let (status, body) = server.get(&format!("/fetch?url={}", upstream.url("/echo?from=worker"))).await;
        assert_eq!(status, 200, "{suffix}: {body}");
        assert!(body.starts_with("200 ") && body.contains("/echo?from=worker"), "{suffix}: {body}");
        let (status, refused) = server.get("/fetch?url=http://169.254.169.254/").await;
        assert_eq!(status, 502, "{suffix}: {refused}");
        assert!(refused.contains("[worker] outbound") && refused.contains("169.254.169.254"), "{suffix}: {refused}");
    }
}

/// A worker that reuses its instances keeps one whose request read its outbound responses, and
/// drops one that left a response unread: the connection would stay open into later requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_worker_instance_holding_an_outbound_connection_is_dropped() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("wdo.toml");
    let text = format!(
        "[worker]\ncomponent = {:?}\noutbound = [\"{}\"]\nreuse_instances = true\n[classes.counter-js]\ncomponent = {:?}\n",
        guest("worker-js").display().to_string(),
        upstream.addr,
        guest("counter-js").display().to_string()
    );
    std::fs::write(&manifest, text).unwrap();
    let server = Server::start(&manifest, &dir.path().join("data"), &[], None);
    assert_eq!(server.get("/seen").await, (200, "1".into()));
    let (status, body) = server.get(&format!("/fetch?url={}", upstream.url("/echo?read=all"))).await;
    assert!(status == 200 && body.starts_with("200 "), "{status} {body}");
    assert_eq!(server.get("/seen").await, (200, "2".into()), "read to the end: the instance serves on");
    let (status, body) = server.get(&format!("/fetch-unread?url={}", upstream.url("/echo?read=none"))).await;
    assert_eq!((status, body.as_str()), (200, "200"));
    assert_eq!(server.get("/seen").await, (200, "1".into()), "a body left unread: a fresh instance");
}

/// `--outbound-connect-timeout` covers the TLS handshake: a server that accepts the connection
/// and never answers it fails the request at the timeout, long before the event's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_answers_fails_at_the_connect_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            connections.push(stream); // accepted, never read or written
        }
    });
    let site = Site::new(&format!("outbound = [\"{addr}\"]"));
    let server = site.start(&["--outbound-connect-timeout", "1s", "--event-timeout", "20s"]);
    let started = Instant::now();
    let (status, answer) = fetch(&server, "a", json!({"url": format!("https://{addr}/")})).await;
    let took = started.elapsed();
    assert_eq!(status, 502, "{answer}");
    assert!(answer.as_str().unwrap_or_default().contains("connecting for"), "{answer}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(8), "took {took:?}");
    held.abort();
}

/// `--max-outbound-connections`: past the host-wide count of open outbound connections (each a
/// file descriptor) a request fails at once with the flag's name; once one closes, requests go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_connections_are_bounded_host_wide() {
    let upstream = Upstream::start().await;
    let dir = js_probe_site(upstream.addr);
    let flags = ["--max-outbound-connections", "1"];
    let server = Server::start(&dir.path().join("wdo.toml"), &dir.path().join("data"), &flags, None);
    let two = json!({"url": upstream.url("/slow?ms=300"), "n": 2}).to_string();
    let (status, refused) = server.post("/probe-js/a/fetch-many", &two).await;
    assert_eq!(status, 500, "{refused}");
    assert!(refused.contains("--max-outbound-connections"), "{refused}");
    // The refused event trapped while its first request was still out (300 ms): that
    // connection closes when its request ends, and until then the next one is refused the same
    // way, never any other error.
    let one = json!({"url": upstream.url("/slow?ms=10"), "n": 1}).to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, answer) = server.post("/probe-js/b/fetch-many", &one).await;
        if status == 200 || Instant::now() > deadline {
            assert_eq!((status, answer.as_str()), (200, "[200]"));
            break;
        }
        assert!(status == 500 && answer.contains("--max-outbound-connections"), "{status} {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
