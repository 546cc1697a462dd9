//! Deploys: the classes a host serves are the last manifest deployed to it.
//!
//! # Design
//!
//! **Declarative.** A [`Plan`] is a whole manifest: every class (name, content hash, maybe
//! the class it was renamed from) and the worker. Applying it compares it with what runs and
//! reports, per class, what it did: created, updated, unchanged, renamed or deleted. A class
//! missing from the plan is deleted with its data only when the plan allows deletes; otherwise
//! the deploy is refused and nothing changes.
//!
//! **Validate and compile first, switch last.** Components are uploaded first and kept under
//! their sha256 (`store`). Applying a plan compiles and links every changed class before it
//! touches anything: a bad component fails the deploy with the running version untouched.
//! Then the new state is written (atomically) and each class's version is swapped in the
//! registry. An actor compares its instance's version with the class's before every event,
//! so events already running finish on the old code and the next event of every object runs
//! the new one, with its storage, alarm and WebSockets untouched.
//!
//! **Renames and deletes stop the class first.** The class leaves the registry (new events
//! get 404), its sockets are closed (1012 for a rename: reconnect under the new name; 1001 for
//! a delete), every actor of the class is asked to leave and awaited, and only then are its
//! files moved (rename: `objects/<old>` becomes `objects/<new>`, id secret included, so every
//! object keeps its id and data) or deleted, and its alarms re-indexed or dropped.
//!
//! **All or nothing across a crash.** A deploy that moves or deletes data first writes its
//! intent (`deploy/intent.json`: the state it ends in, the renames, the deletions), then stops
//! the classes, moves their folders (each rename synced), writes the new state, deletes what
//! goes, and removes the intent. A crash anywhere in between leaves the intent, and the next
//! start finishes it before serving: the moves are redone where still needed (a folder already
//! moved is left alone), the alarms re-indexed, the state written. So a class is never listed
//! under one name with its data under the other, and no old name comes back with a fresh id
//! secret. (A crash before the intent is written changed nothing.)
//!
//! **Versions.** Every change makes a new version number; the components of the last
//! `keep_versions` versions of each class (and of the one that runs) stay on disk, so a
//! rollback switches back without an upload (and, with the compiled-code cache, without a
//! compile). A deploy forgets older versions and deletes the components (and their compiled
//! code, if the cache is the host's own) that no kept version uses, once the new state is
//! written; a crash before that leaves files a later start-up finds unused. A component that a
//! deploy uploaded or asked about stays until that deploy is applied (or for an hour), even if
//! the version that used it is forgotten meanwhile; unused uploads older than a day are deleted
//! at start-up. One deploy or rollback runs at a time.

mod apply;
mod store;

pub use apply::Deployer;
pub use store::{DeployState, Track, VersionRecord, is_sha256};

use crate::manifest::Settings;
use serde::{Deserialize, Serialize};

/// A manifest to deploy, by content hash (the components are uploaded first).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    #[serde(default)]
    pub classes: Vec<ClassPlan>,
    /// sha256 of the worker component, if the manifest has one.
    #[serde(default)]
    pub worker: Option<String>,
    /// The worker's vars and outbound allow list.
    #[serde(default)]
    pub worker_settings: Settings,
    /// Delete (with their data) the classes deployed earlier that the plan no longer lists.
    #[serde(default)]
    pub allow_delete: bool,
    /// Serve each new class as soon as it is compiled, before the rest of the plan is: only
    /// the host's own start-up sets it (nothing ran those classes before, and a failure stops
    /// the host). Never read from a client.
    #[serde(skip)]
    pub serve_when_ready: bool,
    /// Leave classes (and a worker) that the plan does not list as they are instead of refusing:
    /// what `wdo serve MANIFEST` does with classes deployed earlier.
    #[serde(default)]
    pub keep_unlisted: bool,
    /// Classes to delete (with their data) if they are deployed and unlisted, whatever
    /// `allow_delete` and `keep_unlisted` say: a wrangler config's `deleted_classes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassPlan {
    pub name: String,
    /// sha256 of the component, hex.
    pub hash: String,
    /// The class this one was called before: its objects and their data carry over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// Its vars and outbound allow list: a change is a new version, like new code.
    #[serde(default)]
    pub settings: Settings,
}

/// What a deploy (or rollback) did to one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
    Renamed,
    Deleted,
    RolledBack,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::Renamed => "renamed",
            Action::Deleted => "deleted",
            Action::RolledBack => "rolled back",
        })
    }
}

/// One line of a deploy report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// The class, or [`WORKER`] for the worker.
    pub class: String,
    pub action: Action,
    /// The version that runs now (none after a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// Whether this deploy compiled the component (false: unchanged, or from the cache).
    pub compiled: bool,
}

/// How reports and the admin API name the worker (never a class name: those start with a letter).
pub const WORKER: &str = "[worker]";

/// What a rollback switches: a class, or the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Class(String),
    Worker,
}

impl Target {
    pub fn parse(name: &str) -> Target {
        if name == WORKER { Target::Worker } else { Target::Class(name.to_string()) }
    }

    pub fn label(&self) -> &str {
        match self {
            Target::Class(name) => name,
            Target::Worker => WORKER,
        }
    }
}
