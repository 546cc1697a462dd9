//! Commands and flags of `wdo`.

mod admin_client;
mod cluster;
mod deploy;
mod embedded;
mod new;
mod observe;
mod restore;
mod secret;
mod wrangler;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wdo_host::{BackupMode, Config, Durability, Host, Manifest, Routes};

#[derive(Parser)]
#[command(name = "wdo", version, about = "A self-hosted runtime for durable objects written as WebAssembly components")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve objects over HTTP: what was deployed to the data folder, and the manifest's classes.
    Serve(Box<ServeArgs>),
    /// Upload a manifest's components to a running host and switch to them.
    Deploy(deploy::DeployArgs),
    /// List the versions of each deployed class.
    Versions(deploy::VersionsArgs),
    /// Switch a class back to an earlier version (no upload).
    Rollback(deploy::RollbackArgs),
    /// Create a project with one durable object, in Rust, JavaScript or Python.
    New(new::NewArgs),
    /// Set, list or delete a class's secrets (read by its code with `env`).
    Secret(secret::SecretArgs),
    /// Build a wrangler project's components (what `serve` and `deploy` do first) and say where
    /// they are.
    Build(BuildArgs),
    /// Compile a manifest's components into a host's compile cache ahead of time, so that
    /// `wdo serve` serves every class within a second of starting.
    Compile(CompileArgs),
    /// Rebuild a data folder from a backup store (`wdo serve --backup`) as of a time, or put
    /// one object of a running host back as it was.
    Restore(restore::RestoreArgs),
    /// See a cluster of hosts (`wdo serve --cluster`): its hosts and the objects each holds.
    Cluster(cluster::ClusterArgs),
    /// Watch a running host's events as they finish: outcome, duration, the guest's log lines
    /// and errors (like `wrangler tail`).
    Tail(observe::TailArgs),
    /// One object of a running host: id, whether it is live, database size, alarm, sockets.
    Inspect(observe::InspectArgs),
    /// List an object's key-value pairs.
    Kv(observe::KvArgs),
    /// Run a read-only SQL query on an object's database, in order with its events.
    Sql(observe::SqlArgs),
}

#[derive(clap::Args)]
struct CompileArgs {
    /// The manifest: a wdo.toml or a wrangler config (default: the one here).
    manifest: Option<PathBuf>,
    /// The data folder of the host that will serve it (its cache is `<data>/cache`).
    #[arg(long, default_value = ".wdo")]
    data: PathBuf,
    /// The compile cache to fill instead (what the host's --cache-dir names).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// The host's --memory-limit, if not the default: compiled code depends on it.
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    memory_limit: usize,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// The project's wrangler.toml, wrangler.json or wrangler.jsonc (default: the one here).
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A manifest whose classes to deploy at start-up: a wdo.toml, or a Cloudflare project's
    /// wrangler.toml / wrangler.json(c) (built first). Without one the host serves what was
    /// deployed to its data folder before (nothing, the first time) and waits for `wdo deploy`.
    manifest: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Serve the admin API (deploys) on this address only, say 127.0.0.1:8788, and not on
    /// --listen.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Folder for object databases and compiled components.
    #[arg(long, default_value = ".wdo")]
    data: PathBuf,
    /// `normal`: commits survive a crash of the host; `full`: they survive power loss (fsync).
    #[arg(long, default_value = "normal")]
    durability: Durability,
    /// Drop an instance from memory after this long without events (its storage stays).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Close an object's database after this long without events, once its instance is gone.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    object_idle_timeout: Duration,
    /// CPU time one event may use.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    cpu_limit: Duration,
    /// Wall-clock time one event may take, calls to other objects included (a call inherits
    /// what is left of its caller's).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    event_timeout: Duration,
    /// Memory one instance may use (e.g. 128MiB).
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    memory_limit: usize,
    /// Largest request body accepted.
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    max_request_body: usize,
    /// Bytes of client input (request bodies, WebSocket messages) held at once, host-wide;
    /// past it new requests get 503 with Retry-After and sockets are read later.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    max_buffered_input: usize,
    /// Bytes of its clients' WebSocket messages one object may have waiting; past it its sockets
    /// are read no further until it catches up.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    max_object_input: usize,
    /// Objects that may hold their database open at once (a bound on memory: an open small
    /// database with 1 KiB pages takes ~90 KiB; files past the open-file limit are parked and
    /// reopened). Default: one per 256 KiB of an eighth of the machine's memory, from 1,024 to 16,384
    #[arg(long, default_value_t = wdo_host::default_max_open_objects())]
    max_open_objects: usize,
    /// Objects that may hold an instance in memory at once (one whose component has several
    /// linear memories counts once for each; the worker's requests may hold half); past it the
    /// least recently used idle object drops its instance (its database stays open) and makes
    /// a new one when needed. Default: what the kernel's memory mappings (vm.max_map_count) and
    /// the address space allow, at most 12,288 (memory is bounded by --max-resident)
    #[arg(long, default_value_t = wdo_host::default_max_instances())]
    max_instances: usize,
    /// The host's resident memory past which it drops the least recently used idle instances
    /// (and lets fewer live) until it is back under. Default: half of the machine's memory (or
    /// of its cgroup's limit); 0: no such bound
    #[arg(long, value_parser = parse_size)]
    max_resident: Option<usize>,
    /// Events that may wait for one object before callers are told it is overloaded.
    #[arg(long, default_value_t = 4096)]
    mailbox_capacity: usize,
    /// Largest key + value of one key-value entry.
    #[arg(long, default_value = "2MiB", value_parser = parse_size)]
    max_value_size: usize,
    /// Most keys in one batch call (get-many, put-many, delete-many).
    #[arg(long, default_value_t = 128)]
    max_batch_keys: usize,
    /// Largest WebSocket message a client may send (over it: close 1009).
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    max_websocket_message: usize,
    /// Bytes that may wait for one slow WebSocket client before it is cut off (close 1008); at
    /// least --max-websocket-message.
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    max_websocket_buffer: usize,
    /// WebSockets one object may hold open.
    #[arg(long, default_value_t = 32_768)]
    max_websockets_per_object: usize,
    /// Ping a WebSocket client silent this long; close it if it stays silent as long again.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    websocket_ping_interval: Duration,
    /// Bytes of WebSocket messages one event may queue (a message sent to many sockets in a
    /// row counts once).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    max_event_sends: usize,
    /// Largest argument or result of a call between objects.
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    max_call_payload: usize,
    /// Wait before the first retry of a failed alarm (doubling for each next one).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    alarm_retry_base: Duration,
    /// Largest database of one object.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    max_storage: usize,
    /// Longest SQL text of one exec.
    #[arg(long, default_value = "100KB", value_parser = parse_decimal_size)]
    max_sql_length: usize,
    /// Most bound parameters of one exec.
    #[arg(long, default_value_t = 100)]
    max_sql_params: usize,
    /// Most runs of one exec-many (a bulk statement).
    #[arg(long, default_value_t = 10_000)]
    max_sql_batch_rows: usize,
    /// Memory SQLite may hold for one object's SQL (statements, cache, sorts, temporary
    /// tables); past it the event fails.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    max_sql_memory: usize,
    /// Largest result one storage call returns (rows of an exec, entries of a list).
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    max_result_size: usize,
    /// The admin API's bearer token (at least 16 characters). Prefer WDO_ADMIN_TOKEN or
    /// --admin-token-file: a flag shows in `ps`. Default: `<data>/admin-token`, made on first
    /// start.
    #[arg(long, env = "WDO_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file holding the admin API's bearer token.
    #[arg(long, conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Folder for compiled components (default: `<data>/cache`); hosts may share one.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Versions of each class a deploy keeps for rollback; older components are deleted.
    #[arg(long, default_value_t = 10)]
    keep_versions: usize,
    /// Client connections open at once, WebSockets included (lowered to fit the open-file
    /// limit); past it new ones are answered 503 and closed.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Time a client has to send a complete request head.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Close a keep-alive connection that sent nothing for this long after its last response.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    keep_alive_timeout: Duration,
    /// Time a request body may take, on top of its size at --min-body-rate.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// Bytes per second a request body must keep up (e.g. 64KiB).
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    min_body_rate: usize,
    /// Error responses also show the guest's recent output and the host's file paths (for
    /// development; by default those go to the log only).
    #[arg(long)]
    debug_errors: bool,
    /// `text`, or `json`: one object per line (time, level, class, object id, event kind,
    /// request id, outcome, duration, message). `WDO_LOG` filters either (e.g.
    /// `WDO_LOG=info,wdo::event=debug` logs every event).
    #[arg(long, default_value = "text", env = "WDO_LOG_FORMAT")]
    log_format: wdo_host::LogFormat,
    /// `on`: keep metrics for `/_wdo/metrics` (Prometheus text, behind the admin token or on
    /// --admin-listen); `off` keeps none.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    metrics: bool,
    /// Serve `POST /_call/<class>/<name>/<method>`: any object's methods over HTTP. It goes
    /// around a worker (where an application checks who may do what), so it is off by default.
    #[arg(long)]
    call_route: bool,
    /// Time an outbound request of a guest has to resolve its host and connect (TLS included).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    outbound_connect_timeout: Duration,
    /// Largest response body an outbound request may receive (e.g. 32MiB).
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    max_outbound_response: usize,
    /// Outbound requests one object (or one worker request) may have in flight; more wait.
    #[arg(long, default_value_t = 6)]
    max_outbound_per_object: usize,
    /// Outbound connections (guests' requests and WebSocket clients) open at once, host-wide;
    /// lowered to an eighth of the open-file limit.
    #[arg(long, default_value_t = 4096)]
    max_outbound_connections: usize,
    /// Largest component a deploy may upload.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    max_component_size: usize,
    /// Ship every commit of every object, and the secrets, deploys and components, to a backup
    /// store: `file:///path` or `s3://bucket/prefix` (S3 settings from AWS_ENDPOINT_URL,
    /// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). `wdo restore` reads it back.
    #[arg(long)]
    backup: Option<String>,
    /// How often commits are shipped: what a crash of the machine can lose at most.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    backup_interval: Duration,
    /// `async` (the default): commits ship within --backup-interval and replies do not wait (a
    /// lost machine loses at most that window). `sync` (the default with --cluster): a reply
    /// leaves only once its commit is in the store (commits waiting together ship as one batch);
    /// while the store does not answer, writes get 503.
    #[arg(long)]
    backup_mode: Option<BackupMode>,
    /// How far back `wdo restore --at` can go; older history is removed from the store.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    backup_retention: Duration,
    /// Write a snapshot of every object to the store once the batches since the last one
    /// weigh this much and more than that snapshot: a restore reads a snapshot and what came
    /// after it, not all history.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    backup_snapshot_every: usize,
    /// Join a cluster of hosts whose membership and object ownership live in etcd:
    /// etcd://HOST:PORT[,HOST:PORT...]. Each object then runs on one host at a time and any
    /// host forwards to it. Needs --backup (in sync mode).
    #[arg(long, requires = "backup")]
    cluster: Option<String>,
    /// With --cluster: the URL the other hosts reach this one at (default: http:// and the
    /// --listen address, which must then not be 0.0.0.0).
    #[arg(long, requires = "cluster")]
    advertise: Option<String>,
    /// With --cluster: how long this host's lease in etcd lasts without renewal, which is how
    /// soon the objects of a host that died move to the others.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    cluster_lease: Duration,
    /// With --cluster: how often an object held that long is stored whole in the backup store
    /// (it pauses for a moment), so that a host taking it over after a crash reads at most this
    /// much of the dead host's log.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    cluster_checkpoint: Duration,
}

/// Like `parse_size`, but `KB`/`MB` are powers of 1000 (the hosted service's 100 KB statements).
fn parse_decimal_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    for (unit, factor) in [("kb", 1000), ("mb", 1000 * 1000)] {
        if let Some(number) = lower.strip_suffix(unit) {
            let n: usize = number.trim().parse().map_err(|_| format!("`{text}` is not a size like 100KB"))?;
            return Ok(n * factor);
        }
    }
    parse_size(text)
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("`{other}`: say on or off")),
    }
}

/// Parses `1048576`, `64KiB`, `128MiB`, `1GiB` (also `k`, `m`, `g`, `KB`, ...: all powers of 1024).
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number: usize = text[..digits].parse().map_err(|_| format!("`{text}` is not a size like 128MiB"))?;
    let shift = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        unit => return Err(format!("unknown size unit `{unit}` (use KiB, MiB or GiB)")),
    };
    number.checked_mul(1 << shift).ok_or_else(|| format!("`{text}` is too large"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => wdo_host::LogFormat::Text,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WDO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    wdo_host::install_logging(format, filter);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the runtime");
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Deploy(args) => runtime.block_on(deploy::deploy(args)),
        Command::Versions(args) => runtime.block_on(deploy::versions(args)),
        Command::Rollback(args) => runtime.block_on(deploy::rollback(args)),
        Command::New(args) => new::new(args),
        Command::Secret(args) => runtime.block_on(secret::secret(args)),
        Command::Build(args) => build(args),
        Command::Compile(args) => compile(args),
        Command::Restore(args) => runtime.block_on(restore::restore(args)),
        Command::Cluster(args) => runtime.block_on(cluster::cluster(args)),
        Command::Tail(args) => runtime.block_on(observe::tail(args)),
        Command::Inspect(args) => runtime.block_on(observe::inspect(args)),
        Command::Kv(args) => runtime.block_on(observe::kv(args)),
        Command::Sql(args) => runtime.block_on(observe::sql(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wdo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), admin_client::Failure> {
    wdo_host::raise_open_file_limit();
    // Everything the host creates (databases, WAL files, secrets, compiled code) is for its own
    // user only: files 0600, folders 0700.
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe { libc::umask(0o077) };
    let manifest =
        args.manifest.as_deref().map(|path| tokio::task::block_in_place(|| load_manifest(path))).transpose()?;
    let config = Config {
        data_dir: args.data,
        durability: args.durability,
        idle_timeout: args.idle_timeout,
        object_idle_timeout: args.object_idle_timeout,
        cpu_limit: args.cpu_limit,
        event_timeout: args.event_timeout,
        memory_limit: args.memory_limit,
        max_request_body: args.max_request_body,
        max_buffered_input: args.max_buffered_input,
        max_object_input: args.max_object_input,
        max_open_objects: args.max_open_objects,
        max_instances: args.max_instances,
        max_resident: args.max_resident.map_or_else(wdo_host::default_max_resident, |bytes| bytes as u64),
        backup: args.backup.clone(),
        backup_interval: args.backup_interval,
        backup_mode: args.backup_mode.unwrap_or(match args.cluster {
            Some(_) => BackupMode::Sync,
            None => BackupMode::Async,
        }),
        backup_snapshot_every: args.backup_snapshot_every as u64,
        backup_retention: args.backup_retention,
        mailbox_capacity: args.mailbox_capacity,
        alarm_retry_base: args.alarm_retry_base,
        max_call_payload: args.max_call_payload,
        max_websocket_message: args.max_websocket_message,
        max_websocket_buffer: args.max_websocket_buffer,
        max_websockets_per_object: args.max_websockets_per_object,
        websocket_ping_interval: args.websocket_ping_interval,
        max_event_sends: args.max_event_sends,
        storage: wdo_host::StorageLimits {
            max_value_size: args.max_value_size,
            max_batch_keys: args.max_batch_keys,
            max_storage: args.max_storage as u64,
            max_sql_length: args.max_sql_length,
            max_sql_params: args.max_sql_params,
            max_sql_batch_rows: args.max_sql_batch_rows,
            max_sql_memory: args.max_sql_memory,
            max_result_size: args.max_result_size,
        },
        admin_token: match (args.admin_token, &args.admin_token_file) {
            (Some(token), _) => Some(wdo_host::Secret(token)),
            (None, Some(file)) => Some(wdo_host::Secret(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read the admin token file {}: {e}", file.display()))?
                    .trim()
                    .to_string(),
            )),
            (None, None) => None,
        },
        max_component_size: args.max_component_size,
        cache_dir: args.cache_dir,
        keep_versions: args.keep_versions,
        call_route: args.call_route,
        debug_errors: args.debug_errors,
        metrics: args.metrics,
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
        keep_alive_timeout: args.keep_alive_timeout,
        body_timeout: args.body_timeout,
        min_body_rate: args.min_body_rate,
        outbound: wdo_host::OutboundLimits {
            connect_timeout: args.outbound_connect_timeout,
            max_response: args.max_outbound_response as u64,
            per_object: args.max_outbound_per_object.max(1),
            max_connections: args.max_outbound_connections.max(1),
        },
        ..Config::default()
    };
    let token_file = config.data_dir.join("admin-token");
    let token_given = config.admin_token.is_some();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr()?;
    let cluster = match &args.cluster {
        Some(etcd) => {
            let advertise = match &args.advertise {
                Some(url) => url.clone(),
                None if address.ip().is_unspecified() => {
                    return Err(format!(
                        "--cluster: this host listens on {address}; say at which address the other hosts reach it \
                         with --advertise http://ADDR:PORT"
                    )
                    .into());
                }
                None => format!("http://{address}"),
            };
            let settings = wdo_host::ClusterSettings {
                etcd: wdo_host::ClusterSettings::parse_etcd(etcd)?,
                advertise,
                lease: args.cluster_lease,
                checkpoint: args.cluster_checkpoint,
            };
            Some(wdo_host::Cluster::join(&settings, &config.data_dir).await?)
        }
        None => None,
    };
    let builder = Host::builder().config(config);
    let builder = match &cluster {
        Some(cluster) => builder.cluster(cluster.clone()),
        None => builder,
    };
    let builder = match &manifest {
        Some(manifest) => builder.manifest(manifest),
        None => builder,
    };
    // The host listens at once; its classes compile meanwhile (each serves when ready).
    let (host, startup) = tokio::task::block_in_place(|| builder.start())?;
    // Tests and scripts read this line to learn the port.
    let classes: Vec<String> = manifest.iter().flat_map(|m| m.classes.iter().map(|c| c.name.clone())).collect();
    let classes = match (classes.is_empty(), host.class_names()) {
        (false, _) => classes.join(", "),
        (true, deployed) if !deployed.is_empty() => deployed.join(", "),
        _ => "none yet: deploy with `wdo deploy`".into(),
    };
    println!("wdo listening on http://{address} (classes: {classes})");
    let starting = {
        let host = host.clone();
        tokio::task::spawn_blocking(move || startup.run(&host))
    };
    if !token_given {
        tracing::info!("admin API token in {}", token_file.display());
    }
    let serving = async {
        let Some(admin_address) = args.admin_listen else {
            return host.serve(listener).await;
        };
        let admin = tokio::net::TcpListener::bind(admin_address)
            .await
            .map_err(|e| wdo_host::Error::Internal(format!("cannot listen on {admin_address}: {e}")))?;
        let bound =
            admin.local_addr().map_err(|e| wdo_host::Error::Internal(format!("the admin listener's address: {e}")))?;
        println!("wdo admin API on http://{bound}");
        tokio::try_join!(host.serve_routes(listener, Routes::Public), host.serve_routes(admin, Routes::Admin)).map(drop)
    };
    // A start that fails (a component that does not compile, say) stops the host: it cannot
    // serve what it was given.
    let since = std::time::Instant::now();
    let started = async {
        match starting.await {
            Ok(Ok(())) => {
                // Scripts (and the tests) that want every class ready wait for this line.
                // Not println!: a reader that stopped after the first line must not stop the host.
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "wdo ready: every class serves ({:.1?} after listening)", since.elapsed());
                let _ = out.flush();
                std::future::pending().await
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(wdo_host::Error::Internal(format!("the start-up task failed: {e}"))),
        }
    };
    tokio::select! {
        result = serving => result?,
        result = started => result?,
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            host.flush_backup().await;
            if let Some(cluster) = &cluster {
                cluster.leave().await;
            }
        }
    }
    Ok(())
}

/// Reads a manifest: a wdo.toml as it is, a wrangler config by building its project.
fn load_manifest(path: &std::path::Path) -> Result<Manifest, admin_client::Failure> {
    if wrangler::is_wrangler_config(path) { Ok(wrangler::load(path)?) } else { Ok(Manifest::load(path)?) }
}

/// The manifest of the project in this folder: wdo.toml, else a wrangler config.
fn default_manifest() -> PathBuf {
    ["wdo.toml", "wrangler.toml", "wrangler.jsonc", "wrangler.json"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("wdo.toml"))
}

fn build(args: BuildArgs) -> Result<(), admin_client::Failure> {
    let path = args.config.unwrap_or_else(default_manifest);
    if !wrangler::is_wrangler_config(&path) {
        return Err(format!(
            "{}: `wdo build` builds wrangler projects (wrangler.toml, .json or .jsonc)",
            path.display()
        )
        .into());
    }
    let manifest = wrangler::load(&path)?;
    for class in &manifest.classes {
        println!("class {}: {}", class.name, class.component.display());
    }
    if let Some(worker) = &manifest.worker {
        println!("worker: {}", worker.component.display());
    }
    Ok(())
}

fn compile(args: CompileArgs) -> Result<(), admin_client::Failure> {
    let path = args.manifest.unwrap_or_else(default_manifest);
    let manifest = load_manifest(&path)?;
    let cache = args.cache_dir.unwrap_or_else(|| args.data.join("cache"));
    let config = Config { memory_limit: args.memory_limit, ..Config::default() };
    let started = std::time::Instant::now();
    let total = manifest.classes.len() + usize::from(manifest.worker.is_some());
    let done = std::sync::atomic::AtomicUsize::new(0);
    println!("compiling {total} component(s) of {} into {}", path.display(), cache.display());
    let report = wdo_host::compile_manifest(&manifest, &cache, &config, |component| {
        let done = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let how = if component.compiled { "compiled" } else { "already in the cache" };
        println!("[{done}/{total}] {}: {how} ({:.1?})", component.name, started.elapsed());
    })?;
    let functions = report.functions;
    if functions.hits + functions.added > 0 {
        println!("functions: {} compiled, {} from the cache", functions.added, functions.hits);
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert!(parse_size("12 parsecs").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("MiB").is_err());
        assert_eq!(super::parse_decimal_size("100KB"), Ok(100_000));
        assert_eq!(super::parse_decimal_size("64KiB"), Ok(64 << 10));
    }
}
