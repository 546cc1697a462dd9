//! A durable object for the end-to-end tests: each route exercises one guarantee of the host.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use wdo_sdk::prelude::*;
use wdo_sdk::sql::{self, Value};
use wdo_sdk::storage::{List, raw};

/// Events this instance has handled: 1 on a fresh instance.
static EVENTS: AtomicU64 = AtomicU64::new(0);

std::thread_local! {
    /// Memory this instance keeps (`/hold`), written so that every page is resident.
    static HELD: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Probe;

wdo_sdk::rpc! {
    /// Typed calls between probes.
    pub interface ProbeApi: ProbeMethods ("probe") {
        fn add(a: i64, b: i64) -> i64;
        fn greet(name: String) -> String;
        fn calls() -> u64;
    }
}

impl ProbeMethods for Probe {
    fn add(&mut self, a: i64, b: i64) -> Result<i64> {
        Ok(a + b)
    }
    fn greet(&mut self, name: String) -> Result<String> {
        Ok(format!("hello {name}, from {}", context::name().unwrap_or_default()))
    }
    fn calls(&mut self) -> Result<u64> {
        Ok(storage::get("calls")?.unwrap_or(0))
    }
}

/// How the probe's alarm handler behaves, kept in storage under `alarm-plan`.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct AlarmPlan {
    /// "ok", "fail" (returns an error) or "trap" (panics).
    mode: String,
    /// Re-arm this many ms after each firing, while `rearm_left` > 0.
    rearm_every: u64,
    rearm_left: u32,
    /// Busy-wait this long inside the handler.
    spin_ms: u64,
}

/// One firing, as the handler saw it.
#[derive(Serialize, Deserialize)]
struct Firing {
    retry_count: u32,
    is_retry: bool,
    at_ms: u64,
    instance_events: u64,
}

fn spin(ms: u64) {
    let end = context::now_ms() + ms;
    while context::now_ms() < end {
        std::hint::spin_loop();
    }
}

/// Records that an event ran from `start` to now (for the no-overlap test).
fn record_interval(start: u64) -> Result<()> {
    let mut intervals: Vec<(u64, u64)> = storage::get("intervals")?.unwrap_or_default();
    intervals.push((start, context::now_ms()));
    storage::put("intervals", &intervals)
}

/// One key-value operation, as JSON: `{"op": "put-many", "entries": [["a", 1]]}`.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum KvOp {
    Get {
        key: String,
    },
    GetMany {
        keys: Vec<String>,
    },
    Put {
        key: String,
        value: serde_json::Value,
    },
    PutMany {
        entries: Vec<(String, serde_json::Value)>,
    },
    Delete {
        key: String,
    },
    DeleteMany {
        keys: Vec<String>,
    },
    DeleteAll,
    List {
        prefix: Option<String>,
        start: Option<String>,
        start_after: Option<String>,
        end: Option<String>,
        #[serde(default)]
        reverse: bool,
        limit: Option<u32>,
    },
}

/// A SQL value as tagged JSON, so every kind round-trips exactly: `{"integer": 9007199254740993}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Tagged {
    Null(()),
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<Tagged> for Value {
    fn from(t: Tagged) -> Self {
        match t {
            Tagged::Null(()) => Value::Null,
            Tagged::Integer(i) => Value::Integer(i),
            Tagged::Real(r) => Value::Real(r),
            Tagged::Text(s) => Value::Text(s),
            Tagged::Blob(b) => Value::Blob(b),
        }
    }
}

impl From<Value> for Tagged {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => Tagged::Null(()),
            Value::Integer(i) => Tagged::Integer(i),
            Value::Real(r) => Tagged::Real(r),
            Value::Text(s) => Tagged::Text(s),
            Value::Blob(b) => Tagged::Blob(b),
        }
    }
}

#[derive(Deserialize)]
struct SqlCall {
    query: String,
    #[serde(default)]
    params: Vec<Tagged>,
    /// `"execute"`: run it with `sql::execute`, which answers only the rows written.
    #[serde(default)]
    via: Option<String>,
}

fn sql_call(call: SqlCall) -> Result<Response> {
    let params: Vec<Value> = call.params.into_iter().map(Value::from).collect();
    if call.via.as_deref() == Some("execute") {
        return Response::json(&serde_json::json!({ "rows_written": sql::execute(&call.query, &params)? }));
    }
    let r = sql::exec(&call.query, &params)?;
    let rows: Vec<Vec<Tagged>> = r.rows.into_iter().map(|row| row.into_iter().map(Tagged::from).collect()).collect();
    Response::json(&serde_json::json!({
        "columns": r.columns, "rows": rows, "rows_read": r.rows_read, "rows_written": r.rows_written,
    }))
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[derive(Deserialize)]
struct FetchAsk {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
    write: Option<String>,
    #[serde(default)]
    then_trap: bool,
}

fn get() -> String {
    "GET".into()
}

fn kv(op: KvOp) -> Result<serde_json::Value> {
    use serde_json::{Value, json};
    Ok(match op {
        KvOp::Get { key } => storage::get::<Value>(&key)?.unwrap_or(Value::Null),
        KvOp::GetMany { keys } => json!(storage::get_many::<Value>(&strs(&keys))?),
        KvOp::Put { key, value } => json!(storage::put(&key, &value)?),
        KvOp::PutMany { entries } => {
            let entries: Vec<(&str, Value)> = entries.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            json!(storage::put_many(&entries)?)
        }
        KvOp::Delete { key } => json!(storage::delete(&key)?),
        KvOp::DeleteMany { keys } => json!(storage::delete_many(&strs(&keys))?),
        KvOp::DeleteAll => json!(storage::delete_all()?),
        KvOp::List { prefix, start, start_after, end, reverse, limit } => {
            let mut list = List::new();
            if let Some(p) = &prefix {
                list = list.prefix(p);
            }
            if let Some(s) = &start {
                list = list.start(s);
            }
            if let Some(s) = &start_after {
                list = list.start_after(s);
            }
            if let Some(e) = &end {
                list = list.end(e);
            }
            if reverse {
                list = list.reverse();
            }
            if let Some(l) = limit {
                list = list.limit(l);
            }
            json!(storage::list::<Value>(list)?)
        }
    })
}

impl DurableObject for Probe {
    fn new() -> Self {
        Probe
    }

    fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        self.on_alarm(info)
    }

    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        match method {
            "echo" => Ok(args.to_vec()),
            "len" => Ok(args.len().to_string().into_bytes()),
            "big" => Ok(vec![b'z'; std::str::from_utf8(args).ok().and_then(|n| n.parse().ok()).unwrap_or(0)]),
            "fail" => Err(Error::new(500, "probe: the call fails on purpose")),
            "trap" => panic!("probe: the call traps on purpose"),
            "count" => {
                let n: u64 = storage::get("calls")?.unwrap_or(0) + 1;
                storage::put("calls", &n)?;
                Ok(n.to_string().into_bytes())
            }
            "spin" => {
                spin(std::str::from_utf8(args).ok().and_then(|n| n.parse().ok()).unwrap_or(100));
                Ok(b"spun".to_vec())
            }
            // args: "name1,name2,...": call `chain` on the first with the rest (a call chain).
            "chain" => {
                let names = std::str::from_utf8(args).unwrap_or_default();
                let Some((next, rest)) = names.split_once(',').or(Some((names, ""))).filter(|(n, _)| !n.is_empty())
                else {
                    return Ok(b"end".to_vec());
                };
                objects::Stub::by_name("probe", next)?.call_raw("chain", rest.as_bytes())
            }
            typed => ProbeApi::serve(self, typed, args),
        }
    }

    fn websocket_message(&mut self, from: SocketId, message: Message) -> Result<()> {
        if websockets::tags(from)?.iter().any(|t| t == "upstream") {
            // A socket this object opened: keep what the remote end says, and how many events
            // the instance had served (1: it was woken from hibernation for this message).
            let events = EVENTS.fetch_add(1, Ordering::SeqCst) + 1;
            let text = match message {
                Message::Text(text) => text,
                Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            };
            let mut heard: Vec<serde_json::Value> = storage::get("upstream")?.unwrap_or_default();
            heard.push(serde_json::json!({"text": text, "events": events}));
            return storage::put("upstream", &heard);
        }
        match message {
            Message::Text(text) => socket_command(from, &text),
            Message::Binary(bytes) => websockets::send(from, &Message::Binary(bytes)),
        }
    }

    fn websocket_close(&mut self, socket: SocketId, code: u16, reason: &str, was_clean: bool) -> Result<()> {
        let attachment = wdo_sdk::bindings::wdo::object::websockets::get_attachment(socket).ok().flatten();
        let mut closes: Vec<serde_json::Value> = storage::get("closes")?.unwrap_or_default();
        closes.push(serde_json::json!({
            "socket": socket, "code": code, "reason": reason, "was_clean": was_clean,
            "attachment": attachment.map(|a| String::from_utf8_lossy(&a).into_owned()),
        }));
        storage::put("closes", &closes)
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        let events = EVENTS.fetch_add(1, Ordering::SeqCst) + 1;
        let key = request.query_param("key").unwrap_or_else(|| "k".into());
        match (request.method(), request.path()) {
            // How many events this instance has served (1 means it is fresh).
            ("GET", "/instance") => Ok(Response::text(events.to_string())),
            ("GET", "/whoami") => Response::json(&serde_json::json!({
                "id": context::id(), "name": context::name(), "class": context::class(),
            })),
            // Bookmarks (the same routes in the JavaScript and Python probes).
            ("POST", "/bookmark/write") => {
                storage::put("mark", &request.text()?)?;
                Ok(Response::text("ok"))
            }
            ("GET", "/bookmark/read") => Ok(Response::text(storage::get::<String>("mark")?.unwrap_or_default())),
            ("GET", "/bookmark/now") => Ok(Response::text(storage::current_bookmark()?)),
            ("GET", "/bookmark/at") => {
                let ms = request.query_param("ms").and_then(|ms| ms.parse().ok()).unwrap_or(0);
                Ok(Response::text(storage::bookmark_for_time(ms)?))
            }
            ("POST", "/bookmark/restore") => Ok(Response::text(storage::restore_on_next_session(request.text()?)?)),
            ("POST", "/bookmark/restore-abort") => {
                storage::restore_on_next_session(request.text()?)?;
                panic!("probe: aborting to start the next session now");
            }
            ("GET", "/get") => match raw::get(&key)? {
                Some(value) => Ok(Response::new(200, value)),
                None => Ok(Response::not_found()),
            },
            ("POST", "/put") => {
                raw::put(&key, request.body())?;
                Ok(Response::text("stored"))
            }
            ("POST", "/kv") => Response::json(&kv(request.json()?)?),
            // Writes, then panics: the write must be rolled back.
            ("POST", "/trap") => {
                raw::put(&key, b"written before the trap")?;
                panic!("probe: deliberate panic after writing `{key}`");
            }
            // Writes, then spins forever: the CPU limit must stop it.
            ("POST", "/loop") => {
                raw::put(&key, b"written before the loop")?;
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            // Keeps as many MiB as the body says, written, for as long as the instance lives;
            // answers the MiB this instance holds.
            ("POST", "/hold") => {
                let mib: usize = String::from_utf8_lossy(request.body()).trim().parse().unwrap_or(0);
                let held = HELD.with(|held| {
                    let mut held = held.borrow_mut();
                    held.push(vec![1u8; mib << 20]);
                    held.iter().map(Vec::len).sum::<usize>() >> 20
                });
                Ok(Response::text(held.to_string()))
            }
            // Allocates without bound: the memory limit must stop it.
            ("POST", "/alloc") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            ("POST", "/bad-status") => Ok(Response::new(1000, "")),
            // Prints the body to stdout (the host's log, and tails), then answers.
            ("POST", "/say") => {
                println!("{}", String::from_utf8_lossy(request.body()));
                Ok(Response::text("said"))
            }
            // A WebSocket to the URL in the body, as this object's client (tag `upstream`).
            ("POST", "/ws-connect") => {
                let url = String::from_utf8_lossy(request.body()).into_owned();
                raw::put("before-connect", b"written before the connection")?;
                let socket = websockets::connect(&url, &["feed"], &["upstream"], Some(b"mine"))?;
                Ok(Response::text(socket.to_string()))
            }
            ("POST", "/ws-upstream-send") => {
                for socket in websockets::sockets(Some("upstream"))? {
                    websockets::send_text(socket, &String::from_utf8_lossy(request.body()))?;
                }
                Ok(Response::text("sent"))
            }
            ("GET", "/ws-upstream") => {
                Response::json(&storage::get::<serde_json::Value>("upstream")?.unwrap_or_default())
            }
            ("GET", "/env") => match context::env(&key) {
                Some(value) => Ok(Response::text(value)),
                None => Ok(Response::not_found()),
            },
            // An outbound request: `{"method", "url", "headers", "body", "write": key, "then_trap"}`.
            // Writes `write` before it leaves (the output gate commits it), and panics after it when
            // asked (only what follows the request rolls back).
            ("POST", "/fetch") => {
                let ask: FetchAsk = request.json()?;
                if let Some(key) = &ask.write {
                    raw::put(key, b"written before the request")?;
                }
                let mut outgoing = wdo_sdk::http::request(&ask.method, &ask.url).body(ask.body.into_bytes());
                for (name, value) in &ask.headers {
                    outgoing = outgoing.header(name, value);
                }
                let answer = wdo_sdk::http::fetch(outgoing);
                if ask.then_trap {
                    raw::put("after", b"written after the request")?;
                    panic!("probe: deliberate panic after an outbound request");
                }
                let answer = answer?;
                Response::json(&serde_json::json!({
                    "status": answer.status,
                    "headers": answer.headers,
                    "body": answer.text(),
                }))
            }
            // An outbound request inside an open transaction: refused.
            ("POST", "/fetch-in-transaction") => {
                let url = String::from_utf8_lossy(request.body()).into_owned();
                let refused = sql::transaction(|_| wdo_sdk::http::get(&url).send().map(|_| ()));
                Ok(Response::text(refused.err().map(|e| e.message().to_string()).unwrap_or_default()))
            }
            ("POST", "/sql") => sql_call(request.json()?),
            ("POST", "/alarm/plan") => {
                let plan: AlarmPlan = request.json()?;
                storage::put("alarm-plan", &plan)?;
                Ok(Response::text("planned"))
            }
            ("POST", "/alarm/set") => {
                let at = match (request.query_param("at"), request.query_param("in")) {
                    (Some(at), _) => at.parse::<i64>().map_err(|_| Error::bad_request("bad at"))?,
                    (None, Some(ms)) => {
                        context::now_ms() as i64 + ms.parse::<i64>().map_err(|_| Error::bad_request("bad in"))?
                    }
                    _ => return Err(Error::bad_request("give ?at=ms or ?in=ms")),
                };
                alarms::set(at)?;
                if request.query_param("trap").is_some() {
                    panic!("probe: deliberate panic after setting an alarm");
                }
                Ok(Response::text(at.to_string()))
            }
            ("POST", "/alarm/delete") => {
                alarms::delete()?;
                Ok(Response::text("deleted"))
            }
            ("GET", "/alarm") => Response::json(&alarms::get()?),
            ("GET", "/alarm/fired") => {
                let fired: Vec<Firing> = storage::get("fired")?.unwrap_or_default();
                Response::json(&fired)
            }
            ("POST", "/busy") => {
                let start = context::now_ms();
                spin(request.query_param("ms").and_then(|m| m.parse().ok()).unwrap_or(10));
                record_interval(start)?;
                Ok(Response::text("done"))
            }
            // A WebSocket with ?tags=a,b and ?attachment=text; ?spin=ms spins after accepting.
            ("GET", "/ws") => {
                let tags = request.query_param("tags").unwrap_or_default();
                let tags: Vec<&str> = tags.split(',').filter(|t| !t.is_empty()).collect();
                let attachment = request.query_param("attachment");
                websockets::accept(&request, &tags, attachment.as_deref().map(str::as_bytes))?;
                spin(request.query_param("spin").and_then(|m| m.parse().ok()).unwrap_or(0));
                Ok(Response::upgraded())
            }
            // Calls another object: {"class", "name" | "id", "method", "args"} → its answer or error.
            ("POST", "/rpc") => {
                let call: serde_json::Value = request.json()?;
                let s = |k: &str| call[k].as_str().unwrap_or_default().to_string();
                let stub = match call.get("id") {
                    Some(id) => objects::Stub::by_id(&s("class"), id.as_str().unwrap_or_default()),
                    None => objects::Stub::by_name(&s("class"), &s("name")),
                };
                let result = stub.and_then(|stub| stub.call_raw(&s("method"), s("args").as_bytes()));
                if call["write_then_trap"].as_bool() == Some(true) {
                    storage::put("caller-write", &true)?;
                    panic!("probe: deliberate panic after a successful call");
                }
                match result {
                    Ok(bytes) => Response::json(&serde_json::json!({"ok": String::from_utf8_lossy(&bytes)})),
                    Err(e) => Response::json(&serde_json::json!({"error": e.message(), "status": e.status()})),
                }
            }
            // For make bench: `n` calls to `name`'s echo, each timed (µs) in the guest.
            ("POST", "/rpc-loop") => {
                let other = objects::Stub::by_name("probe", &request.query_param("name").unwrap_or_default())?;
                let n: usize = request.query_param("n").and_then(|v| v.parse().ok()).unwrap_or(1000);
                let mut micros = Vec::with_capacity(n);
                for _ in 0..n {
                    let started = std::time::Instant::now();
                    other.call_raw("echo", b"ping")?;
                    micros.push(started.elapsed().as_micros() as u64);
                }
                Response::json(&micros)
            }
            // Typed calls: /typed?name=other&a=1&b=2
            ("GET", "/typed") => {
                let other = ProbeApi::by_name(&request.query_param("name").unwrap_or_default())?;
                let n = |k: &str| request.query_param(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                Response::json(&serde_json::json!({
                    "sum": other.add(n("a"), n("b"))?,
                    "greeting": other.greet("probe".into())?,
                    "calls": other.calls()?,
                }))
            }
            ("GET", "/ids") => {
                let class = request.query_param("class").unwrap_or_else(|| "probe".into());
                let name = request.query_param("name").unwrap_or_default();
                Response::json(&serde_json::json!({
                    "from_name": objects::id_from_name(&class, &name)?,
                    "unique": objects::new_unique_id(&class)?,
                    "check": request.query_param("check").map(|id| objects::id_from_string(&class, &id).map_err(|e| e.message().to_string())),
                }))
            }
            ("GET", "/closes") => Response::json(&storage::get::<serde_json::Value>("closes")?.unwrap_or_default()),
            ("GET", "/intervals") => Response::json(&storage::get::<Vec<(u64, u64)>>("intervals")?.unwrap_or_default()),
            ("GET", "/db-size") => Ok(Response::text(sql::database_size()?.to_string())),
            // Writes through SQL and key-value, then panics: neither may remain.
            ("POST", "/sql-then-trap") => {
                sql::exec("CREATE TABLE IF NOT EXISTS notes (text TEXT)", &[])?;
                sql::execute("INSERT INTO notes VALUES (?1)", &wdo_sdk::params!["written before the trap"])?;
                storage::put("note", "written before the trap")?;
                panic!("probe: deliberate panic after SQL and key-value writes");
            }
            // An outer write, then a nested transaction whose closure fails: only the outer stays.
            ("POST", "/savepoint") => {
                sql::exec("CREATE TABLE IF NOT EXISTS steps (name TEXT)", &[])?;
                sql::execute("INSERT INTO steps VALUES ('outer')", &[])?;
                let inner = sql::transaction(|tx| {
                    tx.execute("INSERT INTO steps VALUES ('inner')", &[])?;
                    storage::put("inner", &true)?;
                    Err::<(), _>(Error::new(409, "the inner part changed its mind"))
                });
                let kept: Vec<serde_json::Value> = sql::query("SELECT name FROM steps", &[])?;
                Response::json(&serde_json::json!({
                    "inner_error": inner.err().map(|e| e.message().to_string()),
                    "rows": kept,
                    "inner_key": storage::get::<bool>("inner")?,
                }))
            }
            // For make bench: inserts `rows` rows in this one event.
            ("POST", "/sql-insert") => {
                let rows: usize = request.query_param("rows").and_then(|r| r.parse().ok()).unwrap_or(1);
                sql::exec("CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, body TEXT)", &[])?;
                // `via=execute`: the call that returns only the counts.
                let execute = request.query_param("via").as_deref() == Some("execute");
                for i in 0..rows {
                    let params = wdo_sdk::params![format!("row {i}")];
                    if execute {
                        sql::execute("INSERT INTO bench (body) VALUES (?1)", &params)?;
                    } else {
                        sql::exec("INSERT INTO bench (body) VALUES (?1)", &params)?;
                    }
                }
                Ok(Response::text(rows.to_string()))
            }
            // The same inserts in one exec-many call.
            ("POST", "/sql-insert-many") => {
                let rows: usize = request.query_param("rows").and_then(|r| r.parse().ok()).unwrap_or(1);
                sql::exec("CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, body TEXT)", &[])?;
                let runs: Vec<Vec<Value>> = (0..rows).map(|i| wdo_sdk::params![format!("row {i}")]).collect();
                let done = sql::exec_many("INSERT INTO bench (body) VALUES (?1)", &runs)?;
                Ok(Response::text(done.rows_written.to_string()))
            }
            ("POST", "/log") => {
                context::log(request.text()?);
                Ok(Response::text("logged"))
            }
            _ => Ok(Response::not_found()),
        }
    }
}

/// A command sent over a socket: `name` or `name:argument`.
fn socket_command(from: SocketId, text: &str) -> Result<()> {
    let events = EVENTS.fetch_add(1, Ordering::SeqCst) + 1;
    let (command, argument) = text.split_once(':').unwrap_or((text, ""));
    let reply = |text: String| websockets::send_text(from, &text);
    match command {
        "echo" => reply(argument.to_string()),
        // How many events this instance served (1: a fresh instance).
        "events" => reply(events.to_string()),
        "tags" => reply(serde_json::to_string(&websockets::tags(from)?)?),
        "count" => {
            let tag = (!argument.is_empty()).then_some(argument);
            reply(websockets::sockets(tag)?.len().to_string())
        }
        "attachment" => {
            let raw = wdo_sdk::bindings::wdo::object::websockets::get_attachment(from)
                .map_err(|e| Error::new(500, e.to_string()))?;
            reply(format!("{}|{events}", String::from_utf8_lossy(&raw.unwrap_or_default())))
        }
        "set-attachment" => {
            wdo_sdk::bindings::wdo::object::websockets::set_attachment(from, Some(argument.as_bytes()))
                .map_err(|e| Error::new(500, e.to_string()))?;
            reply("set".into())
        }
        "auto" => {
            let (request, response) = argument.split_once('=').unwrap_or((argument, ""));
            websockets::set_auto_response(request, response)?;
            reply("auto set".into())
        }
        "close" => {
            let (code, reason) = argument.split_once(',').unwrap_or((argument, ""));
            websockets::close(from, code.parse().unwrap_or(1000), reason)
        }
        "big" => reply("x".repeat(argument.parse().unwrap_or(0))),
        "broadcast" => websockets::broadcast(None, &Message::Text(argument.to_string())),
        // `distinct:N:SIZE`: N different messages of SIZE bytes to the sender, then "sent N";
        // a refused send answers its error instead.
        "distinct" => {
            let (n, size) = argument.split_once(':').unwrap_or(("0", "0"));
            let (n, size): (usize, usize) = (n.parse().unwrap_or(0), size.parse().unwrap_or(0));
            for i in 0..n {
                if let Err(e) = reply(format!("{i}{}", "d".repeat(size))) {
                    return reply(format!("refused after {i}: {}", e.message()));
                }
            }
            reply(format!("sent {n}"))
        }
        // Sends, then traps: the send must never leave the host.
        "trap" => {
            reply("sent before the trap".into())?;
            panic!("probe: deliberate panic after a send");
        }
        _ => reply(format!("unknown command {command}")),
    }
}

impl Probe {
    fn on_alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let start = context::now_ms();
        let events = EVENTS.fetch_add(1, Ordering::SeqCst) + 1;
        let mut plan: AlarmPlan = storage::get("alarm-plan")?.unwrap_or_default();
        let mut fired: Vec<Firing> = storage::get("fired")?.unwrap_or_default();
        fired.push(Firing {
            retry_count: info.retry_count,
            is_retry: info.is_retry,
            at_ms: start,
            instance_events: events,
        });
        // Failed attempts are rolled back, so their firings are kept outside the event: in the log.
        context::log(&format!("alarm fired: retry {} is_retry {} at {start}", info.retry_count, info.is_retry));
        storage::put("fired", &fired)?;
        spin(plan.spin_ms);
        if plan.spin_ms > 0 {
            record_interval(start)?;
        }
        match plan.mode.as_str() {
            "fail" => return Err(Error::new(500, "probe: the alarm handler fails on purpose")),
            "trap" => panic!("probe: the alarm handler traps on purpose"),
            _ => {}
        }
        if plan.rearm_left > 0 {
            plan.rearm_left -= 1;
            storage::put("alarm-plan", &plan)?;
            alarms::set_in(plan.rearm_every)?;
        }
        Ok(())
    }
}

export!(Probe);
