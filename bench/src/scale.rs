//! Many objects, driven by `wrk` (a load generator outside the host process, as the issue asks):
//! first touch of new objects, spread traffic over existing ones, the hot object beside them,
//! and how long a first start takes.

use crate::server::Server;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What one wrk run reported.
pub struct WrkRun {
    pub name: String,
    pub requests: u64,
    pub per_second: f64,
    pub p50: String,
    pub p99: String,
    pub errors: u64,
    /// When a script stopped it before its time (ns since the epoch), if one did.
    pub stopped_at: Option<u128>,
}

impl WrkRun {
    pub fn header() -> String {
        format!(
            "{:<56} {:>10} {:>12} {:>10} {:>10} {:>7}",
            "scenario (wrk)", "requests", "per second", "p50", "p99", "errors"
        )
    }
}

impl std::fmt::Display for WrkRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<56} {:>10} {:>12.0} {:>10} {:>10} {:>7}",
            self.name, self.requests, self.per_second, self.p50, self.p99, self.errors
        )
    }
}

/// Paths for wrk's Lua: `new` gives each request a name never used before (first touch),
/// `random` picks one of `objects` existing names, `make` walks them in order once, `cycle`
/// walks them over and over.
pub fn script(dir: &Path, kind: &str, objects: usize, prefix: &str) -> std::path::PathBuf {
    let body = match kind {
        "new" => format!(
            "local n = 0\nlocal id = 0\nsetup = function(thread) thread:set('t', id); id = id + 1 end\n\
             request = function() n = n + 1; return wrk.format('POST', '/counter/{prefix}' .. t .. '_' .. n .. '/increment') end\n"
        ),
        "random" => format!(
            "math.randomseed(42)\nrequest = function() return wrk.format('POST', '/counter/{prefix}' .. \
             math.random(0, {objects} - 1) .. '/increment') end\n"
        ),
        // The objects in order from $OFFSET; wrk runs for a time, so it stops itself once every
        // object was asked for (else the rate would count second touches as first ones), and
        // says when: wrk itself idles to the end of its time.
        "make" => format!(
            "local n = tonumber(os.getenv('OFFSET') or '0') - 1\n\
             request = function() n = n + 1; return wrk.format('POST', '/counter/{prefix}' .. \
             (n % {objects}) .. '/increment') end\n\
             local stopped = false\n\
             response = function()\n\
               if n >= {objects} - 1 and not stopped then\n\
                 stopped = true\n\
                 local clock = io.popen('date +%s%N'); io.write('stopped at ' .. clock:read('*l') .. '\\n'); clock:close()\n\
                 wrk.thread:stop()\n\
               end\n\
             end\n"
        ),
        // The objects in turn, for as long as wrk runs.
        "cycle" => format!(
            "local n = -1\n\
             request = function() n = n + 1; return wrk.format('POST', '/counter/{prefix}' .. \
             (n % {objects}) .. '/increment') end\n"
        ),
        "hot" => "wrk.method = 'POST'\n".to_string(),
        _ => unreachable!(),
    };
    let path = dir.join(format!("{kind}-{prefix}.lua"));
    std::fs::write(&path, body).unwrap();
    path
}

/// Runs wrk (one thread) against `server` and reads its summary.
pub fn wrk(server: &Server, name: &str, connections: usize, duration: Duration, lua: &Path) -> WrkRun {
    let mut command = Command::new("wrk");
    command
        .args(["-t1", "--latency", "-c", &connections.to_string(), "-d"])
        .arg(format!("{}s", duration.as_secs().max(1)));
    command.arg("-s").arg(lua);
    let output = command
        .arg(format!("http://{}/counter/hot/increment", server.addr))
        .output()
        .expect("wrk (make bench installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string())).unwrap_or_default()
    };
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let errors = field("Non-2xx or 3xx responses:").parse().unwrap_or(0)
        + field("Socket errors:")
            .split(',')
            .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
            .sum::<u64>();
    WrkRun {
        name: name.to_string(),
        requests,
        per_second: field("Requests/sec:").parse().unwrap_or(0.0),
        p50: field("50%"),
        p99: field("99%"),
        errors,
        stopped_at: text.lines().find_map(|l| l.strip_prefix("stopped at ")?.trim().parse().ok()),
    }
}

/// The rows: the hot object, first touch (64 connections, and one at a time), then spread
/// traffic over `objects` existing objects (made first, in order) and over `wide` ones.
pub async fn measure(objects: usize, wide: usize, duration: Duration) -> Vec<WrkRun> {
    let dir = tempfile::tempdir().unwrap();
    if let Some(note) = crate::inodes::recent_removal(dir.path()) {
        println!("{note}");
    }
    let server = Server::start(&dir.path().join("data"), &[("counter", crate::counter_component())], &[]).await;
    let mut rows = Vec::new();
    let hot = script(dir.path(), "hot", 0, "hot");
    rows.push(wrk(&server, "one hot object, 64 connections", 64, duration, &hot));
    // Twice: the first run after a start also pays for the instance pool's untouched slots.
    for (prefix, when) in [("new", "host just started"), ("again", "second run")] {
        let new = script(dir.path(), "new", 0, prefix);
        rows.push(wrk(&server, &format!("new objects, first touch, 64 connections ({when})"), 64, duration, &new));
    }
    let one = script(dir.path(), "new", 0, "one");
    rows.push(wrk(&server, "new objects, first touch, one at a time", 1, duration, &one));
    for (count, prefix) in [(objects, "s"), (wide, "w")] {
        if count == 0 {
            continue;
        }
        // Make them (each its database), then measure random traffic over them.
        let name = format!("making {count} objects in order (first touch)");
        rows.push(touch_in_order(&server, dir.path(), count, prefix, name));
        let random = script(dir.path(), "random", count, prefix);
        let name = format!("{count} existing objects at random, 64 connections");
        rows.push(wrk(&server, &name, 64, duration, &random));
    }
    let note = |name: String| WrkRun {
        name,
        requests: 0,
        per_second: 0.0,
        p50: String::new(),
        p99: String::new(),
        errors: 0,
        stopped_at: None,
    };
    rows.push(note(format!("(host memory: {} MiB resident)", server.rss_kib() / 1024)));
    let data = dir.path().join("data/objects/counter");
    let (databases, files, bytes) = disk_usage(&data);
    let per_object = bytes as f64 / 1024.0 / databases.max(1) as f64;
    rows.push(note(format!("(disk: {databases} databases in {files} files, {per_object:.1} KiB per object)")));
    // Start-up and memory must not grow with what is stored: restart on the same folder.
    server.kill().await;
    let server = Server::start(&dir.path().join("data"), &[("counter", crate::counter_component())], &[]).await;
    let (startup, rss) = (server.startup, server.rss_kib() / 1024);
    rows.push(note(format!(
        "(restart with {databases} databases stored: ready after {startup:.2?}, {rss} MiB resident)"
    )));
    if wide > 0 {
        let random = script(dir.path(), "random", wide, "w");
        rows.push(wrk(&server, &format!("{wide} objects at random, after the restart"), 64, duration, &random));
        // The usual shape of traffic: a working set as large as the spread row's, among all
        // that is stored. It should run as fast as those objects alone (the spread row above).
        // And one three times as large: past the default open-database bound (12,052 on a
        // 24 GiB machine), so a bound raised with `--max-open-objects` shows what it buys.
        for set in [objects, objects * 3] {
            if set == 0 || set >= wide {
                continue;
            }
            // Touch each of the working set once (from disk: the stored objects do not fit the
            // page cache), then measure the steady state.
            let name = format!("touching {set} of the {wide} once, in order");
            rows.push(touch_in_order(&server, dir.path(), set, "w", name));
            let working = script(dir.path(), "random", set, "w");
            rows.push(wrk(&server, &format!("{set} of the {wide} at random, then"), 64, duration, &working));
        }
        // Working sets that stay open with their instances, so nothing is reopened: what is
        // left of the gap to the hot object is each request's own transaction, commit and
        // instance call, which the hot object shares over a batch.
        for set in [64, 1000] {
            if set >= wide {
                continue;
            }
            touch_in_order(&server, dir.path(), set, "w", String::new());
            let working = script(dir.path(), "random", set, "w");
            let name = format!("{set} of the {wide} at random, all open (nothing reopened)");
            rows.push(wrk(&server, &name, 64, duration, &working));
        }
    }
    server.kill().await;
    crate::inodes::remove(dir, files);
    rows
}

/// Sends one increment to each of `count` objects named `<prefix><n>`, in order (64 in flight),
/// and rates it from the first request to the last answer (up to 64 more requests go to the
/// first objects again while the last ones are answered).
fn touch_in_order(server: &Server, dir: &Path, count: usize, prefix: &str, name: String) -> WrkRun {
    let make = script(dir, "make", count, prefix);
    let since_epoch = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let started = since_epoch();
    let mut made = 0;
    let ended = loop {
        // SAFETY (of set_var): nothing else in the benchmark reads the environment meanwhile.
        unsafe { std::env::set_var("OFFSET", made.to_string()) };
        let run = wrk(server, "", 64, Duration::from_secs(2), &make);
        made += run.requests;
        // The script stops once it asked for the last object (or, were it not to, all answered).
        match run.stopped_at {
            Some(at) => break at,
            None if made >= count as u64 => break since_epoch(),
            None => {}
        }
    };
    let elapsed = ended.saturating_sub(started) as f64 / 1e9;
    WrkRun {
        name,
        requests: made,
        per_second: made as f64 / elapsed,
        p50: String::new(),
        p99: String::new(),
        errors: 0,
        stopped_at: None,
    }
}

/// Databases, files and bytes on disk under `dir`, in one walk (a million objects are two
/// million files).
fn disk_usage(dir: &Path) -> (u64, u64, u64) {
    let (mut databases, mut files, mut bytes) = (0, 0, 0);
    for entry in walk(dir) {
        if let Ok(meta) = entry.metadata() {
            use std::os::unix::fs::MetadataExt;
            files += u64::from(meta.is_file());
            databases += u64::from(entry.file_name().to_string_lossy().ends_with(".sqlite"));
            bytes += meta.blocks() * 512;
        }
    }
    (databases, files, bytes)
}

fn walk(dir: &Path) -> Vec<std::fs::DirEntry> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&entry.path()));
        }
        out.push(entry);
    }
    out
}

/// `wdo serve examples/wdo.toml` on a fresh data folder: until it listens, until a Rust class
/// answers, until every class is ready; with an empty compile cache and with a full one.
pub async fn first_start() -> Vec<String> {
    let mut lines = Vec::new();
    let cache = tempfile::tempdir().unwrap();
    for label in ["empty compile cache", "compile cache filled (what `make build` leaves)"] {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let mut child = tokio::process::Command::new(crate::workspace().join("target/release/wdo"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .arg("--cache-dir")
            .arg(cache.path())
            .arg(crate::workspace().join("examples/wdo.toml"))
            .env("WDO_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("target/release/wdo");
        use tokio::io::AsyncBufReadExt;
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = out.next_line().await.unwrap().unwrap_or_default();
        let listening = started.elapsed();
        let addr: std::net::SocketAddr =
            line.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
        let mut client = crate::http_load::Connection::open(addr).await;
        let status = client.post("/counter/first/increment").await;
        let counter = started.elapsed();
        let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut components = 0;
        while let Ok(Some(line)) = err.next_line().await {
            components += usize::from(line.contains("] ") && line.contains(" ready ("));
            if line.contains("every class is ready") {
                break;
            }
        }
        let all = started.elapsed();
        lines.push(format!(
            "first start, {label}: listening after {:.2} s, /counter answered ({status}) after {:.2} s, \
             all {components} components ready after {:.1} s",
            listening.as_secs_f64(),
            counter.as_secs_f64(),
            all.as_secs_f64()
        ));
        child.kill().await.unwrap();
    }
    lines
}
