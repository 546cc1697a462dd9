//! What a deploy leaves on disk: `<data>/deploy/components/<sha256>.wasm` (the components of
//! the versions kept, by content, so a rollback needs no upload) and `<data>/deploy/state.json` (each
//! class's versions and which one runs). Both are written to a temporary file, synced and
//! renamed into place, so a crash leaves the old file or the new one, never half of either.

use crate::error::{Error, Result};
use crate::files::write_atomically;
use crate::manifest::Settings;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a deploy that moves or deletes data is about to do, written before it starts: a crash
/// at any step leaves this behind, and the next start finishes it (see `Deployer::restore`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    /// The state the deploy ends in.
    pub next: DeployState,
    /// Classes whose data moves: (old name, new name).
    pub renames: Vec<(String, String)>,
    /// Classes whose data goes.
    pub deleted: Vec<String>,
}

/// Every class deployed, and the worker: the state a restart comes back to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DeployState {
    #[serde(default)]
    pub classes: BTreeMap<String, Track>,
    #[serde(default)]
    pub worker: Option<Track>,
}

impl DeployState {
    /// The components some recorded version uses.
    pub fn hashes(&self) -> BTreeSet<&str> {
        self.classes
            .values()
            .chain(&self.worker)
            .flat_map(|track| track.versions.iter().map(|v| v.hash.as_str()))
            .collect()
    }

    /// Forgets all but the newest `keep` versions of every class and of the worker (the one that
    /// runs always stays).
    pub fn prune(&mut self, keep: usize) {
        for track in self.classes.values_mut().chain(&mut self.worker) {
            track.prune(keep);
        }
    }
}

/// The versions of one class (or of the worker), oldest first, and the one that runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Track {
    pub current: u32,
    pub versions: Vec<VersionRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionRecord {
    pub version: u32,
    /// sha256 of the component, hex.
    pub hash: String,
    /// Bytes of the component.
    pub size: u64,
    /// When this version was first deployed, in seconds since the Unix epoch.
    pub deployed_at: u64,
    /// Its vars and outbound allow list.
    #[serde(default, skip_serializing_if = "is_default")]
    pub settings: Settings,
}

fn is_default(settings: &Settings) -> bool {
    *settings == Settings::default()
}

impl Track {
    /// The record of the version that runs.
    pub fn current(&self) -> &VersionRecord {
        self.get(self.current).expect("the current version is recorded")
    }

    pub fn get(&self, version: u32) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// A track whose one version is `hash` with `settings`.
    pub fn first(hash: &str, size: u64, settings: &Settings) -> Track {
        let record =
            VersionRecord { version: 1, hash: hash.into(), size, deployed_at: now(), settings: settings.clone() };
        Track { current: 1, versions: vec![record] }
    }

    /// Whether the version that runs is `hash` with `settings`.
    pub fn runs(&self, hash: &str, settings: &Settings) -> bool {
        let current = self.current();
        current.hash == hash && current.settings == *settings
    }

    /// Forgets all but the newest `keep` versions (at least one); the one that runs stays even
    /// when it is older, after a rollback. Returns how many were forgotten.
    pub fn prune(&mut self, keep: usize) -> usize {
        let mut numbers: Vec<u32> = self.versions.iter().map(|v| v.version).collect();
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        let kept: BTreeSet<u32> = numbers.into_iter().take(keep.max(1)).chain([self.current]).collect();
        let before = self.versions.len();
        self.versions.retain(|v| kept.contains(&v.version));
        before - self.versions.len()
    }

    /// Records `hash` with `settings` as a new version and makes it current; returns its number.
    pub fn push(&mut self, hash: &str, size: u64, settings: &Settings) -> u32 {
        let version = self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        let record = VersionRecord { version, hash: hash.into(), size, deployed_at: now(), settings: settings.clone() };
        self.versions.push(record);
        self.current = version;
        version
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The deploy folder of a data directory.
pub struct DeployStore {
    components: PathBuf,
    state: PathBuf,
    intent: PathBuf,
}

impl DeployStore {
    pub fn open(data_dir: &Path) -> Result<DeployStore> {
        let dir = data_dir.join("deploy");
        let components = dir.join("components");
        std::fs::create_dir_all(&components).map_err(|e| Error::io(format!("create {}", components.display()), e))?;
        Ok(DeployStore { components, state: dir.join("state.json"), intent: dir.join("intent.json") })
    }

    /// The recorded state; empty on a data folder that never saw a deploy.
    pub fn load_state(&self) -> Result<DeployState> {
        match std::fs::read(&self.state) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Internal(format!("{} is damaged ({e}); restore it from a backup", self.state.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeployState::default()),
            Err(e) => Err(Error::io(format!("read {}", self.state.display()), e)),
        }
    }

    /// The intent of a deploy a crash interrupted, if any.
    pub fn load_intent(&self) -> Result<Option<Intent>> {
        match std::fs::read(&self.intent) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Internal(format!("{} is damaged ({e}); restore it from a backup", self.intent.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", self.intent.display()), e)),
        }
    }

    pub fn save_intent(&self, intent: &Intent) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(intent).expect("the intent serializes");
        write_atomically(&self.intent, &bytes, 0o600)
            .map_err(|e| Error::io(format!("write {}", self.intent.display()), e))
    }

    /// The deploy is done: nothing is left to finish.
    pub fn clear_intent(&self) -> Result<()> {
        match std::fs::remove_file(&self.intent) {
            Ok(()) => crate::files::sync_dir(self.intent.parent().expect("in deploy/"))
                .map_err(|e| Error::io(format!("sync {}", self.intent.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", self.intent.display()), e)),
        }
    }

    pub fn save_state(&self, state: &DeployState) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(state).expect("the state serializes");
        write_atomically(&self.state, &bytes, 0o644)
            .map_err(|e| Error::io(format!("write {}", self.state.display()), e))
    }

    fn component_path(&self, hash: &str) -> PathBuf {
        self.components.join(format!("{hash}.wasm"))
    }

    /// Keeps `bytes` under their hash (once); returns the hash.
    pub fn put(&self, bytes: &[u8]) -> Result<String> {
        let hash = hex::encode(Sha256::digest(bytes));
        let path = self.component_path(&hash);
        if !path.exists() {
            write_atomically(&path, bytes, 0o644).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        Ok(hash)
    }

    /// Deletes a stored component (gone already is fine).
    pub fn remove(&self, hash: &str) -> Result<()> {
        let path = self.component_path(hash);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("delete {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Every stored component: its hash and when its file was last written.
    pub fn list(&self) -> Result<Vec<(String, SystemTime)>> {
        let read = |e| Error::io(format!("read {}", self.components.display()), e);
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.components).map_err(read)? {
            let entry = entry.map_err(read)?;
            let name = entry.file_name();
            let Some(hash) = name.to_str().and_then(|n| n.strip_suffix(".wasm")).filter(|h| is_sha256(h)) else {
                continue; // a temporary file of a write in progress, or something not ours
            };
            let modified = entry.metadata().and_then(|m| m.modified()).map_err(read)?;
            found.push((hash.to_string(), modified));
        }
        Ok(found)
    }

    /// The size of a stored component, if there is one with this hash.
    pub fn size(&self, hash: &str) -> Option<u64> {
        if !is_sha256(hash) {
            return None;
        }
        std::fs::metadata(self.component_path(hash)).ok().map(|m| m.len())
    }

    pub fn get(&self, hash: &str) -> Result<Vec<u8>> {
        if !is_sha256(hash) {
            return Err(Error::BadRequest(format!("`{hash}` is not a sha256 (64 lower-case hex digits)")));
        }
        let path = self.component_path(hash);
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::BadRequest(format!("no component with sha256 {hash} was uploaded to this host"))
            }
            _ => Error::io(format!("read {}", path.display()), e),
        })
    }
}

pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_versions_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeployStore::open(dir.path()).unwrap();
        assert_eq!(store.load_state().unwrap(), DeployState::default());
        let hash = store.put(b"\0asm component").unwrap();
        assert_eq!(store.size(&hash), Some(14));
        assert_eq!(store.get(&hash).unwrap(), b"\0asm component");
        let mut track = Track::first(&hash, 14, &Settings::default());
        assert_eq!(track.push("b".repeat(64).as_str(), 3, &Settings::default()), 2);
        assert_eq!(track.current().version, 2);
        let mut state = DeployState::default();
        state.classes.insert("counter".into(), track);
        store.save_state(&state).unwrap();
        assert_eq!(store.load_state().unwrap(), state);
    }

    #[test]
    fn pruning_keeps_the_newest_versions_and_the_one_that_runs() {
        let mut track = Track::first(&"1".repeat(64), 1, &Settings::default());
        for n in 2..=6 {
            track.push(&n.to_string().repeat(64), 1, &Settings::default());
        }
        track.current = 2; // rolled back
        assert_eq!(track.prune(3), 2);
        let kept: Vec<u32> = track.versions.iter().map(|v| v.version).collect();
        assert_eq!(kept, [2, 4, 5, 6]);
        assert_eq!(track.prune(0), 2, "at least the newest stays, and the current");
        let kept: Vec<u32> = track.versions.iter().map(|v| v.version).collect();
        assert_eq!(kept, [2, 6]);

        let mut state = DeployState::default();
        state.classes.insert("a".into(), track);
        state.worker = Some(Track::first(&"f".repeat(64), 1, &Settings::default()));
        let hashes: Vec<&str> = state.hashes().into_iter().collect();
        assert_eq!(hashes, ["2".repeat(64), "6".repeat(64), "f".repeat(64)]);
    }

    #[test]
    fn stored_components_are_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeployStore::open(dir.path()).unwrap();
        let hash = store.put(b"\0asm one").unwrap();
        std::fs::write(dir.path().join("deploy/components/junk.tmp"), b"").unwrap();
        let listed: Vec<String> = store.list().unwrap().into_iter().map(|(h, _)| h).collect();
        assert_eq!(listed, std::slice::from_ref(&hash));
        store.remove(&hash).unwrap();
        store.remove(&hash).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.size(&hash), None);
    }

    #[test]
    fn unknown_and_malformed_hashes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeployStore::open(dir.path()).unwrap();
        assert!(store.get("nope").unwrap_err().to_string().contains("is not a sha256"));
        assert!(store.get(&"a".repeat(64)).unwrap_err().to_string().contains("was uploaded"));
        assert_eq!(store.size("../../etc/passwd"), None);
    }
}
