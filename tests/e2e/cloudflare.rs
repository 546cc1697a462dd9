//! Durable Object projects written for Cloudflare, served unchanged with `wdo serve
//! wrangler.toml`: the examples under `examples/cloudflare/` and the API probe.

use crate::harness::{Server, Socket, next_message, start_failure, tools, workspace};
use futures_util::SinkExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn example(name: &str) -> PathBuf {
    workspace().join("examples/cloudflare").join(name).join("wrangler.toml")
}

fn probe() -> PathBuf {
    workspace().join("tests/guests/cloudflare-probe/wrangler.jsonc")
}

fn serve(config: &Path, data: &Path) -> Server {
    Server::start(config, data, &[], None)
}

/// The probe, its instances dropped after 1 s without events (to see what survives that).
fn serve_probe(dir: &Path) -> Server {
    Server::start(&probe(), &dir.join("data"), &["--idle-timeout", "1s"], None)
}

async fn json(server: &Server, path: &str) -> Value {
    let (status, body) = server.get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
}

/// The next message of `socket`, as text; a timeout shows the host's log.
async fn text(server: &Server, socket: &mut Socket) -> String {
    match tokio::time::timeout(Duration::from_secs(8), next_message(socket)).await {
        Ok(Message::Text(text)) => text.to_string(),
        Ok(other) => panic!("expected a text message, got {other:?}"),
        Err(_) => panic!("no message within 8 s; the host's log:\n{}", server.log()),
    }
}

/// Cloudflare's getting-started counter, in TypeScript and JavaScript: a worker reaching one
/// object per name over RPC.
#[tokio::test(flavor = "multi_thread")]
async fn the_counter_example_runs_as_written_for_cloudflare() {
    for example_name in ["counter", "counter-js"] {
        counter(example_name).await;
    }
}

async fn counter(example_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&example(example_name), &dir.path().join("data"));
    let said = |name: &str, count: i64| (200, format!("Durable Object '{name}' count: {count} (served by wdo)"));
    assert_eq!(server.get("/?name=A").await, said("A", 0));
    assert_eq!(server.get("/increment?name=A").await, said("A", 1));
    assert_eq!(server.get("/increment?name=A").await, said("A", 2));
    assert_eq!(server.get("/decrement?name=B").await, said("B", -1));
    assert_eq!(server.get("/?name=A").await, said("A", 2));
    let (status, body) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("`name` URL query string"), "{body}");
    assert_eq!(server.get("/other?name=A").await, (404, "Not found".into()));
    // The worker hands a request to the object's own fetch.
    if example_name == "counter" {
        let (status, body) = server.get("/fetch?name=A").await;
        assert_eq!(status, 200, "{body}");
        let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(seen["name"], "A");
        assert_eq!(seen["id"].as_str().unwrap().len(), 64);
    }

    // The count is durable: a restart (no rebuild: the components come from .wdo-build) keeps it.
    server.kill();
    let server = serve(&example(example_name), &dir.path().join("data"));
    assert_eq!(server.get("/?name=A").await, said("A", 2));
    assert!(!server.log().contains("componentize-js"), "rebuilt a project that did not change:\n{}", server.log());
}

/// Structured values round-trip exactly, across a restart; the key-value API (single keys,
/// arrays of keys, objects of entries, list options), the synchronous KV API, SQL cursors, and
/// transactions behave as Cloudflare documents them.
#[tokio::test(flavor = "multi_thread")]
async fn the_storage_api_keeps_structured_values_and_cloudflares_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_probe(dir.path());
    assert_eq!(server.get("/obj/PROBE/s/values/put").await, (200, "stored".into()));
    server.kill();
    let server = serve_probe(dir.path());
    let values = json(&server, "/obj/PROBE/s/values/check").await;
    for (kind, same) in values.as_object().unwrap() {
        assert_eq!(same, true, "{kind} did not round-trip: {values}");
    }
    assert_eq!(values.as_object().unwrap().len(), 18);

    let kv = json(&server, "/obj/PROBE/kv/kv").await;
    assert_eq!(kv["one"], 1);
    assert_eq!(kv["many"], json!([["a", 1], ["c", 3]]));
    assert_eq!(kv["isMap"], true);
    assert_eq!((&kv["removed"], &kv["removedAgain"], &kv["count"]), (&json!(true), &json!(false), &json!(1)));
    assert_eq!(kv["all"], json!(["boots", "c", "d/1", "d/2"]));
    assert_eq!(kv["prefixed"], json!([["d/2", 5], ["d/1", 4]]));
    assert_eq!(kv["ranged"], json!(["c", "d/1"]));
    assert_eq!(kv["after"], json!(["d/1"]));
    let sync = json(&server, "/obj/PROBE/kv/kv-sync").await;
    assert_eq!(sync, json!({"got": {"n": 1}, "listed": [["sync", {"n": 1}]], "deleted": true, "after": "gone"}));

    let sql = json(&server, "/obj/PROBE/sql/sql").await;
    assert_eq!(sql["iterated"], json!(["a", "b"]));
    assert_eq!(sql["rows"], json!([{"name": "a", "score": 1.5}, {"name": "b", "score": 2}]));
    assert_eq!(sql["raw"], json!([["a", 1], ["b", 2]]));
    assert_eq!(sql["one"], json!({"n": 2}));
    assert_eq!(sql["blob"], json!([1, 2]));
    assert_eq!(
        sql["errors"],
        json!([
            "Expected exactly one result from SQL query, but got no results.",
            "Expected exactly one result from SQL query, but got multiple results."
        ])
    );
    assert!(sql["bad"].as_str().unwrap().contains("syntax error"), "{sql}");
    assert_eq!(sql["columns"], json!(["who", "score"]));
    assert_eq!((&sql["rowsWritten"], &sql["rowsRead"], &sql["size"]), (&json!(2), &json!(2), &json!(true)));

    // deleteAll: key-value data, SQL tables and views, and the alarm (as on Cloudflare since the
    // compatibility date 2026-02-24).
    let all = json(&server, "/obj/PROBE/gone/delete-all").await;
    assert_eq!(all["keys"], json!([]));
    let tables: Vec<&str> = all["tables"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(tables.iter().all(|t| t.starts_with("_wdo_")), "{all}");
    assert_eq!(all["alarmKept"], false);

    let txn = json(&server, "/obj/PROBE/t/txn").await;
    assert_eq!(txn, json!({"t": 1, "kept": true, "thrown": "undo", "sync": "done", "s": "in"}));
}

/// A handler that rejects is a failed event: its writes roll back and the caller gets a 500
/// with the message, from an object as from the worker.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_promise_rolls_the_event_back_and_answers_500_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_probe(dir.path());
    let (status, body) = server.get("/obj/PROBE/r/reject").await;
    assert_eq!(status, 500);
    assert!(body.contains("async handler failed on purpose"), "{body}");
    assert_eq!(json(&server, "/obj/PROBE/r/rejected").await, json!({"value": null}));
    // As in a Cloudflare isolate, the worker's module state lasts from one request to the next
    // (`wdo serve` of a wrangler project reuses the worker's instances).
    let mut client = server.client().await;
    assert_eq!(client.send("GET", "/served", "").await, (200, "1".into()));
    assert_eq!(client.send("GET", "/served", "").await, (200, "2".into()));
    let (status, body) = server.get("/throw").await;
    assert_eq!(status, 500);
    assert!(body.contains("the worker threw on purpose"), "{body}");
    // A request that threw fails its event, and its instance serves nothing more.
    assert_eq!(client.send("GET", "/served", "").await, (200, "1".into()));
    // ctx.abort(): the event fails with the reason, its writes roll back, the instance goes.
    assert_eq!(json(&server, "/obj/PROBE/r/boots").await["boots"], 1);
    let (status, body) = server.get("/obj/PROBE/r/abort").await;
    assert_eq!(status, 500);
    assert!(body.contains("the object aborted itself: enough of this"), "{body}");
    assert_eq!(json(&server, "/obj/PROBE/r/boots").await, json!({"boots": 2, "inMemory": 1}));
    assert_eq!(json(&server, "/obj/PROBE/r/kv").await["all"], json!(["boots", "c", "d/1", "d/2"]));
}

/// Alarms (`Date` or ms), ids, RPC with several structured arguments and the callee's error,
/// `env` (bindings, string and JSON vars, secrets), `blockConcurrencyWhile`, `waitUntil`,
/// `console` and the web platform, in the worker and in objects.
#[tokio::test(flavor = "multi_thread")]
async fn alarms_ids_rpc_env_and_the_web_platform_work_in_both_worlds() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_probe(dir.path());

    let set = json(&server, "/obj/PROBE/alarm/alarm/set?in=300").await;
    assert!(set["at"].as_i64().unwrap() > 0);
    let dated = json(&server, "/obj/PROBE/dated/alarm/set?in=3600000&date=1").await;
    assert!(dated["at"].as_i64().unwrap() > set["at"].as_i64().unwrap());
    assert_eq!(json(&server, "/obj/PROBE/dated/alarm/delete").await, json!({"at": null}));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = json(&server, "/obj/PROBE/alarm/alarm/get").await;
        if state["fired"] == json!([0]) {
            assert_eq!(state["at"], Value::Null);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the alarm did not fire: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let rpc = json(&server, "/rpc-args?name=r").await;
    assert_eq!(
        rpc,
        json!({"count": 6, "kinds": ["number", "string", "Date", "Map", "object", "undefined"], "date": 3, "map": "5", "sum": 5})
    );
    let from_object = json(&server, "/obj/PROBE/caller/rpc-from-object").await;
    assert_eq!(from_object, json!({"sum": 42, "kinds": ["Date", "bigint"]}));
    let failed = json(&server, "/rpc-error?name=r").await;
    assert_eq!(failed["error"], true);
    assert!(failed["message"].as_str().unwrap().contains("bad input, said the callee"), "{failed}");

    let ids = json(&server, "/ids").await;
    assert_eq!((&ids["equal"], &ids["uniqueName"], &ids["namedName"]), (&json!(true), &Value::Null, &json!("alice")));
    assert_eq!((&ids["sameAsName"], &ids["differs"], &ids["reply"]), (&json!(true), &json!(false), &json!("other")));
    assert!(ids["foreign"].as_str().unwrap().contains("is not an id of this class"), "{ids}");
    assert!(ids["garbage"].as_str().unwrap().contains("not an object id"), "{ids}");
    let id = json(&server, "/obj/PROBE/alice/id").await;
    assert_eq!((&id["name"], &id["equal"]), (&json!("alice"), &json!(true)));
    assert_eq!(id["id"].as_str().unwrap().len(), 64);

    // Secrets join the vars in `env`.
    let secret = Command::new(env!("CARGO_BIN_EXE_wdo"))
        .args(["secret", "put", "Probe", "API_KEY", "--server", &format!("http://{}", server.addr), "--data"])
        .arg(dir.path().join("data"))
        .env("WDO_TOOLS", tools())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"s3cret")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(secret.status.success(), "{}", String::from_utf8_lossy(&secret.stderr));
    let env = json(&server, "/obj/PROBE/e/env").await;
    assert_eq!(env["greeting"], "hello");
    assert_eq!(env["limits"], json!({"max": 3, "names": ["a", "b"]}));
    assert_eq!(env["secret"], "s3cret");
    assert_eq!(env["keys"], json!(["OTHER", "PLAIN", "PROBE", "GREETING", "LIMITS"]));
    let worker_env = json(&server, "/env").await;
    assert_eq!(
        worker_env,
        json!({"greeting": "hello", "limits": {"max": 3, "names": ["a", "b"]}, "secret": null, "hasProbe": true})
    );

    // The constructor's blockConcurrencyWhile ran before the first event, once per instance.
    assert_eq!(json(&server, "/obj/PROBE/b/boots").await, json!({"boots": 1, "inMemory": 1}));
    assert_eq!(json(&server, "/obj/PROBE/b/boots").await, json!({"boots": 1, "inMemory": 2}));
    tokio::time::sleep(Duration::from_millis(2500)).await; // past --idle-timeout: a new instance
    assert_eq!(json(&server, "/obj/PROBE/b/boots").await, json!({"boots": 2, "inMemory": 1}));
    // waitUntil: the event (its writes included) ends after the promise.
    assert_eq!(server.get("/obj/PROBE/w/wait-until").await, (200, "returned".into()));
    assert_eq!(json(&server, "/obj/PROBE/w/waited").await, json!({"waited": "after the response was ready"}));
    assert_eq!(server.get("/wait-until?name=w2").await, (200, "worker returned".into()));
    assert_eq!(json(&server, "/obj/PROBE/w2/kv").await["all"], json!(["boots", "c", "d/1", "d/2", "sum"]));

    // The plain `(state, env)` style.
    assert_eq!(server.get("/obj/PLAIN/p/").await, (200, "p 1 hello".into()));
    assert_eq!(server.get("/obj/PLAIN/p/").await, (200, "p 2 hello".into()));

    let expected = json!({
        "json": "application/json", "redirect": "301 https://example.com/x", "headers": "1", "url": "1",
        "params": "a=b+c", "text": "é", "uuid": true, "random": 8, "digest": [186, 120], "clone": 5,
        "base64": "hi", "timeout": "fired", "request": "POST body",
        "textModule": "hello from a text module", "dataModule": [0, 1, 2, 255],
    });
    assert_eq!(json(&server, "/web").await, expected, "in the worker");
    assert_eq!(json(&server, "/obj/PROBE/web/web").await, expected, "in an object");

    assert_eq!(server.get("/obj/PROBE/logger/log").await, (200, "logged".into()));
    let log = server.log();
    let said = |text: &str| log.lines().any(|l| l.contains(text) && l.contains("object=Probe/logger"));
    assert!(said("probe says hello") && said("probe says oops"), "{log}");
}

/// The hibernation API through the worker: `WebSocketPair`, `ctx.acceptWebSocket` with tags,
/// attachments (structured), `getWebSockets(tag)`, `getTags`, the auto-response and its
/// timestamp, binary messages, `ws.close`, and `webSocketClose`; the object leaves memory
/// between messages and its sockets stay open.
#[tokio::test(flavor = "multi_thread")]
async fn hibernatable_websockets_work_through_the_worker_and_survive_hibernation() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_probe(dir.path());
    let mut ann = server.socket("/obj/PROBE/room/ws/hibernate?user=ann&tag=red").await;
    let mut bob = server.socket("/obj/PROBE/room/ws/hibernate?user=bob&tag=blue").await;
    ann.send(Message::text("who")).await.unwrap();
    let who: Value = serde_json::from_str(&text(&server, &mut ann).await).unwrap();
    assert_eq!(who, json!({"attachment": {"user": "ann", "joined": 1000}, "tags": ["red"], "open": 2}));

    tokio::time::sleep(Duration::from_millis(2500)).await; // the instance goes; the sockets stay
    bob.send(Message::text("to red hello ann")).await.unwrap();
    assert_eq!(text(&server, &mut ann).await, "hello ann");
    bob.send(Message::text("who")).await.unwrap();
    let who: Value = serde_json::from_str(&text(&server, &mut bob).await).unwrap();
    assert_eq!(who["attachment"], json!({"user": "bob", "joined": 1000}));
    assert_eq!(json(&server, "/obj/PROBE/room/boots").await["boots"], 2, "the object hibernated and came back");

    bob.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next_message(&mut bob).await, Message::binary(vec![3u8, 2, 1]));

    // The auto-response answers without waking the object, and says when.
    assert_eq!(server.get("/obj/PROBE/room/ws/auto").await, (200, "auto-response set".into()));
    ann.send(Message::text("auto?")).await.unwrap();
    assert_eq!(text(&server, &mut ann).await, "never");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    ann.send(Message::text("ping")).await.unwrap();
    assert_eq!(text(&server, &mut ann).await, "pong");
    ann.send(Message::text("auto?")).await.unwrap();
    let at: u64 = text(&server, &mut ann).await.strip_prefix("auto at ").expect("a timestamp").parse().unwrap();
    assert!(at >= before.saturating_sub(5), "{at} < {before}");

    // The object closes one; the other client closes itself and the object hears it.
    bob.send(Message::text("bye")).await.unwrap();
    match next_message(&mut bob).await {
        Message::Close(Some(frame)) => assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1000, "bye")),
        other => panic!("expected a close frame, got {other:?}"),
    }
    ann.close(None).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let closed = json(&server, "/obj/PROBE/room/ws/closed").await;
        if closed["hibernated"] != Value::Null {
            assert_eq!(closed["hibernated"]["code"], 1005, "{closed}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "webSocketClose did not run: {closed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A client that breaks the protocol (an unmasked frame): webSocketError hears of it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let handshake = "GET /obj/PROBE/room/ws/hibernate?user=eve HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    raw.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 1024];
    let n = raw.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head[..n]));
    raw.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap(); // a text frame without a mask
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let closed = json(&server, "/obj/PROBE/room/ws/closed").await;
        if let Some(error) = closed["errored"].as_str() {
            assert!(error.contains("unmasked"), "{closed}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "webSocketError did not run: {closed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A plain request to a WebSocket route is answered by the object, not upgraded.
    assert_eq!(server.get("/obj/PROBE/room/ws/hibernate").await, (426, "expected a WebSocket upgrade".into()));
}

/// The standard API (`server.accept()`, `addEventListener`): the listeners live in the
/// instance, so the object stays in memory while such a socket is open, as on Cloudflare.
#[tokio::test(flavor = "multi_thread")]
async fn standard_websockets_keep_their_object_in_memory_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_probe(dir.path());
    let mut socket = server.socket("/obj/PROBE/std/ws/standard").await;
    socket.send(Message::text("a")).await.unwrap();
    assert_eq!(text(&server, &mut socket).await, "echo a #1");
    tokio::time::sleep(Duration::from_millis(2500)).await; // past --idle-timeout
    socket.send(Message::text("b")).await.unwrap();
    assert_eq!(text(&server, &mut socket).await, "echo b #2", "the listener's state is kept");
    assert_eq!(json(&server, "/obj/PROBE/std/boots").await["boots"], 1, "the instance was never dropped");
    socket.close(None).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while json(&server, "/obj/PROBE/std/ws/closed").await["standard"] != 1005 {
        assert!(std::time::Instant::now() < deadline, "the close listener did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once the socket is closed, the object may leave memory again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(json(&server, "/obj/PROBE/std/boots").await["boots"], 2);
}

/// Writes a project (files relative to its folder) into `dir`.
fn project(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir.join("wrangler.toml")
}

/// What wdo cannot serve is refused before anything starts, with an error naming it.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_or_module_wdo_cannot_serve_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let head = "main = \"src/index.ts\"\n[[durable_objects.bindings]]\nname = \"ROOM\"\nclass_name = \"Room\"\n";
    let module = "import { DurableObject } from 'cloudflare:workers';\nexport class Room extends DurableObject {}\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "kv",
            &format!("{head}[[kv_namespaces]]\nbinding = \"KV\"\nid = \"abc\"\n"),
            "`kv_namespaces`: wdo does not support Workers KV namespaces",
        ),
        ("unknown", &format!("{head}mian = \"x\"\n"), "unknown setting `mian`"),
        ("no-main", "name = \"x\"\n", "no `main`"),
    ];
    for (name, config, expected) in cases {
        let config = project(&dir.path().join(name), &[("wrangler.toml", config), ("src/index.ts", module)]);
        let said = start_failure(&config, &data);
        assert!(said.contains(expected), "{name}: {said}");
        assert!(said.contains("wrangler.toml"), "{name}: the error names the file: {said}");
    }
    let modules: &[(&str, &str, &str)] = &[
        ("missing-class", "export class Lobby {}\n", "does not export class `Room` (bound as ROOM); it exports: Lobby"),
        (
            "node",
            "import fs from 'node:fs';\nexport class Room { read() { return fs.readFileSync; } }\n",
            "`node:fs`: wdo has no Node.js built-in modules",
        ),
        ("syntax", "export class Room { fetch( }\n", "src/index.ts:1:"),
        (
            "other-module",
            "import { connect } from 'cloudflare:sockets';\nexport class Room { open() { return connect; } }\n",
            "`cloudflare:sockets`",
        ),
    ];
    for (name, source, expected) in modules {
        let config = project(&dir.path().join(name), &[("wrangler.toml", head), ("src/index.ts", source)]);
        let said = start_failure(&config, &data);
        assert!(said.contains(expected), "{name}: {said}");
    }
}

const V1_MODULE: &str = r#"
import { DurableObject } from "cloudflare:workers";
export class Counter extends DurableObject {
  async increment() {
    const value = ((await this.ctx.storage.get("value")) ?? 0) + 1;
    await this.ctx.storage.put("value", value);
    return value;
  }
}
export class Old extends DurableObject {}
export default {
  async fetch(request, env) {
    const name = new URL(request.url).searchParams.get("name");
    return new Response(String(await env.COUNTER.getByName(name).increment()));
  },
};
"#;

const V1_CONFIG: &str = r#"
main = "src/index.js"
[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
[[migrations]]
tag = "v1"
new_sqlite_classes = ["Counter", "Old"]
"#;

/// `wdo deploy wrangler.toml`, and migrations: a renamed class keeps its objects' data, a
/// deleted one goes (no --allow-delete needed: the config says so).
#[tokio::test(flavor = "multi_thread")]
async fn deploys_apply_wrangler_migrations_renames_keep_data_and_deletions_delete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::launch(None, &data, &[], None);
    let wdo = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_wdo"))
            .args(args)
            .arg("--server")
            .arg(format!("http://{}", server.addr))
            .arg("--data")
            .arg(&data)
            .env("WDO_TOOLS", tools())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "wdo {args:?}: {said}");
        said
    };
    let app = dir.path().join("app");
    let config = project(&app, &[("wrangler.toml", V1_CONFIG), ("src/index.js", V1_MODULE)]);
    wdo(&["deploy", config.to_str().unwrap()]);
    assert_eq!(server.get("/?name=a").await, (200, "1".into()));
    assert_eq!(server.get("/?name=a").await, (200, "2".into()));
    let versions = wdo(&["versions"]);
    assert!(versions.contains("Counter") && versions.contains("Old"), "{versions}");

    let v2_config = V1_CONFIG.replace("class_name = \"Counter\"", "class_name = \"Tally\"")
        + "[[migrations]]\ntag = \"v2\"\nrenamed_classes = [{ from = \"Counter\", to = \"Tally\" }]\ndeleted_classes = [\"Old\"]\n";
    let v2_module =
        V1_MODULE.replace("class Counter", "class Tally").replace("export class Old extends DurableObject {}\n", "");
    project(&app, &[("wrangler.toml", &v2_config), ("src/index.js", &v2_module)]);
    let said = wdo(&["deploy", config.to_str().unwrap()]);
    assert!(said.contains("Tally") && said.contains("Old"), "{said}");
    assert_eq!(server.get("/?name=a").await, (200, "3".into()), "the renamed class kept the count");
    let versions = wdo(&["versions"]);
    assert!(versions.contains("Tally") && !versions.contains("Old") && !versions.contains("Counter"), "{versions}");

    // The same config on a fresh host: the rename has nothing to rename, so Tally is created.
    let fresh = tempfile::tempdir().unwrap();
    let server = serve(&config, &fresh.path().join("data"));
    assert_eq!(server.get("/?name=a").await, (200, "1".into()));
}

/// The hibernating room (JavaScript and TypeScript): messages reach everyone, the object leaves memory between them and
/// finds its sessions again in the attachments; `ping` is answered without it.
#[tokio::test(flavor = "multi_thread")]
async fn the_room_example_hibernates_between_messages_and_keeps_its_sessions() {
    for name in ["room", "room-ts"] {
        room(name).await;
    }
}

async fn room(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&example(name), &data, &["--idle-timeout", "1s"], None);
    let mut ann = server.socket("/rooms/lobby/websocket?user=ann").await;
    assert_eq!(text(&server, &mut ann).await, "* ann joined (1 here)");
    let mut bob = server.socket("/rooms/lobby/websocket?user=bob").await;
    assert_eq!(text(&server, &mut ann).await, "* bob joined (2 here)");
    assert_eq!(text(&server, &mut bob).await, "* bob joined (2 here)");
    tokio::time::sleep(Duration::from_millis(2500)).await; // hibernated
    bob.send(Message::text("hello")).await.unwrap();
    assert_eq!(text(&server, &mut ann).await, "bob: hello");
    assert_eq!(text(&server, &mut bob).await, "bob: hello");
    ann.send(Message::text("/who")).await.unwrap();
    assert_eq!(text(&server, &mut ann).await, "* here: ann, bob");
    ann.send(Message::text("ping")).await.unwrap();
    assert_eq!(text(&server, &mut ann).await, "pong");
    bob.close(None).await.unwrap();
    assert_eq!(text(&server, &mut ann).await, "* bob left");
    let mut other = server.socket("/rooms/other/websocket?user=cy").await;
    assert_eq!(text(&server, &mut other).await, "* cy joined (1 here)");
    assert_eq!(server.get("/rooms/lobby/websocket").await.0, 426);
}

/// The standard-API chat (TypeScript and JavaScript): a name first, then messages to everyone; a late joiner gets the
/// history, and a leaver is announced.
#[tokio::test(flavor = "multi_thread")]
async fn the_chat_example_broadcasts_keeps_history_and_announces_leavers() {
    for name in ["chat", "chat-js"] {
        chat(name).await;
    }
}

async fn chat(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&example(name), &data, &["--idle-timeout", "1s"], None);
    let mut ann = server.socket("/chat/lobby").await;
    ann.send(Message::text("ann")).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text(&server, &mut ann).await).unwrap(), json!({"joined": "ann"}));
    ann.send(Message::text("first!")).await.unwrap();
    let first: Value = serde_json::from_str(&text(&server, &mut ann).await).unwrap();
    assert_eq!((&first["name"], &first["message"]), (&json!("ann"), &json!("first!")));
    tokio::time::sleep(Duration::from_millis(2500)).await; // past --idle-timeout: still in memory
    let mut bob = server.socket("/chat/lobby").await;
    let history: Value = serde_json::from_str(&text(&server, &mut bob).await).unwrap();
    assert_eq!(history["message"], "first!");
    bob.send(Message::text("bob")).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text(&server, &mut ann).await).unwrap(), json!({"joined": "bob"}));
    assert_eq!(serde_json::from_str::<Value>(&text(&server, &mut bob).await).unwrap(), json!({"joined": "bob"}));
    ann.send(Message::text("hi bob")).await.unwrap();
    let to_bob: Value = serde_json::from_str(&text(&server, &mut bob).await).unwrap();
    assert_eq!((&to_bob["name"], &to_bob["message"]), (&json!("ann"), &json!("hi bob")));
    text(&server, &mut ann).await; // ann's own copy
    ann.close(None).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text(&server, &mut bob).await).unwrap(), json!({"quit": "ann"}));
}

/// The SQL history (TypeScript and JavaScript): rows in, rows out in order, `one()` after `RETURNING`, counts by author,
/// a JSON var as a number; kept across a restart.
#[tokio::test(flavor = "multi_thread")]
async fn the_chat_history_example_keeps_messages_in_sql() {
    for name in ["chat-history", "chat-history-js"] {
        chat_history(name).await;
    }
}

async fn chat_history(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = workspace().join("examples/cloudflare").join(name).join("wrangler.jsonc");
    let server = serve(&config, &data);
    let mut client = server.client().await;
    for (author, text) in [("ann", "hi"), ("bob", "hello"), ("ann", "how are you?")] {
        let (status, posted) =
            client.send_json("POST", "/channels/general/messages", &json!({"author": author, "text": text})).await;
        assert_eq!(status, 201, "{posted}");
        assert_eq!((&posted["author"], &posted["text"]), (&json!(author), &json!(text)));
    }
    let (status, refused) =
        client.send_json("POST", "/channels/general/messages", &json!({"author": "cy", "text": "x".repeat(501)})).await;
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("at most 500 characters"), "{refused}");
    server.kill();
    let server = serve(&config, &data);
    let all = json(&server, "/channels/general/messages").await;
    let texts: Vec<&str> = all.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hi", "hello", "how are you?"]);
    let last_two = json(&server, "/channels/general/messages?limit=2").await;
    assert_eq!(last_two.as_array().unwrap().len(), 2);
    assert_eq!(last_two[0]["text"], "hello");
    let before = all[1]["id"].as_i64().unwrap();
    let older = json(&server, &format!("/channels/general/messages?before={before}")).await;
    assert_eq!(older.as_array().unwrap().len(), 1);
    let stats = json(&server, "/channels/general/stats").await;
    assert_eq!(stats["messages"], 3);
    assert_eq!(stats["authors"], json!([{"author": "ann", "count": 2}, {"author": "bob", "count": 1}]));
    assert!(stats["bytes"].as_u64().unwrap() > 0);
    assert_eq!(json(&server, "/channels/empty/messages").await, json!([]));
}

/// The transaction ticket office (JavaScript and TypeScript): 50 claims at once get 1..=50 exactly once; past capacity
/// the transaction rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn the_ticket_example_hands_out_each_number_once_and_rolls_back_when_full() {
    for name in ["ticket", "ticket-ts"] {
        ticket(name).await;
    }
}

async fn ticket(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&example(name), &dir.path().join("data"));
    let answers = crate::harness::concurrent_posts(&server, "/claim?event=launch&holder=fan", 50).await;
    let mut numbers: Vec<u32> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body.trim().parse().unwrap()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=50).collect::<Vec<_>>());
    let tickets = json(&server, "/tickets?event=launch").await;
    assert_eq!(tickets.as_array().unwrap().len(), 50);
    assert_eq!(tickets[0]["holder"], "fan");
    assert!(tickets[0]["at"].as_str().unwrap().ends_with('Z'), "the Date came back: {tickets}");
    // Capacity 100: the 51st..100th succeed, the 101st is refused and leaves nothing behind.
    for _ in 50..100 {
        assert_eq!(server.post("/claim?event=launch", "").await.0, 200);
    }
    assert_eq!(server.post("/claim?event=launch", "").await, (409, "launch is sold out\n".into()));
    assert_eq!(json(&server, "/tickets?event=launch").await.as_array().unwrap().len(), 100);
    assert_eq!(server.post("/claim?event=other", "").await, (200, "1\n".into()));
}

/// A standard-API socket keeps its instance, but only within the host's bound on instances
/// (`--max-instances`): past it the least recently used object's instance goes, with its
/// listeners (its database stays open).
#[tokio::test(flavor = "multi_thread")]
async fn instances_kept_for_standard_websockets_stay_within_the_instances_bound() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--max-instances", "16"];
    let server = Server::start(&probe(), &dir.path().join("data"), &flags, None);
    let mut sockets = Vec::new();
    for i in 0..24 {
        let mut socket = server.socket(&format!("/obj/PROBE/held{i}/ws/standard")).await;
        socket.send(Message::text("hi")).await.unwrap();
        assert_eq!(text(&server, &mut socket).await, "echo hi #1");
        sockets.push(socket);
    }
    let stat = |body: &str, name: &str| -> usize {
        body.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = server.get("/_wdo/stats").await;
        if stat(&stats, "live_instances ") <= 16 {
            assert_eq!(stat(&stats, "open_sockets"), 24, "{stats}");
            assert_eq!(stat(&stats, "active_objects"), 24, "databases stay open: {stats}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "held instances passed the bound: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first object's instance went to make room, and its listener with it: a fresh instance hears the
    // socket through the class's hibernation handler (a class without one closes the socket,
    // 1011). The last object's listener lives on.
    sockets[0].send(Message::text("again")).await.unwrap();
    assert_eq!(text(&server, &mut sockets[0]).await, "unknown again");
    sockets[23].send(Message::text("again")).await.unwrap();
    assert_eq!(text(&server, &mut sockets[23]).await, "echo again #2");
}
