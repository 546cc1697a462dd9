//! A bound on a shared compile cache (`--cache-dir`, `wdo compile`, `make build`'s
//! `target/wdo-cache`).
//!
//! A host's own cache (`<data>/cache`) deletes a component's code when the component is no
//! longer deployed. A shared one cannot know what other hosts still use, so it used to be only
//! ever added to, and it grew without end: componentize-js and componentize-py do not build the
//! same bytes twice, so each rebuild of a JavaScript or Python project adds ~35 MB of machine
//! code under a new hash (the project's own `make test` added ~1.3 GB a run, into a folder CI
//! keeps between runs). Now, after each write, the least recently used files go until every
//! engine fingerprint's folder under the root together holds at most [`MAX_SHARED_BYTES`] of
//! compiled code. A load from the cache marks its file used (its modification time, at most
//! once an hour). Deleting a file another host has mapped is safe (the mapping keeps it); a
//! host that finds its file gone just compiles again.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a shared cache's compiled components may take together: room for this project's
/// examples, its wrangler projects and its tests' components twice over.
pub const MAX_SHARED_BYTES: u64 = 4 << 30;

/// How stale a used file's modification time may get before a load refreshes it.
const MARK_EVERY: Duration = Duration::from_secs(3600);

/// Marks a compiled component's file as used now (unless it was, lately).
pub fn mark_used(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    let now = SystemTime::now();
    let stale = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_none_or(|age| age >= MARK_EVERY);
    if stale && let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(now);
    }
}

/// Deletes the least recently used `.cwasm` files (and their checksums) under `root`'s
/// fingerprint folders until they hold at most `max_bytes`, never `keep` (the file just
/// written), and the folders that leaves empty. Returns how many files it deleted.
pub fn trim(root: &Path, max_bytes: u64, keep: &Path) -> usize {
    let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    let Ok(folders) = std::fs::read_dir(root) else { return 0 };
    for folder in folders.flatten() {
        let Ok(entries) = std::fs::read_dir(folder.path()) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "cwasm") || path == keep {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                files.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len(), path));
            }
        }
    }
    let kept = std::fs::metadata(keep).map(|m| m.len()).unwrap_or(0);
    let mut total: u64 = kept + files.iter().map(|(_, len, _)| len).sum::<u64>();
    files.sort();
    let mut deleted = 0;
    let mut emptied: Vec<PathBuf> = Vec::new();
    for (_, len, path) in files {
        if total <= max_bytes {
            break;
        }
        let _ = std::fs::remove_file(super::sum_path(&path));
        match std::fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // another host trimmed it
            Err(e) => tracing::warn!(path = %path.display(), "cannot trim the compile cache: {e}"),
        }
        total = total.saturating_sub(len);
        if let Some(folder) = path.parent().filter(|f| Some(*f) != keep.parent() && !emptied.iter().any(|e| e == f)) {
            emptied.push(folder.to_path_buf());
        }
    }
    // An older engine's folder it emptied goes too (`remove_dir` leaves one that is not empty).
    for folder in emptied {
        let _ = std::fs::remove_dir(folder);
    }
    if deleted > 0 {
        tracing::info!(root = %root.display(), deleted, "compile cache: least recently used entries deleted");
    }
    deleted
}

#[cfg(test)]
#[path = "trim_tests.rs"]
mod tests;
