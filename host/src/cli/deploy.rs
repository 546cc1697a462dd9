//! `wdo deploy`, `wdo versions` and `wdo rollback`: the admin API from the command line.

use super::admin_client::{AdminClient, Connection, Failure};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use wdo_host::{Change, DeployState, Settings, WORKER};

#[derive(clap::Args)]
pub struct DeployArgs {
    /// The manifest to deploy: a wdo.toml, or a wrangler.toml / wrangler.json(c) (built first).
    /// Default: the first of those in this folder.
    manifest: Option<PathBuf>,
    #[command(flatten)]
    connection: Connection,
    /// Delete the classes the manifest no longer lists, with all of their objects' data.
    #[arg(long)]
    allow_delete: bool,
    /// Print a machine-readable report (JSON) instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct VersionsArgs {
    /// Only this class (`[worker]` for the worker).
    class: Option<String>,
    #[command(flatten)]
    connection: Connection,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The class to switch back (`[worker]`, or `--worker`, for the worker).
    class: Option<String>,
    /// The version to switch to (default: the one before the version that runs).
    version: Option<String>,
    /// Roll back the worker.
    #[arg(long)]
    worker: bool,
    #[command(flatten)]
    connection: Connection,
    #[arg(long)]
    json: bool,
}

/// One component of the manifest, as the deploy goes.
struct Shipped {
    class: String,
    hash: String,
    /// Sent now (false: the host had it).
    uploaded: bool,
    /// Compiled now (false: unchanged, or the host had it compiled).
    compiled: bool,
    compile_ms: u64,
    renamed_from: Option<String>,
    settings: Settings,
}

#[derive(Serialize)]
struct Report {
    server: String,
    changes: Vec<ReportLine>,
}

#[derive(Serialize)]
struct ReportLine {
    #[serde(flatten)]
    change: Change,
    uploaded: bool,
    compile_ms: u64,
}

pub async fn deploy(args: DeployArgs) -> Result<(), Failure> {
    let path = args.manifest.clone().unwrap_or_else(super::default_manifest);
    let manifest = tokio::task::block_in_place(|| super::load_manifest(&path))?;
    let client = AdminClient::connect(&args.connection)?;
    let deployed: DeployState = client.get("deployed").await?.json()?;
    let progress = Progress::new(!args.json);
    // A wrangler config's renames apply to classes that are deployed under their old name.
    let renamed_from = |from: &Option<String>| {
        from.clone().filter(|from| !manifest.renames_if_deployed || deployed.classes.contains_key(from))
    };
    let mut components: Vec<(String, PathBuf, Option<String>, Settings)> = manifest
        .classes
        .iter()
        .map(|c| (c.name.clone(), c.component.clone(), renamed_from(&c.renamed_from), c.settings.clone()))
        .collect();
    if let Some(worker) = &manifest.worker {
        components.push((WORKER.to_string(), worker.component.clone(), None, worker.settings.clone()));
    }

    // Upload and compile each changed component; the host switches nothing yet.
    let mut shipped = Vec::new();
    for (class, path, renamed_from, settings) in components {
        let bytes =
            std::fs::read(&path).map_err(|e| format!("class `{class}`: cannot read {}: {e}", path.display()))?;
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let running = if class == WORKER { deployed.worker.as_ref() } else { deployed.classes.get(&class) };
        let mut item = Shipped { class, hash, uploaded: false, compiled: false, compile_ms: 0, renamed_from, settings };
        if running.is_some_and(|t| t.current().hash == item.hash) {
            shipped.push(item);
            continue;
        }
        if client.head(&format!("components/{}", item.hash)).await?.status == 404 {
            let (label, size) = (item.class.clone(), bytes.len());
            let line = progress.clone();
            let reply = client
                .put_with_progress(&format!("components/{}", item.hash), bytes, move |sent, total| {
                    line.show(&format!("{label}: uploading {}% of {}", sent * 100 / total.max(1), human_size(size)))
                })
                .await?;
            let _: serde_json::Value = reply.json().map_err(|e| format!("{}: upload refused: {e}", item.class))?;
            item.uploaded = true;
        }
        progress.show(&format!("{}: compiling", item.class));
        let query = if item.class == WORKER { "worker".to_string() } else { format!("class={}", item.class) };
        let compiled: serde_json::Value = client
            .post_json(&format!("components/{}/compile?{query}", item.hash), &serde_json::json!({}))
            .await?
            .json()?;
        item.compiled = compiled["compiled"].as_bool().unwrap_or(false);
        item.compile_ms = compiled["millis"].as_u64().unwrap_or(0);
        shipped.push(item);
    }

    // Switch, all at once.
    progress.show("switching");
    let plan = serde_json::json!({
        "classes": shipped.iter().filter(|s| s.class != WORKER).map(|s| serde_json::json!({
            "name": s.class, "hash": s.hash, "renamed_from": s.renamed_from, "settings": s.settings,
        })).collect::<Vec<_>>(),
        "worker": shipped.iter().find(|s| s.class == WORKER).map(|s| &s.hash),
        "worker_settings": shipped.iter().find(|s| s.class == WORKER).map(|s| s.settings.clone()).unwrap_or_default(),
        "allow_delete": args.allow_delete,
        "delete": manifest.deleted,
    });
    let result: Result<ChangesReply, Failure> = client.post_json("deploy", &plan).await?.json();
    progress.clear();
    let changes = result.map_err(|e| format!("deploy refused: {e}"))?.changes;
    let lines = changes
        .into_iter()
        .map(|mut change| {
            let item = shipped.iter().find(|s| s.class == change.class);
            change.compiled |= item.is_some_and(|s| s.compiled);
            ReportLine {
                uploaded: item.is_some_and(|s| s.uploaded),
                compile_ms: item.map_or(0, |s| s.compile_ms),
                change,
            }
        })
        .collect();
    print_report(&Report { server: args.connection.server().to_string(), changes: lines }, args.json)
}

pub async fn versions(args: VersionsArgs) -> Result<(), Failure> {
    let client = AdminClient::connect(&args.connection)?;
    let deployed: DeployState = client.get("deployed").await?.json()?;
    let mut tracks: Vec<(String, &wdo_host::Track)> = deployed.classes.iter().map(|(n, t)| (n.clone(), t)).collect();
    if let Some(worker) = &deployed.worker {
        tracks.push((WORKER.to_string(), worker));
    }
    if let Some(only) = &args.class {
        tracks.retain(|(name, _)| name == only);
        if tracks.is_empty() {
            return Err(format!("no class `{only}` is deployed").into());
        }
    }
    if args.json {
        let value: serde_json::Map<String, serde_json::Value> = tracks
            .iter()
            .map(|(name, track)| (name.clone(), serde_json::to_value(track).expect("serializes")))
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if tracks.is_empty() {
        println!("nothing is deployed yet (deploy with `wdo deploy`)");
        return Ok(());
    }
    println!("{:<24} {:>8}  {:<14} {:>10}  DEPLOYED", "CLASS", "VERSION", "SHA256", "SIZE");
    for (name, track) in tracks {
        for v in &track.versions {
            let mark = if v.version == track.current { "*" } else { " " };
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(v.deployed_at);
            let when = humantime::format_rfc3339_seconds(when);
            println!(
                "{name:<24} {mark}{:>7}  {:<14} {:>10}  {when}",
                v.version,
                &v.hash[..12],
                human_size(v.size as usize)
            );
        }
    }
    println!("(* the version that runs)");
    Ok(())
}

pub async fn rollback(args: RollbackArgs) -> Result<(), Failure> {
    let (class, version) = match (args.worker, args.class, args.version) {
        (true, version, None) => (None, version),
        (false, Some(class), version) if class == WORKER => (None, version),
        (false, Some(class), version) => (Some(class), version),
        _ => return Err("usage: wdo rollback CLASS [VERSION], or wdo rollback --worker [VERSION]".into()),
    };
    let version = match version {
        Some(text) => Some(
            text.trim_start_matches('v')
                .parse::<u32>()
                .map_err(|_| format!("`{text}` is not a version number (see `wdo versions`)"))?,
        ),
        None => None,
    };
    let client = AdminClient::connect(&args.connection)?;
    let ask = serde_json::json!({ "class": class, "worker": class.is_none(), "version": version });
    let reply: ChangesReply =
        client.post_json("rollback", &ask).await?.json().map_err(|e| format!("rollback refused: {e}"))?;
    let changes =
        reply.changes.into_iter().map(|change| ReportLine { change, uploaded: false, compile_ms: 0 }).collect();
    print_report(&Report { server: args.connection.server().to_string(), changes }, args.json)
}

#[derive(serde::Deserialize)]
struct ChangesReply {
    changes: Vec<Change>,
}

fn print_report(report: &Report, json: bool) -> Result<(), Failure> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for line in &report.changes {
        let change = &line.change;
        let mut text = format!("{:<24} {:<11}", change.class, change.action.to_string());
        if let (Some(version), Some(hash)) = (change.version, &change.hash) {
            text.push_str(&format!(" v{version:<4} sha256:{}", &hash[..12]));
        }
        if let Some(from) = &change.renamed_from {
            text.push_str(&format!("  (was `{from}`)"));
        }
        if line.uploaded {
            text.push_str("  uploaded");
        }
        if change.compiled {
            text.push_str(&format!("  compiled in {:.1} s", line.compile_ms as f64 / 1000.0));
        }
        println!("{}", text.trim_end());
    }
    Ok(())
}

fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// One status line on a terminal, rewritten in place; nothing when stderr is not a terminal.
#[derive(Clone)]
struct Progress {
    enabled: bool,
}

impl Progress {
    fn new(wanted: bool) -> Self {
        Progress { enabled: wanted && std::io::stderr().is_terminal() }
    }

    fn show(&self, text: &str) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K{text}");
        }
    }

    fn clear(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
