//! # wdo-host
//!
//! The wdo engine as a library: durable objects written as WebAssembly components, one
//! instance per object, each with its own transactional SQLite storage. The `wdo` binary is a
//! thin command line over this crate; other Rust programs can embed the same host.
//!
//! ```no_run
#![doc = include_str!("../examples/embed.rs")]
//! ```
//!
//! What a request goes through: [`gateway`](crate::Host::serve) (HTTP) → the object directory
//! (one actor per object) → the object's actor (one event at a time, one transaction per batch)
//! → its instance (a wasmtime store) → the object's SQLite file. `ARCHITECTURE.md` at the
//! repository root walks through each module.

mod alarms;
mod backup;
mod bindings;
mod budget;
mod cluster;
mod config;
mod cpu;
mod deploy;
mod engine;
mod env;
mod error;
mod files;
mod gateway;
mod host;
mod ids;
mod manifest;
mod message;
mod object;
mod observe;
mod outbound;
mod precompile;
mod registry;
mod rpc;
mod sockets;
mod storage;
mod worker;

pub use backup::restore::Restored;
pub use cluster::{Cluster, ClusterSettings, Member};
pub use config::{
    BackupMode, Config, Durability, Secret, default_max_instances, default_max_open_objects, default_max_resident,
};
pub use deploy::{Action, Change, ClassPlan, DeployState, Plan, Target, Track, VersionRecord, WORKER};
pub use engine::FunctionCacheStats;
pub use error::{Error, Result};
pub use gateway::Routes;
pub use host::{Host, HostBuilder, Instances, Startup, raise_open_file_limit};
pub use manifest::{ClassSpec, Manifest, Settings, WorkerSpec, check_var, validate_class_name};
pub use message::{Request, Response};
pub use observe::LogFormat;
pub use observe::log::install as install_logging;
pub use outbound::OutboundLimits;
pub use precompile::{CompileReport, Precompiled, compile_manifest};
pub use storage::StorageLimits;

/// Rebuilds the data folder `data_dir` (new or empty) from the backup store at `url` (what a
/// host's `--backup` named), as of `at_ms` milliseconds since the Unix epoch (`None`: the
/// latest shipped).
pub async fn restore_from_backup(
    url: &str,
    data_dir: &std::path::Path,
    at_ms: Option<u64>,
) -> std::result::Result<Restored, String> {
    let store = backup::BackupStore::open(url)?;
    backup::restore::restore(&store, data_dir, at_ms).await
}
