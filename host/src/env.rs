//! What a guest reads with `context.env(key)`: its version's plain `vars` from the manifest and
//! its class's secrets, which never pass through a manifest.
//!
//! # Design
//!
//! **Vars are part of a version.** They are deployed with the component (a change is a new
//! version, like new code), so a rollback brings back the vars of that version too, and an
//! instance reads the vars of the version it runs.
//!
//! **Secrets are the class's, not a version's.** `wdo secret put CLASS KEY` (through the admin
//! API) writes `<data>/objects/<class>/secrets.json` (the worker's: `<data>/deploy/worker-secrets.json`),
//! mode 0600 in the host's private data folder, atomically; the vault keeps the parsed file in
//! memory and replaces it on each change, so the next event reads the new value. The object
//! folder is where a rename moves a class's data and a delete removes it, so secrets follow
//! both. No command, log line, version listing or error body shows a secret's value: the admin
//! API lists names only. A secret shadows a var of the same name.

use crate::error::{Error, Result};
use crate::manifest::{Settings, check_var};
use crate::outbound::Allowed;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What one deployed version of a class (or of the worker) gets besides its code.
#[derive(Debug, Default)]
pub struct Profile {
    /// Whose secrets the code reads: its class, or [`WORKER_SECRETS`].
    pub owner: String,
    pub vars: BTreeMap<String, String>,
    pub outbound: Allowed,
}

impl Profile {
    /// The profile of class `owner` (or of the worker: [`WORKER_SECRETS`]).
    pub fn new(owner: &str, settings: &Settings) -> Result<Profile> {
        let key = match owner {
            WORKER_SECRETS => "[worker]".to_string(),
            class => format!("[classes.{class}]"),
        };
        let outbound = Allowed::parse(&settings.outbound, format!("{key} outbound")).map_err(Error::BadRequest)?;
        Ok(Profile { owner: owner.to_string(), vars: settings.vars.clone(), outbound })
    }
}

/// Whose secrets are the worker's (not a valid class name, so no class can share them).
pub const WORKER_SECRETS: &str = "[worker]";

type Values = Arc<BTreeMap<String, String>>;

/// Every class's secrets, read from disk once and kept in memory.
pub struct Vault {
    data_dir: PathBuf,
    loaded: Mutex<HashMap<String, Values>>,
}

impl Vault {
    pub fn new(data_dir: &Path) -> Vault {
        Vault { data_dir: data_dir.to_path_buf(), loaded: Mutex::new(HashMap::new()) }
    }

    fn path(&self, owner: &str) -> PathBuf {
        match owner {
            WORKER_SECRETS => self.data_dir.join("deploy").join("worker-secrets.json"),
            class => self.data_dir.join("objects").join(class).join("secrets.json"),
        }
    }

    /// The secrets of `owner` (a class, or [`WORKER_SECRETS`]).
    pub fn get(&self, owner: &str) -> Result<Values> {
        let mut loaded = self.loaded.lock().unwrap();
        if let Some(values) = loaded.get(owner) {
            return Ok(values.clone());
        }
        let path = self.path(owner);
        let values: BTreeMap<String, String> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Internal(format!("{} is damaged: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        let values = Arc::new(values);
        loaded.insert(owner.to_string(), values.clone());
        Ok(values)
    }

    /// The names of `owner`'s secrets, never their values.
    pub fn names(&self, owner: &str) -> Result<Vec<String>> {
        Ok(self.get(owner)?.keys().cloned().collect())
    }

    /// Sets (`Some`) or deletes (`None`) a secret; returns whether it existed before.
    pub fn set(&self, owner: &str, name: &str, value: Option<&str>) -> Result<bool> {
        if let Some(value) = value {
            check_var(name, value).map_err(|e| Error::BadRequest(format!("secret {e}")))?;
        }
        let mut values = (*self.get(owner)?).clone();
        let existed = match value {
            Some(value) => values.insert(name.to_string(), value.to_string()).is_some(),
            None => values.remove(name).is_some(),
        };
        let path = self.path(owner);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let text = serde_json::to_vec_pretty(&values).expect("strings serialize");
        crate::files::write_atomically(&path, &text, 0o600)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        self.loaded.lock().unwrap().insert(owner.to_string(), Arc::new(values));
        Ok(existed)
    }

    /// Forgets what is loaded for `owner` (its folder was moved or deleted): the next read
    /// goes to disk.
    pub fn forget(&self, owner: &str) {
        self.loaded.lock().unwrap().remove(owner);
    }
}

/// `context.env(key)`: a secret of the profile's owner, else a var of the version.
pub fn lookup(vault: &Vault, profile: &Profile, key: &str) -> Option<String> {
    let owner = profile.owner.as_str();
    match vault.get(owner) {
        Ok(secrets) if secrets.contains_key(key) => return secrets.get(key).cloned(),
        Ok(_) => {}
        Err(e) => tracing::error!(owner, "cannot read the secrets: {e}"),
    }
    profile.vars.get(key).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_persist_privately_shadow_vars_and_list_by_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(dir.path());
        let settings = Settings { vars: [("MODE".to_string(), "test".to_string())].into(), ..Default::default() };
        let profile = Profile::new("c", &settings).unwrap();
        assert_eq!(lookup(&vault, &profile, "MODE").as_deref(), Some("test"));
        assert!(!vault.set("c", "API_KEY", Some("sk-123")).unwrap());
        assert!(!vault.set("c", "MODE", Some("live")).unwrap(), "MODE is a var, not yet a secret");
        assert_eq!(lookup(&vault, &profile, "MODE").as_deref(), Some("live"));
        assert_eq!(vault.names("c").unwrap(), ["API_KEY", "MODE"]);
        // Another vault (a restart) reads the same, from a file only the host can read.
        let path = dir.path().join("objects/c/secrets.json");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = Vault::new(dir.path());
        assert_eq!(lookup(&again, &profile, "API_KEY").as_deref(), Some("sk-123"));
        assert!(again.set("c", "API_KEY", None).unwrap());
        assert_eq!(lookup(&again, &profile, "API_KEY"), None);
        let other = Profile::new("other", &Settings::default()).unwrap();
        assert_eq!(lookup(&again, &other, "API_KEY"), None);
        let bad = vault.set("c", "no spaces", Some("x")).unwrap_err().to_string();
        assert!(bad.contains("not a valid name"), "{bad}");
    }
}
