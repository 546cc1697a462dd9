//! Rebuilding a data folder from the backup store as of a time (`wdo restore --from`).
//!
//! The latest snapshot of every object from before the time (`compact.rs`) is applied first, if
//! the store has one; then the batches after it are read in the order they were written, and
//! every entry at or before the time is applied: a file is written (or removed), a snapshot replaces the object's database, a
//! transaction writes its pages over it and cuts it to the pages the commit left. Each object's
//! entries are in commit order, so what is left is its database after its last commit at or
//! before the time.

use super::BackupStore;
use super::format::{self, Entry, ObjectRef};
use crate::ids::ObjectId;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Batches read from the store at once while walking it.
const READ_AHEAD: usize = 8;

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
    let rebuilt = rebuild(store, data_dir, at_ms, None).await?;
    let mut restored = rebuilt.restored;
    restored.alarms =
        index_alarms(data_dir, &rebuilt.objects).map_err(|e| format!("cannot rebuild the alarm index: {e}"))?;
    Ok(restored)
}

/// What [`rebuild`] did.
pub(super) struct Rebuilt {
    pub restored: Restored,
    /// The objects there now: (class, id).
    pub objects: HashSet<(String, [u8; 32])>,
    /// The last batch applied (or that the snapshot started from covers).
    pub through: Option<String>,
    /// The latest commit time among what was applied.
    pub max_time_ms: u64,
    /// The fencing token of each object's last entry applied (`format.rs`).
    pub tokens: HashMap<(String, [u8; 32]), u64>,
}

/// Applies to `data_dir` the latest snapshot from before `at_ms` (if any), then the batches
/// after it (named `until` at most, when given), each entry at or before `at_ms`.
pub(super) async fn rebuild(
    store: &BackupStore,
    data_dir: &Path,
    at_ms: Option<u64>,
    until: Option<&str>,
) -> Result<Rebuilt, String> {
    let mut rebuilt = Rebuilt {
        restored: Restored::default(),
        objects: HashSet::new(),
        through: None,
        max_time_ms: 0,
        tokens: HashMap::new(),
    };
    let mut files = HashSet::new();
    let walked = walk(store, at_ms, until, true, |name, entry| {
        if let Some((object, token)) = entry.fenced() {
            rebuilt.restored.commits += 1;
            rebuilt.tokens.insert((object.class.clone(), object.id), token);
        }
        apply(data_dir, entry, &mut rebuilt.objects, &mut files).map_err(|e| format!("{name}: {e}"))
    })
    .await?;
    (rebuilt.through, rebuilt.max_time_ms, rebuilt.restored.batches) = walked;
    rebuilt.restored.objects = rebuilt.objects.len();
    rebuilt.restored.files = files.len();
    Ok(rebuilt)
}

/// One object's database as of `at_ms`, from the store: `None` when it had made no commit yet.
pub(super) async fn object_at(
    store: &BackupStore,
    object: &ObjectRef,
    at_ms: Option<u64>,
) -> Result<Option<Vec<u8>>, String> {
    let wanted = HashSet::from([object.clone()]);
    Ok(objects_at(store, &wanted, at_ms).await?.remove(object))
}

/// The databases of several objects as of `at_ms`, from one walk of the store; an object that
/// had made no commit by then is not in the answer.
pub(super) async fn objects_at(
    store: &BackupStore,
    wanted: &HashSet<ObjectRef>,
    at_ms: Option<u64>,
) -> Result<HashMap<ObjectRef, Vec<u8>>, String> {
    let mut databases: HashMap<ObjectRef, Vec<u8>> = HashMap::new();
    walk(store, at_ms, None, false, |name, entry| match entry.fenced() {
        Some((object, _)) if wanted.contains(object) => apply_to_object(&mut databases, name, entry),
        _ => Ok(()),
    })
    .await?;
    Ok(databases)
}

/// Applies a snapshot or transaction entry to its object's database in `databases`.
fn apply_to_object(databases: &mut HashMap<ObjectRef, Vec<u8>>, batch: &str, entry: Entry) -> Result<(), String> {
    match entry {
        // No pages: the object has no database (taken over before its first commit).
        Entry::Snapshot { object, bytes, .. } => match bytes.is_empty() {
            true => drop(databases.remove(&object)),
            false => drop(databases.insert(object, bytes)),
        },
        Entry::Transaction { object, page_size, db_pages, pages, .. } => {
            let Some(database) = databases.get_mut(&object) else {
                return Err(format!("{batch}: a commit of the object before any snapshot of it: batches are missing"));
            };
            let page_size = page_size as usize;
            database.resize(db_pages as usize * page_size, 0);
            for (number, page) in pages {
                let at = (number as usize - 1) * page_size;
                if let Some(target) = database.get_mut(at..at + page_size) {
                    target.copy_from_slice(&page);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// How far before an anchor's time the listing of its run's batches starts: the anchoring
/// host's clock may have stepped back by up to this much since.
pub const ANCHOR_CLOCK_MARGIN_MS: u64 = 1000;

/// Where a cluster's anchor (`cluster/anchor.rs`) says an object's commits after its base are,
/// in the batches of one host run: those numbered from `batch` on (written from `since_ms` on),
/// under a token of at least `token`.
#[derive(Clone, Copy, Debug)]
pub struct Since {
    pub batch: u64,
    pub since_ms: u64,
    pub token: u64,
}

/// Batches read from the store at once while reading a run (takeovers wait for it).
const RUN_READ_AHEAD: usize = 32;

/// One object asked of a run: its base (its database, `None`: it had none) and where its
/// commits after that base are.
pub struct RunAsk {
    pub object: ObjectRef,
    pub base: Option<Vec<u8>>,
    pub since: Since,
}

/// An object being rebuilt from a run's batches.
struct Rebuilding {
    /// Its database so far (under its ref: the form [`apply_to_object`] keeps).
    database: HashMap<ObjectRef, Vec<u8>>,
    since: Since,
    outcome: Result<(), String>,
}

/// Objects' latest states, each from its base and its entries that its [`Since`] points at in
/// the batches of host run `run`, all in one reading of that run's batches. Returns, per ask in
/// order, its database or why it cannot be rebuilt, and the batches read.
pub(super) async fn objects_in_run(
    store: &BackupStore,
    run: &str,
    asks: Vec<RunAsk>,
) -> Result<(Vec<Result<Option<Vec<u8>>, String>>, usize), String> {
    let earliest = asks.iter().map(|ask| ask.since.since_ms).min().unwrap_or(0);
    let first = asks.iter().map(|ask| ask.since.batch).min().unwrap_or(0);
    let offset = format!("log/{:013}", earliest.saturating_sub(ANCHOR_CLOCK_MARGIN_MS + 1));
    let listed = store
        .list_after("log/", &offset)
        .await
        .map_err(|e| format!("cannot list the backups in {}: {e}", store.url))?;
    // `log/<ms>-<run>-<number>.wdob`
    let marker = format!("-{run}-");
    let numbered = |name: &str| -> Option<u64> {
        let (_, rest) = name.split_once(&marker)?;
        rest.strip_suffix(".wdob")?.parse().ok()
    };
    let names: Vec<(String, u64)> = listed
        .into_iter()
        .filter_map(|name| Some((numbered(&name)?, name)))
        .filter(|(number, _)| *number >= first)
        .map(|(number, name)| (name, number))
        .collect();
    let batches = names.len();
    let mut wanted: HashMap<ObjectRef, Vec<usize>> = HashMap::new();
    let mut rebuilding = Vec::with_capacity(asks.len());
    for (i, RunAsk { object, base, since }) in asks.into_iter().enumerate() {
        wanted.entry(object.clone()).or_default().push(i);
        let database = base.map(|base| HashMap::from([(object, base)])).unwrap_or_default();
        rebuilding.push(Rebuilding { database, since, outcome: Ok(()) });
    }
    let mut reads = futures_util::StreamExt::buffered(
        futures_util::stream::iter(names.into_iter().map(|(name, number)| async move {
            let bytes = store.get(&name).await.map_err(|e| format!("cannot read {name} from {}: {e}", store.url));
            (name, number, bytes)
        })),
        RUN_READ_AHEAD,
    );
    while let Some((name, number, bytes)) = futures_util::StreamExt::next(&mut reads).await {
        for entry in format::decode(&bytes?).map_err(|e| format!("{name}: {e}"))? {
            let Some((object, token)) = entry.fenced() else { continue };
            for &i in wanted.get(object).into_iter().flatten() {
                let object = &mut rebuilding[i];
                if number >= object.since.batch && token >= object.since.token && object.outcome.is_ok() {
                    object.outcome = apply_to_object(&mut object.database, &name, entry.clone());
                }
            }
        }
    }
    let answers =
        rebuilding.into_iter().map(|object| object.outcome.map(|()| object.database.into_values().next())).collect();
    Ok((answers, batches))
}

/// Visits, in order, every entry at or before `at_ms` of the latest snapshot from before it
/// (if any) and of the batches after that snapshot. A stored file is read from the store first
/// when `files` asks for them (and skipped otherwise). Returns the last batch read (or the one
/// the snapshot covers), the latest commit time visited, and how many batches were read.
/// `until`: only the batches named up to it (a cluster's snapshot leaves out the newest).
async fn walk(
    store: &BackupStore,
    at_ms: Option<u64>,
    until: Option<&str>,
    files: bool,
    mut visit: impl FnMut(&str, Entry) -> Result<(), String>,
) -> Result<(Option<String>, u64, usize), String> {
    let read = |name: String| async move {
        store.get(&name).await.map_err(|e| format!("cannot read {name} from {}: {e}", store.url))
    };
    if let (Some(at), Some(kept)) = (at_ms, super::compact::retained(store).await?)
        && at < kept.earliest_ms
    {
        return Err(format!(
            "{} keeps history from {} on (--backup-retention): a restore cannot go back further",
            store.url,
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(kept.earliest_ms)
            )
        ));
    }
    let snapshots = super::compact::snapshots(store).await?;
    let base = snapshots.iter().rev().find(|s| at_ms.is_none_or(|at| s.max_time_ms <= at));
    let mut through = base.map(|s| s.through.clone());
    let mut max_time_ms = base.map_or(0, |s| s.max_time_ms);
    let mut names: Vec<String> = base.map(|s| s.parts()).unwrap_or_default();
    let log = store.list("log/").await.map_err(|e| format!("cannot list the backups in {}: {e}", store.url))?;
    names.extend(
        log.into_iter()
            .filter(|name| base.is_none_or(|s| *name > s.through))
            .filter(|name| until.is_none_or(|until| name.as_str() <= until)),
    );
    let mut batches = 0;
    // The highest fencing token seen per object: an entry under a lower one was written by a
    // host that had lost the object to another (`format.rs`), and is skipped.
    let mut fences: HashMap<ObjectRef, u64> = HashMap::new();
    // Batches are read a few at a time ahead of the one applied (a store's round trip per batch
    // would make a long log slow to walk), and applied in order.
    let mut reads = futures_util::StreamExt::buffered(
        futures_util::stream::iter(names.into_iter().map(|name| async move { (name.clone(), read(name).await) })),
        READ_AHEAD,
    );
    while let Some((name, bytes)) = futures_util::StreamExt::next(&mut reads).await {
        let bytes = bytes?;
        let entries = format::decode(&bytes).map_err(|e| format!("{name}: {e}"))?;
        batches += 1;
        for mut entry in entries {
            if at_ms.is_some_and(|at| entry.time_ms() > at) {
                continue;
            }
            if let Some((object, token)) = entry.fenced() {
                match fences.get_mut(object) {
                    Some(fence) if token < *fence => continue,
                    Some(fence) => *fence = token,
                    None => drop(fences.insert(object.clone(), token)),
                }
            }
            max_time_ms = max_time_ms.max(entry.time_ms());
            if let Entry::StoredFile { time_ms, path, name } = entry {
                if !files {
                    continue;
                }
                let bytes = read(name).await?;
                entry = Entry::File { time_ms, path, bytes: Some(bytes.to_vec()) };
            }
            visit(&name, entry)?;
        }
        if name.starts_with("log/") {
            through = Some(name);
        }
    }
    Ok((through, max_time_ms, batches))
}

/// Writes the alarm index (`alarms.sqlite`) from the restored objects' own alarms: an alarm due
/// while the host was down fires when it starts.
fn index_alarms(data_dir: &Path, objects: &HashSet<(String, [u8; 32])>) -> rusqlite::Result<usize> {
    let index = crate::alarms::AlarmIndex::open(&data_dir.join("alarms.sqlite"), crate::config::Durability::Normal)?;
    let mut alarms = 0;
    for (class, id) in objects {
        let id = ObjectId::from_bytes(id);
        let path = crate::storage::object_db_path(data_dir, class, &id);
        if let Some((name, at_ms)) = crate::storage::alarm_of(&path)? {
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
        Entry::ClassMoved { from, to, .. } => {
            crate::manifest::validate_class_name(&from).map_err(std::io::Error::other)?;
            let old = data_dir.join("objects").join(&from);
            let moved: Vec<_> = objects.iter().filter(|(class, _)| *class == from).cloned().collect();
            match to {
                Some(to) => {
                    crate::manifest::validate_class_name(&to).map_err(std::io::Error::other)?;
                    if old.exists() {
                        move_into(&old, &data_dir.join("objects").join(&to))?;
                    }
                    for (_, id) in moved {
                        objects.remove(&(from.clone(), id));
                        objects.insert((to.clone(), id));
                    }
                }
                None => {
                    if old.exists() {
                        std::fs::remove_dir_all(&old)?;
                    }
                    for object in moved {
                        objects.remove(&object);
                    }
                }
            }
            files.retain(|path| !path.starts_with(&format!("objects/{from}/")));
        }
        Entry::Snapshot { object, bytes, .. } if bytes.is_empty() => {
            let path = database(data_dir, &object.class, &object.id)?;
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            objects.remove(&(object.class, object.id));
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

/// Moves the folder `from` to `to`, into what `to` already holds (files of the same name are
/// replaced).
fn move_into(from: &Path, to: &Path) -> std::io::Result<()> {
    if !to.exists() {
        crate::files::make_private_dir(to.parent().expect("under objects/"))?;
        return std::fs::rename(from, to);
    }
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() && target.is_dir() {
            move_into(&entry.path(), &target)?;
        } else {
            std::fs::rename(entry.path(), &target)?;
        }
    }
    std::fs::remove_dir_all(from)
}

/// Where an object's database goes (its folder made).
fn database(data_dir: &Path, class: &str, id: &[u8; 32]) -> std::io::Result<std::path::PathBuf> {
    crate::manifest::validate_class_name(class).map_err(std::io::Error::other)?;
    let id = ObjectId::from_bytes(id);
    let path = crate::storage::object_db_path(data_dir, class, &id);
    crate::files::make_private_dir(path.parent().expect("in a folder"))?;
    Ok(path)
}
