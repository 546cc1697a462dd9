//! SQL in every object, through the guest SDK: typed values, transactions, the guard, the
//! limits, and the ticket and history examples.

use crate::harness::{Server, Site};
use serde_json::{Value, json};
use std::collections::BTreeSet;

async fn sql(server: &Server, object: &str, query: &str, params: Value) -> (u16, Value) {
    let body = json!({"query": query, "params": params}).to_string();
    let (status, text) = server.post(&format!("/probe/{object}/sql"), &body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_kind_round_trips_through_the_guest() {
    let site = Site::standard();
    let server = site.start(&[]);
    assert_eq!(sql(&server, "v", "CREATE TABLE t (v)", json!([])).await.0, 200);
    let values = json!([
        {"null": null}, {"integer": 9007199254740993_i64}, {"integer": i64::MIN}, {"real": 0.25},
        {"text": "héllo ✓"}, {"blob": [0, 1, 254, 255]}, {"blob": []}
    ]);
    for v in values.as_array().unwrap() {
        let (status, body) = sql(&server, "v", "INSERT INTO t VALUES (?1)", json!([v])).await;
        assert_eq!((status, &body["rows_written"]), (200, &json!(1)), "{body}");
    }
    let (status, body) = sql(&server, "v", "SELECT v FROM t ORDER BY rowid", json!([])).await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<Value> = body["rows"].as_array().unwrap().iter().map(|row| row[0].clone()).collect();
    assert_eq!(Value::Array(got), values);
    assert_eq!(body["rows_read"], json!(7));
    assert_eq!(body["columns"], json!(["v"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_after_sql_and_key_value_writes_leaves_neither() {
    let site = Site::standard();
    let server = site.start(&[]);
    let (status, body) = server.post("/probe/t/sql-then-trap", "").await;
    assert_eq!(status, 500);
    assert!(body.contains("deliberate panic after SQL and key-value writes"), "{body}");
    let (status, body) = sql(&server, "t", "SELECT count(*) FROM notes", json!([])).await;
    assert_eq!(status, 500);
    assert!(body.as_str().unwrap().contains("no such table: notes"), "the CREATE TABLE was rolled back too: {body}");
    assert_eq!(server.post("/probe/t/kv", r#"{"op":"get","key":"note"}"#).await, (200, "null".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_nested_transaction_keeps_the_outer_writes() {
    let site = Site::standard();
    let server = site.start(&[]);
    let (status, body) = server.post("/probe/s/savepoint", "").await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["rows"], json!([{"name": "outer"}]));
    assert_eq!(body["inner_key"], Value::Null, "the key-value write inside the savepoint was rolled back");
    assert_eq!(body["inner_error"], json!("the inner part changed its mind"));
    // And the event committed the outer write.
    let (_, rows) = sql(&server, "s", "SELECT name FROM steps", json!([])).await;
    assert_eq!(rows["rows"], json!([[{"text": "outer"}]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sql_reaches_the_guest_as_an_error_naming_it() {
    let site = Site::standard();
    let server = site.start(&[]);
    for (query, named) in [
        ("BEGIN", "BEGIN"),
        ("ATTACH DATABASE '/etc/passwd' AS p", "ATTACH"),
        ("PRAGMA journal_mode = DELETE", "PRAGMA journal_mode"),
        ("SELECT * FROM _wdo_kv", "_wdo_kv"),
        ("VACUUM INTO '/tmp/stolen.db'", "VACUUM"),
    ] {
        let (status, body) = sql(&server, "g", query, json!([])).await;
        assert_eq!(status, 403, "{query}: {body}");
        assert!(body.as_str().unwrap().contains(named), "{query}: {body}");
    }
    assert_eq!(sql(&server, "g", "PRAGMA user_version = 3", json!([])).await.0, 200);
    let (_, body) = sql(&server, "g", "PRAGMA user_version", json!([])).await;
    assert_eq!(body["rows"], json!([[{"integer": 3}]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_and_sql_limits_are_configurable_errors_that_write_nothing() {
    let site = Site::standard();
    let server = site.start(&["--max-storage", "1MiB", "--max-sql-length", "64", "--max-sql-params", "2"]);
    assert_eq!(sql(&server, "q", "CREATE TABLE t (b)", json!([])).await.0, 200);
    let big = vec![7u8; 1_500_000];
    let (status, body) = sql(&server, "q", "INSERT INTO t VALUES (?1)", json!([{"blob": big}])).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.as_str().unwrap().contains("the limit is 1048576 bytes"), "{body}");
    let (_, size) = server.get("/probe/q/db-size").await;
    assert!(size.parse::<u64>().unwrap() < 100_000, "nothing of the refused insert was kept: {size}");
    assert_eq!(sql(&server, "q", "INSERT INTO t VALUES (?1)", json!([{"blob": [1]}])).await.0, 200);

    let long = format!("SELECT 1 {}", " ".repeat(60));
    let (status, body) = sql(&server, "q", &long, json!([])).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.as_str().unwrap().contains("the limit is 64 bytes"), "{body}");
    let (status, body) =
        sql(&server, "q", "SELECT ?1, ?2, ?3", json!([{"null": null}, {"null": null}, {"null": null}])).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(sql(&server, "q", "SELECT ?1, ?2", json!([{"null": null}, {"null": null}])).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_tickets_are_one_to_two_hundred() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut tickets = BTreeSet::new();
    for (status, body) in crate::harness::concurrent_posts(&server, "/ticket/x", 200).await {
        assert_eq!(status, 200, "{body}");
        let ticket = serde_json::from_str::<Value>(&body).unwrap()["ticket"].as_u64().unwrap();
        assert!(tickets.insert(ticket), "ticket {ticket} given twice");
    }
    assert_eq!(tickets, (1..=200).collect::<BTreeSet<u64>>());
    assert_eq!(server.post("/ticket/other", "").await, (200, r#"{"ticket":1}"#.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_keeps_the_latest_messages_in_order_and_survives_kill_9() {
    let site = Site::standard();
    let server = site.start(&[]);
    let mut client = server.client().await;
    for i in 1..=60 {
        assert_eq!(client.send("POST", "/history/lobby", &format!("message {i}")).await.0, 201);
    }
    assert_eq!(client.send("POST", "/history/lobby", "").await.0, 400);
    server.kill();
    let server = site.start(&[]);
    let (status, body) = server.get("/history/lobby?limit=3").await;
    assert_eq!(status, 200);
    let messages: Vec<Value> = serde_json::from_str(&body).unwrap();
    let texts: Vec<&str> = messages.iter().map(|m| m["message"].as_str().unwrap()).collect();
    assert_eq!(texts, ["message 58", "message 59", "message 60"]);
    assert!(messages.iter().all(|m| m["id"].is_i64() && m["timestamp"].as_i64().unwrap() > 1_700_000_000_000));
    let (_, body) = server.get("/history/lobby").await;
    let all: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(all.len(), 50, "the default limit");
    assert_eq!(all[0]["message"], "message 11");
    assert_eq!(server.get("/history/lobby?limit=x").await.0, 400);
    assert_eq!(server.get("/history/empty").await, (200, "[]".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_runs_statements_for_their_effect_with_execs_checks() {
    let site = Site::standard();
    let server = site.start(&["--max-sql-params", "2"]);
    let execute = |query: &'static str, params: Value| {
        let body = json!({"query": query, "params": params, "via": "execute"}).to_string();
        let server = &server;
        async move {
            let (status, text) = server.post("/probe/e/sql", &body).await;
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        }
    };
    let (status, body) = execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v); INSERT INTO t (v) VALUES (?1), (?2)",
        json!([{"text": "a"}, {"integer": 2}]),
    )
    .await;
    assert_eq!((status, &body["rows_written"]), (200, &json!(2)), "{body}");
    // Rows a statement returns are dropped; what it wrote is counted.
    let (status, body) = execute("INSERT INTO t (v) VALUES ('c') RETURNING id", json!([])).await;
    assert_eq!((status, &body["rows_written"]), (200, &json!(1)), "{body}");
    assert_eq!(execute("SELECT * FROM t", json!([])).await, (200, json!({"rows_written": 0})));
    // The same guard, limits and errors as exec; nothing of a failed call is written.
    let (status, body) = execute("ATTACH DATABASE '/etc/passwd' AS p", json!([])).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.as_str().unwrap().contains("ATTACH"), "{body}");
    let (status, body) =
        execute("INSERT INTO t (v) VALUES (?1), (?2), (?3)", json!([{"null": null}, {"null": null}, {"null": null}]))
            .await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = execute("INSERT INTO t (v) VALUES ('d'); INSERT INTO nowhere VALUES (1)", json!([])).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.as_str().unwrap().contains("no such table: nowhere"), "{body}");
    let (status, body) = sql(&server, "e", "SELECT v FROM t ORDER BY id", json!([])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([[{"text": "a"}], [{"integer": 2}], [{"text": "c"}]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_many_inserts_every_row_in_one_call() {
    let site = Site::standard();
    let server = site.start(&[]);
    assert_eq!(server.post("/probe/bulk/sql-insert-many?rows=2500", "").await, (200, "2500".into()));
    let (status, body) = sql(&server, "bulk", "SELECT count(*), max(body) FROM bench", json!([])).await;
    assert_eq!((status, &body["rows"]), (200, &json!([[{"integer": 2500}, {"text": "row 999"}]])), "{body}");
    // Over --max-sql-batch-rows: refused, nothing written.
    server.kill();
    let server = site.start(&["--max-sql-batch-rows", "100"]);
    let (status, body) = server.post("/probe/bulk2/sql-insert-many?rows=101", "").await;
    assert_eq!(status, 413, "{body}"); // the SDK answers a limit error with 413
    assert!(body.contains("101 runs in one exec-many; the limit is 100"), "{body}");
    let (_, body) = sql(&server, "bulk2", "SELECT count(*) FROM bench", json!([])).await;
    assert_eq!(body["rows"], json!([[{"integer": 0}]]), "{body}");
}
