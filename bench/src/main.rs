//! `make bench`: figures for the README, measured on this machine.
//!
//! - HTTP: increments to one hot object and round robin over many objects, through a real
//!   `wdo serve` over keep-alive connections (the load generator shares the machine's cores).
//! - Wake-up: in-process, the time `Host::fetch` takes for an object whose instance was
//!   dropped, and whose database was closed too, beside a warm object.

mod alarms;
mod attack;
mod backup;
mod cloudflare;
mod cluster;
mod http_load;
mod inodes;
mod languages;
mod observe;
mod outbound;
mod rpc;
mod scale;
mod server;
mod sockets;
mod sql;
mod stats;
mod wake;

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// How long each HTTP scenario runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Distinct objects in the round-robin scenario.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Wake-ups measured per kind.
    #[arg(long, default_value_t = 2000)]
    wakes: usize,
    /// Pending alarms at start-up.
    #[arg(long, default_value_t = 100_000)]
    pending_alarms: usize,
    /// Objects whose alarms come due together.
    #[arg(long, default_value_t = 2_000)]
    firing_alarms: usize,
    /// WebSocket clients in the broadcast room.
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// Messages the one sender broadcasts.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Calls timed in the RPC scenario.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Pause between two wakes in the language rows (0: back to back).
    #[arg(long, default_value = "3ms", value_parser = humantime::parse_duration)]
    wake_gap: Duration,
    /// Live objects per language in the memory measurement.
    #[arg(long, default_value_t = 200)]
    live: usize,
    /// Slow connections in the attack scenario.
    #[arg(long, default_value_t = 5_000)]
    slow_connections: usize,
    /// Objects in the wide spread row of the scale group (0: skip it).
    #[arg(long, default_value_t = 100_000)]
    wide_objects: usize,
    /// Run only these groups (http, scale, start, wake, languages, cloudflare, sql, alarms,
    /// sockets, rpc, attack, outbound, backup, cluster, observe); all when not given.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn counter_component() -> PathBuf {
    workspace().join("target/wasm32-wasip2/guest/counter.wasm")
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(counter_component().exists(), "build first: make build test-guests");
    let runs = |group: &str| args.only.is_empty() || args.only.iter().any(|g| g == group);
    println!("machine: {}", stats::machine());
    if runs("http") {
        println!("\n{}", stats::Row::header());
        for durability in ["normal", "full"] {
            let row = http_load::hot_object(durability, args.connections, args.duration).await;
            println!("{row}");
        }
        for row in http_load::many_objects(args.objects, args.connections, args.duration).await {
            println!("{row}");
        }
    }
    if runs("scale") {
        println!("\n{}", scale::WrkRun::header());
        for row in scale::measure(args.objects, args.wide_objects, args.duration).await {
            println!("{row}");
        }
    }
    if runs("start") {
        println!();
        for line in scale::first_start().await {
            println!("{line}");
        }
    }
    if runs("wake") {
        println!("\n{}", stats::Row::header());
        for row in wake::measure(args.wakes).await {
            println!("{row}");
        }
    }
    if runs("languages") {
        println!("\n{}", stats::Row::header());
        let (rows, memory) = languages::measure(args.wakes, args.live, args.wake_gap).await;
        for row in rows {
            println!("{row}");
        }
        for line in memory {
            println!("{line}");
        }
    }
    if runs("cloudflare") {
        println!(
            "\nthe Cloudflare layer (examples/cloudflare/counter) next to the JavaScript SDK (examples/counter-js)"
        );
        println!("{}", stats::Row::header());
        let (rows, sizes) = cloudflare::measure(args.wakes, args.wake_gap, args.connections, args.duration).await;
        for row in rows {
            println!("{row}");
        }
        for line in sizes {
            println!("{line}");
        }
    }
    if runs("alarms") {
        println!();
        for line in alarms::startup(args.pending_alarms).await {
            println!("{line}");
        }
        println!("{}", alarms::firing(args.firing_alarms).await);
    }
    if runs("sockets") {
        println!();
        for line in sockets::broadcast(args.clients, args.messages, Duration::ZERO).await {
            println!("{line}");
        }
        let paced = sockets::broadcast(args.clients, args.messages, Duration::from_millis(50)).await;
        println!("{}", paced[0]);
    }
    if runs("rpc") {
        println!("\n{}", stats::Row::header());
        println!("{}", rpc::object_to_object(args.calls).await);
        println!("{}", http_load::worker_to_object(args.connections, args.duration).await);
        for row in http_load::sdk_workers(args.duration).await {
            println!("{row}");
        }
    }
    if runs("attack") {
        println!();
        for line in attack::slow_connections(args.slow_connections, args.duration).await {
            println!("{line}");
        }
        println!("{}", attack::socket_flood(args.clients, 15 << 20).await);
    }
    if runs("backup") {
        println!("\nthe backup (--backup): off, async and sync, to a folder and to an S3 server on loopback");
        for line in backup::measure(args.objects, args.connections, args.duration).await {
            println!("{line}");
        }
    }
    if runs("cluster") {
        println!("\nseveral hosts (--cluster): etcd (one member), an S3 server and every host on this machine");
        println!("{}", stats::Row::header());
        for row in cluster::throughput(args.objects, args.duration).await {
            println!("{row}");
        }
        for row in cluster::forwarding(args.calls / 10).await {
            println!("{row}");
        }
        for lease in ["5s", "2s"] {
            println!("{}", cluster::failover(300, lease).await);
        }
    }
    if runs("observe") {
        println!("\nmetrics on and off, taken in turn (--metrics), and a tail reading every event");
        println!("{}", scale::WrkRun::header());
        for row in observe::measure(args.duration).await {
            println!("{row}");
        }
    }
    if runs("outbound") {
        println!("\noutbound HTTP requests sent by a guest (POST /probe/<object>/fetch → GET of a loopback server)");
        println!("{}", stats::Row::header());
        for row in outbound::measure(args.connections, args.duration).await {
            println!("{row}");
        }
    }
    if runs("sql") {
        println!("\n{}", sql::header());
        let (rows, empty) = sql::measure(args.duration).await;
        for row in rows {
            println!("{row}");
        }
        println!("(the event with no row to insert: {empty:.0} events/s, {:.1} µs each)", 1e6 / empty);
    }
}
