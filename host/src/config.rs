//! Settings of a host: where data lives, how durable commits are, and the limits every object
//! runs under. Every field has the default a user of a durable-object runtime expects.

use std::path::PathBuf;
use std::time::Duration;

/// How far a commit goes before the reply to the event that made it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: an acknowledged write survives `kill -9` of the host
    /// (it is in the operating system's cache), but not a power loss.
    #[default]
    Normal,
    /// WAL with `synchronous=FULL`: the WAL is fsynced before the reply leaves the host, so an
    /// acknowledged write survives a power loss too.
    Full,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" => Ok(Durability::Normal),
            "full" => Ok(Durability::Full),
            other => Err(format!("unknown durability `{other}` (expected `normal` or `full`)")),
        }
    }
}

/// When a reply waits for the backup store (`--backup-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackupMode {
    /// Commits ship within `--backup-interval`; a reply does not wait for them: losing the
    /// whole machine loses at most that window.
    #[default]
    Async,
    /// A reply (and the WebSocket messages and outbound requests its event made) leaves only
    /// once its commit is in the store; while the store does not answer, writes get 503.
    Sync,
}

impl std::str::FromStr for BackupMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "async" => Ok(BackupMode::Async),
            "sync" => Ok(BackupMode::Sync),
            other => Err(format!("unknown backup mode `{other}` (expected `async` or `sync`)")),
        }
    }
}

/// A secret that `Debug` does not print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Configuration of a [`Host`](crate::Host).
#[derive(Debug, Clone)]
pub struct Config {
    /// Folder for object databases and the compiled-component cache.
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// An instance with no event for this long is dropped from memory; its storage stays.
    pub idle_timeout: Duration,
    /// An object with no event for this long also closes its database and leaves the directory.
    pub object_idle_timeout: Duration,
    /// CPU time one event may use before it is stopped (measured in epoch ticks).
    pub cpu_limit: Duration,
    /// Wall-clock time one event may take, the calls it waits on included; a call to another
    /// object inherits what is left of its caller's.
    pub event_timeout: Duration,
    /// Linear memory one instance may grow to.
    pub memory_limit: usize,
    /// Largest HTTP request body the gateway accepts.
    pub max_request_body: usize,
    /// Bytes of client input (request bodies, WebSocket messages) the host holds at once, all
    /// objects together; past it new requests get 503 and sockets wait.
    pub max_buffered_input: usize,
    /// Bytes of its clients' WebSocket messages one object may have waiting; past it its
    /// sockets are read no further until it catches up.
    pub max_object_input: usize,
    /// Objects whose database may be open at once: a bound on memory (an open connection to
    /// a small database with 1 KiB pages takes ~90 KiB), not on file descriptors, which the
    /// storage layer parks and reopens to fit the process's open-file limit. Default: [`default_max_open_objects`].
    pub max_open_objects: usize,
    /// Objects that may hold an instance at once, one whose component has several linear
    /// memories counting once for each; past it, the least recently used idle object drops its
    /// instance (keeping its database open) and makes a new one at its next event. Each place
    /// reserves over 4 GiB of address space, so a library host keeps 2,048 (a process may hold
    /// several); `wdo serve` takes [`default_max_instances`].
    pub max_instances: usize,
    /// The process's resident memory past which the host lowers the bound on live instances
    /// (dropping the least recently used idle ones) until it is back under; 0: no such bound.
    /// Default: [`default_max_resident`].
    pub max_resident: u64,
    /// Where every commit and the data folder's files are shipped (`file:///path` or
    /// `s3://bucket/prefix`); `None`: no backup.
    pub backup: Option<String>,
    /// How often queued commits are shipped (the most an async backup can lose).
    pub backup_interval: Duration,
    /// Whether replies wait for their commits to be in the backup store.
    pub backup_mode: BackupMode,
    /// Log bytes past the last snapshot that make a new one due, at least (a snapshot is also
    /// due only once the log outweighs the last one).
    pub backup_snapshot_every: u64,
    /// How far back a restore can go; older history is deleted from the store.
    pub backup_retention: Duration,
    /// Events that may wait in one object's mailbox; past that, callers are told it is overloaded.
    pub mailbox_capacity: usize,
    /// Events committed together at most (group commit).
    pub max_batch: usize,
    /// Largest WebSocket message a client may send; over it the socket closes with 1009.
    pub max_websocket_message: usize,
    /// Bytes that may wait to be written to one WebSocket client; past it the client is cut off
    /// with 1008. At least `max_websocket_message`.
    pub max_websocket_buffer: usize,
    /// WebSockets one object may hold open (the hosted service's 32,768).
    pub max_websockets_per_object: usize,
    /// A WebSocket client silent this long is pinged, and closed if it stays silent as long
    /// again.
    pub websocket_ping_interval: Duration,
    /// Bytes of WebSocket messages one event may queue for sending; a message sent to many
    /// sockets in a row counts once.
    pub max_event_sends: usize,
    /// Largest argument or result of a call between objects.
    pub max_call_payload: usize,
    /// The first retry of a failed alarm comes after this; each next one waits twice as long.
    pub alarm_retry_base: Duration,
    /// Limits of every storage call: value size, batch size, storage per object, SQL length
    /// and parameters.
    pub storage: crate::storage::StorageLimits,
    /// The bearer token of the admin API (`/_wdo/admin/...`). `None`: the host reads
    /// `<data>/admin-token`, creating it (mode 0600) on first start.
    pub admin_token: Option<Secret>,
    /// Largest component the admin API accepts.
    pub max_component_size: usize,
    /// Where compiled components are kept; `None`: `<data>/cache`. Hosts may share one (files
    /// are written atomically and named by content and engine fingerprint).
    pub cache_dir: Option<PathBuf>,
    /// Versions of each class (and of the worker) a deploy keeps for `wdo rollback`. Older ones
    /// are forgotten, and a component no kept version uses is deleted with its compiled code;
    /// the version that runs always stays.
    pub keep_versions: usize,
    /// Client connections open at once (WebSockets included); past it a new one is answered 503
    /// and closed. The host lowers it to what the open-file limit allows.
    pub max_connections: usize,
    /// A request head must arrive within this long of the connection starting to wait for it.
    pub header_timeout: Duration,
    /// A connection that sent nothing since its last response for this long is closed.
    pub keep_alive_timeout: Duration,
    /// A request body may take this long, plus the time its size takes at `min_body_rate`.
    pub body_timeout: Duration,
    /// Bytes per second a request body must keep up, past `body_timeout`.
    pub min_body_rate: usize,
    /// Error responses also carry what clients should not see in production: the guest's
    /// recent output and the host's file paths (for development).
    pub debug_errors: bool,
    /// Keep metrics for `/_wdo/metrics` (on by default; off saves a few atomic adds per event).
    pub metrics: bool,
    /// Serve `POST /_call/<class>/<name>/<method>`, which calls any object's methods directly,
    /// around a worker's authentication. Off unless asked for.
    pub call_route: bool,
    /// Bounds of guests' outbound HTTP requests.
    pub outbound: crate::outbound::OutboundLimits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".wdo"),
            durability: Durability::Normal,
            idle_timeout: Duration::from_secs(10),
            object_idle_timeout: Duration::from_secs(60),
            cpu_limit: Duration::from_secs(30),
            event_timeout: Duration::from_secs(60),
            memory_limit: 128 << 20,
            max_request_body: 32 << 20,
            max_buffered_input: 1 << 30,
            max_object_input: 64 << 20,
            max_open_objects: default_max_open_objects(),
            max_instances: 2048,
            max_resident: default_max_resident(),
            backup: None,
            backup_interval: Duration::from_secs(1),
            backup_mode: BackupMode::Async,
            backup_snapshot_every: 64 << 20,
            backup_retention: Duration::from_secs(30 * 24 * 3600),
            mailbox_capacity: 4096,
            max_batch: 64,
            alarm_retry_base: Duration::from_secs(2),
            max_call_payload: 32 << 20,
            max_websocket_message: 32 << 20,
            max_websocket_buffer: 32 << 20,
            max_websockets_per_object: 32_768,
            websocket_ping_interval: Duration::from_secs(30),
            max_event_sends: 64 << 20,
            storage: crate::storage::StorageLimits::default(),
            admin_token: None,
            max_component_size: 64 << 20,
            cache_dir: None,
            keep_versions: 10,
            call_route: false,
            debug_errors: false,
            metrics: true,
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(10),
            min_body_rate: 64 << 10,
            outbound: crate::outbound::OutboundLimits {
                connect_timeout: Duration::from_secs(10),
                max_response: 32 << 20,
                per_object: 6,
                max_connections: 4096,
            },
        }
    }
}

/// The default bound on open databases: one per 256 KiB of an eighth of the machine's memory,
/// from 1,024 to 16,384 (12,288 on a 24 GiB machine, 1,024 on one of 2 GiB).
pub fn default_max_open_objects() -> usize {
    ((machine_memory() / 8 / (256 << 10)) as usize).clamp(1024, 16384)
}

/// Memory mappings one place under `--max-instances` comes to take (measured): 2 for its pool
/// slot's stack and guard page, mapped when the pool is made, and 4 for a linear memory once
/// used (the image, the zeroed parts around it and the rest of the reservation), which it
/// keeps once freed. An instance takes a place per memory (`object::residency`).
pub const MAPPINGS_PER_INSTANCE: u64 = 6;

/// Memory mappings of the pool's slots past `--max-instances` (`engine::EXTRA_SLOTS`, a stack
/// and two memories each).
const MAPPINGS_EXTRA: u64 = crate::engine::EXTRA_SLOTS as u64 * (2 + 2 * 4);

/// Memory mappings kept for everything else in the process (code, threads, the allocator).
pub const MAPPINGS_KEPT: u64 = 4096;

/// The kernel's bound on one process's memory mappings (`vm.max_map_count`).
pub fn max_map_count() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(65530)
}

/// The most instances (of one memory) that `allowed` memory mappings hold.
fn instances_within(allowed: u64) -> u64 {
    allowed.saturating_sub(MAPPINGS_KEPT + MAPPINGS_EXTRA) / MAPPINGS_PER_INSTANCE
}

/// Refuses a bound on instances that `allowed` memory mappings (`vm.max_map_count`) cannot
/// hold: instances past them would fail to start one by one, at random, under load.
pub fn check_map_count(max_instances: usize, allowed: u64) -> Result<(), String> {
    if max_instances as u64 > instances_within(allowed) {
        let needed = (max_instances as u64) * MAPPINGS_PER_INSTANCE + MAPPINGS_KEPT + MAPPINGS_EXTRA;
        return Err(format!(
            "--max-instances {max_instances} needs about {needed} memory mappings and the kernel allows {allowed} \
             (vm.max_map_count); lower --max-instances (at most {}) or raise vm.max_map_count",
            instances_within(allowed)
        ));
    }
    Ok(())
}

/// The default bound on live instances for a host that owns its process: as many as the
/// kernel's memory mappings and the address space allow (each memory reserves over 4 GiB of
/// the 128 TiB a process has), at most 12,288: 10,072 with Linux's default `vm.max_map_count`
/// (65,530; many distributions now ship 1,048,576). An instance of several memories counts
/// once for each. Memory is bounded apart, by [`Config::max_resident`].
pub fn default_max_instances() -> usize {
    let by_mappings = instances_within(max_map_count());
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit.
    let address_space = match unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } {
        0 if limit.rlim_cur != libc::RLIM_INFINITY => limit.rlim_cur / 2 / (4 << 30),
        _ => u64::MAX,
    };
    by_mappings.min(address_space).clamp(256, 12_288) as usize
}

/// The machine's memory, or the memory its cgroup (a container) may use if that is less.
pub fn machine_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page_size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let physical = (pages.max(0) as u64).saturating_mul(page_size.max(0) as u64);
    // cgroup v2: `0::/path` in /proc/self/cgroup, its limit in that folder's memory.max.
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|text| {
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
        let max = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).ok()?;
        max.trim().parse::<u64>().ok()
    });
    cgroup.map_or(physical, |c| c.min(physical))
}

/// The default resident-memory budget: half of [`machine_memory`].
pub fn default_max_resident() -> u64 {
    machine_memory() / 2
}

#[cfg(test)]
mod tests {
    #[test]
    fn instances_past_the_kernels_memory_mappings_are_refused_naming_the_flag_and_the_sysctl() {
        let err = super::check_map_count(11_000, 65_530).unwrap_err();
        assert!(err.contains("--max-instances 11000") && err.contains("vm.max_map_count"), "{err}");
        assert!(err.contains("at most 10072"), "{err}");
        super::check_map_count(10_072, 65_530).unwrap();
        // The default fits what this machine allows.
        super::check_map_count(super::default_max_instances(), super::max_map_count()).unwrap();
    }

    #[test]
    fn debug_output_never_shows_the_admin_token() {
        let config =
            super::Config { admin_token: Some(super::Secret("hunter2-hunter2-hunter2".into())), ..Default::default() };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2") && printed.contains("Secret(..)"), "{printed}");
    }
}
