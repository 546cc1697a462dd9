//! The key-value API through the WIT boundary, as a guest uses it.

use crate::harness::{Server, Site};
use serde_json::{Value, json};

async fn kv(server: &Server, op: Value) -> (u16, Value) {
    let (status, body) = server.post("/probe/kv/kv", &op.to_string()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_value_call_works_through_the_guest() {
    let site = Site::standard();
    let server = site.start(&[]);
    let ok = |r: (u16, Value)| {
        assert_eq!(r.0, 200, "{}", r.1);
        r.1
    };
    ok(kv(&server, json!({"op": "put", "key": "a", "value": 1})).await);
    assert_eq!(ok(kv(&server, json!({"op": "get", "key": "a"})).await), json!(1));
    assert_eq!(ok(kv(&server, json!({"op": "get", "key": "zz"})).await), Value::Null);
    ok(kv(&server, json!({"op": "put-many", "entries": [["b", "two"], ["c", [3]], ["d", {"four": 4}]]})).await);
    assert_eq!(
        ok(kv(&server, json!({"op": "get-many", "keys": ["d", "nope", "a"]})).await),
        json!([["d", {"four": 4}], ["a", 1]])
    );
    let list = |o: Value| {
        let mut op = json!({"op": "list"});
        op.as_object_mut().unwrap().extend(o.as_object().unwrap().clone());
        op
    };
    let keys = |v: Value| v.as_array().unwrap().iter().map(|e| e[0].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(keys(ok(kv(&server, list(json!({}))).await)), ["a", "b", "c", "d"]);
    assert_eq!(keys(ok(kv(&server, list(json!({"reverse": true, "limit": 2}))).await)), ["d", "c"]);
    assert_eq!(keys(ok(kv(&server, list(json!({"start": "b", "end": "d"}))).await)), ["b", "c"]);
    assert_eq!(keys(ok(kv(&server, list(json!({"start_after": "b"}))).await)), ["c", "d"]);
    assert_eq!(keys(ok(kv(&server, list(json!({"prefix": "c"}))).await)), ["c"]);
    assert_eq!(ok(kv(&server, json!({"op": "delete", "key": "a"})).await), json!(true));
    assert_eq!(ok(kv(&server, json!({"op": "delete", "key": "a"})).await), json!(false));
    assert_eq!(ok(kv(&server, json!({"op": "delete-many", "keys": ["b", "c", "x"]})).await), json!(2));
    ok(kv(&server, json!({"op": "delete-all"})).await);
    assert_eq!(ok(kv(&server, list(json!({}))).await), json!([]));
}

/// `delete-all` empties the object: its key-value data, every table, index, view and trigger
/// its SQL made, and its alarm (which then never fires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_all_empties_the_object_sql_tables_and_alarm_included() {
    let site = Site::standard();
    let server = site.start(&[]);
    let server = &server;
    let sql = |query: &str| {
        let body = json!({"query": query, "params": []}).to_string();
        async move { server.post("/probe/kv/sql", &body).await }
    };
    for statement in [
        "CREATE TABLE t (x INTEGER PRIMARY KEY, y)",
        "CREATE INDEX t_y ON t (y)",
        "CREATE VIEW v AS SELECT y FROM t",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
        "INSERT INTO t (y) VALUES ('row')",
    ] {
        assert_eq!(sql(statement).await.0, 200, "{statement}");
    }
    assert_eq!(kv(server, json!({"op": "put", "key": "a", "value": 1})).await.0, 200);
    assert_eq!(server.post("/probe/kv/alarm/set?in=1000", "").await.0, 200);
    assert_eq!(kv(server, json!({"op": "delete-all"})).await.0, 200);

    let (status, left) = sql("SELECT type, name FROM sqlite_schema WHERE name NOT LIKE '\\_wdo\\_%' ESCAPE '\\'").await;
    assert_eq!(status, 200, "{left}");
    assert_eq!(serde_json::from_str::<Value>(&left).unwrap()["rows"], json!([]), "{left}");
    assert_eq!(kv(server, json!({"op": "list"})).await, (200, json!([])));
    assert_eq!(server.get("/probe/kv/alarm").await, (200, "null".into()));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(server.get("/probe/kv/alarm/fired").await, (200, "[]".into()), "the alarm is gone from the index too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_errors_the_guest_sees_and_nothing_is_written() {
    let site = Site::standard();
    let server = site.start(&["--max-value-size", "1KiB", "--max-batch-keys", "4"]);
    let big = "x".repeat(1100);
    let (status, body) = kv(&server, json!({"op": "put", "key": "big", "value": big})).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.as_str().unwrap().contains("the limit is 1024 bytes"), "{body}");
    let five: Vec<Value> = (0..5).map(|i| json!([format!("k{i}"), i])).collect();
    let (status, body) = kv(&server, json!({"op": "put-many", "entries": five})).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.as_str().unwrap().contains("5 keys in one call; the limit is 4"), "{body}");
    assert_eq!(kv(&server, json!({"op": "list"})).await, (200, json!([])), "nothing of either call was written");
    let four: Vec<Value> = (0..4).map(|i| json!([format!("k{i}"), i])).collect();
    assert_eq!(kv(&server, json!({"op": "put-many", "entries": four})).await.0, 200);
}
