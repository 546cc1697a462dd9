//! Small file helpers shared by the modules that keep state in the data folder.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes a file so that it is either all there or not there at all, even across a crash:
/// a temporary file with `mode` (of a name no other writer uses: hosts may share a folder, and
/// threads of one host may write the same file), synced, renamed into place, and the folder
/// synced.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let tmp = path.with_file_name(name);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).truncate(true).mode(mode).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes the entries of a folder (files created, renamed or removed in it) durable.
/// Creates a folder (and its parents) readable only by this user.
pub fn make_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Renames `from` to `to` and makes both folders' entries durable.
pub fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    for dir in [from.parent(), to.parent()].into_iter().flatten() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Where a test may make the host die on purpose: with `WDO_CRASH_AT=<name>` in its
/// environment the process aborts at the crash point of that name, as a power cut would stop
/// it there. The crash-recovery tests use it; nothing else sets it.
pub fn crash_point(name: &str) {
    if std::env::var_os("WDO_CRASH_AT").is_some_and(|at| at == name) {
        tracing::error!("stopping at the crash point `{name}` (WDO_CRASH_AT)");
        std::process::abort();
    }
}

/// Reads a secret kept in the data folder, creating it (mode 0600) with `make` on first use.
pub fn read_or_create_secret(path: &Path, make: impl FnOnce() -> Vec<u8>) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let bytes = make();
            write_atomically(path, &bytes, 0o600)?;
            Ok(bytes)
        }
        Err(e) => Err(e),
    }
}
