//! `wdo restore --from URL --data DIR [--at TIME]`: a data folder rebuilt from a backup store.

use super::admin_client::Failure;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup store a host shipped to (its --backup URL).
    #[arg(long)]
    from: String,
    /// The data folder to build (must not exist yet, or be empty); `wdo serve --data` serves it.
    #[arg(long)]
    data: PathBuf,
    /// The time to go back to, RFC 3339 (e.g. 2026-12-01T21:00:00.250Z). Default: the latest.
    #[arg(long, value_parser = parse_time)]
    at: Option<u64>,
}

/// Milliseconds since the Unix epoch of an RFC 3339 time.
fn parse_time(text: &str) -> Result<u64, String> {
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time like 2026-12-01T21:00:00.250Z: {e}"))?;
    let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("`{text}` is before 1970"))?;
    Ok(since.as_millis() as u64)
}

pub async fn restore(args: RestoreArgs) -> Result<(), Failure> {
    let restored = wdo_host::restore_from_backup(&args.from, &args.data, args.at).await?;
    println!(
        "restored {} objects ({} commits, {} alarms) and {} files from {} batches into {}",
        restored.objects,
        restored.commits,
        restored.alarms,
        restored.files,
        restored.batches,
        args.data.display()
    );
    Ok(())
}
