//! Why a first-touch row can come out slow right after an earlier run: on ext4 without a
//! journal, the kernel does not reuse an inode freed in the last 60 s (6 min while its block is
//! dirty): each file created scans past them (`recently_deleted` in `fs/ext4/ialloc.c`, ~11% of
//! the host's CPU in perf after 50,000 files were removed). The scale group removes what it made
//! (over 170,000 files), so the next run's first touch pays for it. This notes when that holds.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long the kernel may skip a freed inode.
const RECENT: Duration = Duration::from_secs(360);

fn marker() -> std::path::PathBuf {
    crate::workspace().join("target/bench-scale-removed")
}

/// Removes `dir` (a data folder of `files` files) and remembers when.
pub fn remove(dir: tempfile::TempDir, files: u64) {
    drop(dir);
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let _ = std::fs::write(marker(), format!("{} {files}", since_epoch.as_secs()));
}

/// A line to print before first touch in `dir` if a run removed many files there lately and its
/// filesystem is ext4 without a journal.
pub fn recent_removal(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(marker()).ok()?;
    let (at, files) = text.trim().split_once(' ')?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at.parse().ok()?);
    let ago = SystemTime::now().duration_since(at).ok()?;
    let device = ext4_device(dir)?;
    let journaled = std::fs::read_dir("/proc/fs/jbd2")
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&format!("{device}-"))))
        .unwrap_or(false);
    (ago < RECENT && !journaled).then(|| {
        format!(
            "(note: an earlier run removed {files} files {}s ago on {device}, ext4 without a journal: \
             files created in the next {}s cost more, so the first-touch rows below may come out low)",
            ago.as_secs(),
            (RECENT - ago).as_secs()
        )
    })
}

/// The device name (`vda`) of the ext4 filesystem holding `dir`, from the longest mount point
/// above it.
fn ext4_device(dir: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let (_, source, kind) = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (source, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            dir.starts_with(point).then_some((point.len(), source, kind))
        })
        .max_by_key(|(length, _, _)| *length)?;
    (kind == "ext4").then(|| source.rsplit('/').next().unwrap_or(source).to_string())
}
