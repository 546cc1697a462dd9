//! SQL inside an event against the physical floor: the same inserts run directly with rusqlite
//! in this process, with the settings wdo's object databases use (WAL, synchronous=NORMAL,
//! exclusive locking, 1 KiB pages, checkpoint every MiB of WAL, 512 KiB page cache), one
//! transaction per event. wdo runs them through the probe guest (`/sql-insert?rows=N`), one
//! event at a time, in-process (no HTTP); bulk inserts either call by call or in one `exec-many`.
//!
//! An event is more than its SQL (the mailbox, the call into the instance, the SDK's request
//! and response), so each row also gives the SQL's own cost: the event's time less that of the
//! same event with no row to insert (`/sql-insert?rows=0`, which commits nothing), against the
//! floor.

use std::time::{Duration, Instant};
use wdo_host::{Config, Host, Request};

pub struct Comparison {
    pub name: String,
    pub wdo_per_second: f64,
    /// The same event with nothing to insert.
    pub empty_per_second: f64,
    pub floor_per_second: f64,
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sql_alone = 1.0 / self.wdo_per_second - 1.0 / self.empty_per_second;
        write!(
            f,
            "{:<48} {:>12.0} {:>12.0} {:>8.2}x {:>10.2}x",
            self.name,
            self.wdo_per_second,
            self.floor_per_second,
            self.floor_per_second / self.wdo_per_second,
            sql_alone * self.floor_per_second
        )
    }
}

pub fn header() -> String {
    format!("{:<48} {:>12} {:>12} {:>9} {:>11}", "SQL scenario (events/s)", "wdo", "rusqlite", "cost", "SQL alone")
}

fn floor(rows_per_event: usize, duration: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("floor.sqlite")).unwrap();
    conn.execute_batch(
        "PRAGMA page_size=1024; PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         PRAGMA wal_autocheckpoint=1024; PRAGMA journal_size_limit=4194304; PRAGMA cache_size=-512;
         PRAGMA foreign_keys=ON;
         CREATE TABLE bench (id INTEGER PRIMARY KEY, body TEXT)",
    )
    .unwrap();
    let started = Instant::now();
    let mut events = 0;
    while started.elapsed() < duration {
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..rows_per_event {
            conn.prepare_cached("INSERT INTO bench (body) VALUES (?1)").unwrap().execute([format!("row {i}")]).unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        events += 1;
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// Events one at a time, from a task on the runtime's workers as a server's connections send
/// them (from the benchmark's own thread, outside the workers, each event would cross threads
/// twice).
async fn wdo(host: &Host, route: &str, rows_per_event: usize, duration: Duration) -> f64 {
    let (host, route) = (host.clone(), route.to_string());
    tokio::spawn(async move { wdo_loop(&host, &route, rows_per_event, duration).await }).await.unwrap()
}

async fn wdo_loop(host: &Host, route: &str, rows_per_event: usize, duration: Duration) -> f64 {
    let separator = if route.contains('?') { '&' } else { '?' };
    let path = format!("{route}{separator}rows={rows_per_event}");
    host.fetch("probe", "sql-bench", Request::post(&path, "")).await.unwrap(); // creates the table
    let started = Instant::now();
    let mut events = 0;
    while started.elapsed() < duration {
        let response = host.fetch("probe", "sql-bench", Request::post(&path, "")).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        events += 1;
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// The comparisons, and the rate of events that insert nothing.
pub async fn measure(duration: Duration) -> (Vec<Comparison>, f64) {
    let data = tempfile::tempdir().unwrap();
    let config = Config { data_dir: data.path().to_path_buf(), ..Config::default() };
    let probe = crate::workspace().join("target/wasm32-wasip2/guest/probe.wasm");
    let host = Host::builder().config(config).class_file("probe", probe).build().unwrap();
    let mut out = Vec::new();
    // The probe's insert route with no row: it still runs its CREATE TABLE IF NOT EXISTS.
    let empty = wdo(&host, "/sql-insert", 0, duration).await;
    let scenarios = [
        ("single-row insert per event", "/sql-insert", 1),
        ("1,000-row insert in one event, 1,000 exec calls", "/sql-insert", 1000),
        ("1,000-row insert in one event, 1,000 execute calls", "/sql-insert?via=execute", 1000),
        ("1,000-row insert in one event, one exec-many", "/sql-insert-many", 1000),
    ];
    for (name, route, rows) in scenarios {
        out.push(Comparison {
            name: name.into(),
            wdo_per_second: wdo(&host, route, rows, duration).await,
            empty_per_second: empty,
            floor_per_second: floor(rows, duration),
        });
    }
    (out, empty)
}
