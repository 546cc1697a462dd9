//! Hostile guests: SQL that would run forever, allocate without end, or return everything is
//! stopped at its object's limits, while the host and every other object keep answering.

use crate::harness::{Client, Server, Site};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn sql(server: &Server, object: &str, query: &str) -> (u16, String) {
    server.post(&format!("/probe/{object}/sql"), &json!({"query": query, "params": []}).to_string()).await
}

/// Asks `path` once; the answer must come within a second.
async fn answers_promptly(client: &mut Client, method: &str, path: &str) -> (u16, String) {
    let asked = Instant::now();
    let answer = client.send(method, path, "").await;
    assert!(asked.elapsed() < Duration::from_secs(1), "{path} waited {:?}", asked.elapsed());
    answer
}

const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_sql_in_two_objects_is_stopped_at_the_cpu_limit_while_the_host_answers() {
    let site = Site::standard();
    let server = site.start(&["--cpu-limit", "3s"]);
    let started = Instant::now();
    let grinders: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let addr = server.addr;
            tokio::spawn(async move {
                let body = json!({"query": ENDLESS, "params": []}).to_string();
                let answer = Client::connect(addr).await.send("POST", &format!("/probe/{name}/sql"), &body).await;
                (answer, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Two objects grind in SQLite on a 2-core machine; the host and other objects still answer.
    let mut client = server.client().await;
    for i in 0..10 {
        assert_eq!(answers_promptly(&mut client, "GET", "/_wdo/health").await, (200, "ok\n".into()));
        let counter = answers_promptly(&mut client, "POST", &format!("/counter/c{i}/increment")).await;
        assert_eq!(counter, (200, "1".into()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for grinder in grinders {
        let ((status, body), took) = grinder.await.unwrap();
        assert_eq!(status, 500, "{body}");
        assert!(body.contains("CPU time limit of 3s"), "{body}");
        assert!(took >= Duration::from_millis(2900) && took < Duration::from_secs(10), "stopped after {took:?}");
    }
    // The objects go on with fresh instances.
    assert_eq!(sql(&server, "a", "SELECT 1").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_results_and_sorts_are_refused_with_the_limit_they_hit() {
    let site = Site::standard();
    let server = site.start(&["--max-sql-memory", "16MiB", "--max-result-size", "1MiB"]);
    // A string past the value size: SQLite refuses to make it; the guest gets the error.
    let (status, body) = sql(&server, "z", "SELECT length(zeroblob(1000000000))").await;
    assert_eq!(status, 500);
    assert!(body.contains("string or blob too big"), "{body}");
    // A result past 1 MiB: refused, with the limit named.
    let big = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
               SELECT randomblob(2000) FROM n";
    let (status, body) = sql(&server, "z", big).await;
    assert_eq!(status, 413, "the SDK's status for a limit");
    assert!(body.contains("result is over the limit of 1048576 bytes"), "{body}");
    // A sort of ~60 MB held in memory: past the object's SQL memory, the event fails and
    // nothing it wrote before stays (SQLite may have given up on its transaction).
    assert_eq!(sql(&server, "z", "CREATE TABLE t (x)").await.0, 200);
    let sort = "INSERT INTO t VALUES (1); \
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600000) \
                SELECT count(DISTINCT hex(randomblob(40))) FROM n";
    let (status, body) = sql(&server, "z", sort).await;
    assert_eq!(status, 500);
    assert!(body.contains("SQL memory limit of 16 MiB"), "{body}");
    let (status, body) = sql(&server, "z", "SELECT count(*) FROM t").await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["rows"].clone()),
        (200, json!([[{"integer": 0}]]))
    );
    // The same object, and others, go on; a sort that fits works.
    let (status, body) = sql(&server, "z", "SELECT count(DISTINCT x % 7) FROM (SELECT 1 AS x UNION SELECT 9)").await;
    assert_eq!(status, 200, "{body}");
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows["rows"], json!([[{"integer": 2}]]));
    assert_eq!(server.post("/counter/fine/increment", "").await, (200, "1".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_that_expose_host_addresses_are_refused() {
    let site = Site::standard();
    let server = site.start(&[]);
    let (status, body) = sql(&server, "f", "SELECT hex(fts3_tokenizer('simple'))").await;
    assert_eq!(status, 403, "the SDK's status for what is not allowed");
    assert!(body.contains("fts3_tokenizer(): it exposes or takes the host's memory addresses"), "{body}");
}

/// A component with two linear memories (written by hand in `tests/guests/multi-memory`): each
/// stays under the memory limit, together they do not, and that is what the limit counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_counts_all_of_a_components_memories_together() {
    let built = tempfile::tempdir().unwrap();
    let component = crate::harness::multi_memory_guest(built.path());
    let site = Site::new(&[("hog", component), ("counter", crate::harness::guest("counter"))]);
    let server = site.start(&["--memory-limit", "64MiB"]);
    // The body's length is how many 64 KiB pages each memory grows by; the answer, their sizes.
    let grow = |pages: usize| "x".repeat(pages);
    // 25 MiB in each of the two memories: 50 MiB in all fits.
    assert_eq!(server.post("/hog/a/grow", &grow(400)).await, (200, "402 401".into()));
    // 37.5 MiB in each: either memory alone fits in 64 MiB, both do not.
    let (status, body) = server.post("/hog/b/grow", &grow(600)).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("exceeded the memory limit of 64 MiB (all its memories and tables)"), "{body}");
    // The object that stayed under keeps its instance; the one that went over starts afresh; the
    // rest of the host never noticed.
    assert_eq!(server.post("/hog/a/grow", "").await, (200, "402 401".into()));
    assert_eq!(server.post("/hog/b/grow", "").await, (200, "2 1".into()));
    assert_eq!(server.post("/counter/c/increment", "").await, (200, "1".into()));
}
