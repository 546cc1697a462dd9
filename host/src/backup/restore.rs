//! Rebuilding a data folder from the backup store as of a time (`wdo restore --from`).
//!
//! Batches are read in the order they were written; every entry at or before the time is
//! applied: a file is written (or removed), a snapshot replaces the object's database, a
//! transaction writes its pages over it and cuts it to the pages the commit left. Each object's
//! entries are in commit order, so what is left is its database after its last commit at or
//! before the time.

use super::BackupStore;
use super::format::{self, Entry};
use crate::ids::ObjectId;
use std::collections::HashSet;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What a restore rebuilt.
#[derive(Debug, Default)]
pub struct Restored {
    pub batches: usize,
    pub objects: usize,
    pub files: usize,
    /// Commits applied (snapshots and transactions).
    pub commits: usize,
    /// Objects with an alarm, now in the alarm index.
    pub alarms: usize,
}

/// Rebuilds `data_dir` (which must not exist yet, or be empty) from `store` as of `at_ms`
/// (milliseconds since the Unix epoch; `None`: everything shipped).
pub async fn restore(store: &BackupStore, data_dir: &Path, at_ms: Option<u64>) -> Result<Restored, String> {
    if data_dir.exists() && std::fs::read_dir(data_dir).map_err(|e| e.to_string())?.next().is_some() {
        return Err(format!("{} is not empty: a restore builds a new data folder", data_dir.display()));
    }
    crate::files::make_private_dir(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let names = store.list("log/").await.map_err(|e| format!("cannot list the backups in {}: {e}", store.url))?;
    let mut restored = Restored::default();
    let mut objects = HashSet::new();
    let mut files = HashSet::new();
    for name in &names {
        let bytes = store.get(name).await.map_err(|e| format!("cannot read {name} from {}: {e}", store.url))?;
        let entries = format::decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
        restored.batches += 1;
        for mut entry in entries {
            if at_ms.is_some_and(|at| entry.time_ms() > at) {
                continue;
            }
            if let Entry::StoredFile { time_ms, path, name } = entry {
                let bytes =
                    store.get(&name).await.map_err(|e| format!("cannot read {name} from {}: {e}", store.url))?;
                entry = Entry::File { time_ms, path, bytes: Some(bytes.to_vec()) };
            }
            if matches!(entry, Entry::Snapshot { .. } | Entry::Transaction { .. }) {
                restored.commits += 1;
            }
            apply(data_dir, entry, &mut objects, &mut files).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    restored.objects = objects.len();
    restored.files = files.len();
    restored.alarms = index_alarms(data_dir, &objects).map_err(|e| format!("cannot rebuild the alarm index: {e}"))?;
    Ok(restored)
}

/// Writes the alarm index (`alarms.sqlite`) from the restored objects' own alarms: an alarm due
/// while the host was down fires when it starts.
fn index_alarms(data_dir: &Path, objects: &HashSet<(String, [u8; 32])>) -> rusqlite::Result<usize> {
    use rusqlite::OptionalExtension;
    let index = crate::alarms::AlarmIndex::open(&data_dir.join("alarms.sqlite"), crate::config::Durability::Normal)?;
    let mut alarms = 0;
    for (class, id) in objects {
        let id = ObjectId::from_bytes(id);
        let path = crate::storage::object_db_path(data_dir, class, &id);
        let db = rusqlite::Connection::open(&path)?;
        // As the host opens it: no -shm file left behind.
        db.query_row("PRAGMA locking_mode=EXCLUSIVE", [], |_| Ok(()))?;
        let meta = |key: &str| {
            db.query_row("SELECT value FROM _wdo_meta WHERE key = ?1", [key], |r| r.get::<_, rusqlite::types::Value>(0))
                .optional()
        };
        if let Some(rusqlite::types::Value::Integer(at_ms)) = meta("alarm")? {
            let name = match meta("name")? {
                Some(rusqlite::types::Value::Text(name)) => Some(name),
                _ => None,
            };
            index.upsert(class, &id.to_hex(), name.as_deref(), at_ms)?;
            alarms += 1;
        }
    }
    Ok(alarms)
}

fn apply(
    data_dir: &Path,
    entry: Entry,
    objects: &mut HashSet<(String, [u8; 32])>,
    files: &mut HashSet<String>,
) -> std::io::Result<()> {
    match entry {
        Entry::StoredFile { .. } => unreachable!("read before it is applied"),
        Entry::File { path, bytes, .. } => {
            if path.split('/').any(|part| part == ".." || part.is_empty()) || path.starts_with('/') {
                return Err(std::io::Error::other(format!("a file outside the data folder: {path}")));
            }
            let target = data_dir.join(&path);
            match bytes {
                Some(bytes) => {
                    crate::files::make_private_dir(target.parent().expect("a relative path has a parent"))?;
                    crate::files::write_atomically(&target, &bytes, 0o600)?;
                    files.insert(path);
                }
                None => {
                    let _ = std::fs::remove_file(&target);
                    files.remove(&path);
                }
            }
        }
        Entry::Snapshot { object, bytes, .. } => {
            let path = database(data_dir, &object.class, &object.id)?;
            std::fs::write(&path, &bytes)?;
            objects.insert((object.class, object.id));
        }
        Entry::Transaction { object, page_size, db_pages, pages, .. } => {
            let path = database(data_dir, &object.class, &object.id)?;
            if !objects.contains(&(object.class.clone(), object.id)) {
                return Err(std::io::Error::other(format!(
                    "a commit of {} before any snapshot of it: the backup is missing batches",
                    path.display()
                )));
            }
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            for (number, page) in pages {
                file.write_all_at(&page, u64::from(number - 1) * u64::from(page_size))?;
            }
            file.set_len(u64::from(db_pages) * u64::from(page_size))?;
        }
    }
    Ok(())
}

/// Where an object's database goes (its folder made).
fn database(data_dir: &Path, class: &str, id: &[u8; 32]) -> std::io::Result<std::path::PathBuf> {
    crate::manifest::validate_class_name(class).map_err(std::io::Error::other)?;
    let id = ObjectId::from_bytes(id);
    let path = crate::storage::object_db_path(data_dir, class, &id);
    crate::files::make_private_dir(path.parent().expect("in a folder"))?;
    Ok(path)
}
