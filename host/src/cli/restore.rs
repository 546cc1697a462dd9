//! `wdo restore --from URL --data DIR [--at TIME]`: a data folder rebuilt from a backup store.

use super::admin_client::{AdminClient, Connection, Failure};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["from", "server"]))]
pub struct RestoreArgs {
    /// A whole host: the backup store a host shipped to (its --backup URL); --data names the
    /// folder to build (it must not exist yet, or be empty), which `wdo serve --data` serves.
    #[arg(long, requires = "data", conflicts_with_all = ["class", "name"])]
    from: Option<String>,
    /// One object on a running host (which must have --backup): the host's address. Its next
    /// event sees the object as it was at --at; the restore is itself a change in the backup,
    /// so it can be undone. The admin token comes from --token, WDO_ADMIN_TOKEN or the
    /// admin-token file in --data (default .wdo).
    #[arg(long, env = "WDO_SERVER", requires_all = ["class", "name"])]
    server: Option<String>,
    /// The host's admin token (with --server).
    #[arg(long, env = "WDO_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// With --from: the data folder to build. With --server: the host's data folder, to read
    /// its admin token when none is given (default .wdo).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The time to go back to, RFC 3339 (e.g. 2026-12-01T21:00:00.250Z). Default: the latest.
    #[arg(long, value_parser = parse_time)]
    at: Option<u64>,
    /// With --server: the object's class.
    class: Option<String>,
    /// With --server: the object's name.
    name: Option<String>,
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
fn parse_time(text: &str) -> Result<u64, String> {
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time like 2026-12-01T21:00:00.250Z: {e}"))?;
    let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("`{text}` is before 1970"))?;
    Ok(since.as_millis() as u64)
}

pub async fn restore(args: RestoreArgs) -> Result<(), Failure> {
    if let Some(server) = &args.server {
        return restore_object(&args, server).await;
    }
    let (Some(from), Some(data)) = (&args.from, &args.data) else {
        return Err("name the backup store (--from URL) and the folder to build (--data DIR)".into());
    };
    let restored = wdo_host::restore_from_backup(from, data, args.at).await?;
    println!(
        "restored {} objects ({} commits, {} alarms) and {} files from {} batches into {}",
        restored.objects,
        restored.commits,
        restored.alarms,
        restored.files,
        restored.batches,
        data.display()
    );
    Ok(())
}

/// `wdo restore --server URL CLASS NAME [--at TIME]`, through the admin API.
async fn restore_object(args: &RestoreArgs, server: &str) -> Result<(), Failure> {
    let (Some(class), Some(name)) = (&args.class, &args.name) else {
        return Err("name the object: wdo restore --server URL CLASS NAME [--at TIME]".into());
    };
    let data = args.data.clone().unwrap_or_else(|| PathBuf::from(".wdo"));
    let connection = Connection::new(server, args.token.clone(), data);
    let client = AdminClient::connect(&connection)?;
    let path = format!("restore/{}/{}", encode(class), encode(name));
    let answer: serde_json::Value = client.post_json(&path, &serde_json::json!({ "at_ms": args.at })).await?.json()?;
    let when = match args.at {
        Some(ms) => {
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
        }
        None => "its latest commit".into(),
    };
    println!("restored {class}/{name} as of {when} ({} bytes); its next event sees that state", answer["bytes"]);
    Ok(())
}

/// A path segment, percent-encoded.
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}
