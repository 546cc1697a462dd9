//! Applying plans and rollbacks to a running host (see the design note in `mod.rs`).
//! Everything here blocks (compiling, file moves, waiting for actors to leave): the admin API
//! calls it from `spawn_blocking`.

use super::store::{DeployState, DeployStore, Intent, Track};
use super::{Action, Change, ClassPlan, Plan, Target, WORKER};
use crate::engine::ComponentCache;
use crate::error::{Error, Result};
use crate::manifest::{SettingsOf, validate_class_name};
use crate::object::{Directory, HostState};
use crate::registry::{self, Class, Version};
use crate::worker::Worker;
use arc_swap::ArcSwapOption;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::Linker;

/// Compiles, records and switches class versions.
pub struct Deployer {
    data_dir: PathBuf,
    store: DeployStore,
    /// What runs (locked only to read or replace it).
    state: Mutex<DeployState>,
    /// Held through a whole deploy or rollback: one at a time.
    serial: Mutex<()>,
    cache: ComponentCache,
    linker: Linker<HostState>,
    /// Versions of each class a deploy keeps (`Config::keep_versions`).
    keep_versions: usize,
    /// Components uploaded (or asked about) for a deploy not applied yet: not deleted while
    /// that deploy may still come, even if an older version used them.
    pinned: Mutex<HashMap<String, Instant>>,
}

/// How long an upload waits for the deploy that uses it before it may be deleted.
const UPLOAD_PIN: Duration = Duration::from_secs(3600);

/// A component file no recorded version uses, left by a deploy that never came (or by a crash
/// between a deploy and its clean-up), is deleted at start-up once it is this old.
const ABANDONED_UPLOAD: Duration = Duration::from_secs(24 * 3600);

/// A class version to prepare: the current one of `track`.
struct Job<'a> {
    name: &'a str,
    track: &'a Track,
    /// Serve it as soon as it is ready (a new class at the host's start).
    early: bool,
}

/// What the plan does to one listed class.
enum Step<'a> {
    Create,
    Update,
    Unchanged,
    Rename(&'a str),
}

impl Deployer {
    pub fn open(
        data_dir: &Path,
        cache: ComponentCache,
        linker: Linker<HostState>,
        keep_versions: usize,
    ) -> Result<Deployer> {
        let store = DeployStore::open(data_dir)?;
        let state = Mutex::new(store.load_state()?);
        Ok(Deployer {
            data_dir: data_dir.to_path_buf(),
            store,
            state,
            serial: Mutex::default(),
            cache,
            linker,
            keep_versions,
            pinned: Mutex::default(),
        })
    }

    /// A copy of the recorded state.
    pub fn state(&self) -> DeployState {
        self.state.lock().unwrap().clone()
    }

    /// Keeps component bytes under their hash; returns the hash.
    pub fn put_component(&self, bytes: &[u8]) -> Result<String> {
        // Under the pins' lock: a deploy deleting unused components cannot delete this one
        // between the check that it exists and the pin.
        let mut pinned = self.pins();
        let hash = self.store.put(bytes)?;
        pinned.insert(hash.clone(), Instant::now());
        Ok(hash)
    }

    /// The size of a stored component. A deploy asks before it uploads, and then counts on it.
    pub fn component_size(&self, hash: &str) -> Option<u64> {
        let mut pinned = self.pins();
        let size = self.store.size(hash)?;
        pinned.insert(hash.to_string(), Instant::now());
        Some(size)
    }

    /// The pins, less those of deploys that never came.
    fn pins(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        let mut pinned = self.pinned.lock().unwrap();
        pinned.retain(|_, at| at.elapsed() < UPLOAD_PIN);
        pinned
    }

    /// Compiles an uploaded component (or finds it compiled) as the class `name`, or as the
    /// worker for [`WORKER`], checking its world and the host's imports. Returns whether it
    /// compiled anything.
    pub fn compile(&self, name: &str, hash: &str) -> Result<bool> {
        let bytes = self.store.get(hash)?;
        let settings = crate::manifest::Settings::default();
        if name == WORKER {
            Worker::prepare(&self.cache, &self.linker, &bytes, &settings).map(|w| w.compiled)
        } else {
            registry::prepare_version(&self.cache, &self.linker, name, 0, &bytes, &settings).map(|v| v.compiled)
        }
    }

    /// Serves what the state records (at start-up), except what `next` (the plan deployed
    /// right after) changes: a class it lists with other code or settings, or a different
    /// worker, is left to that deploy, so no request meets the old code after the host started.
    pub fn restore(&self, directory: &Directory, worker: &ArcSwapOption<Worker>, next: &Plan) -> Result<()> {
        if let Some(intent) = self.store.load_intent()? {
            tracing::warn!("finishing a deploy a crash interrupted");
            self.finish(directory, &intent)?;
        }
        let state = self.state();
        let kept = |name: &str, track: &Track| {
            next.classes.iter().all(|c| c.name != name || track.runs(&c.hash, &c.settings))
                && !next.classes.iter().any(|c| c.renamed_from.as_deref() == Some(name))
        };
        let jobs: Vec<Job> = state
            .classes
            .iter()
            .filter(|(name, track)| kept(name, track))
            .map(|(name, track)| Job { name, track, early: true })
            .collect();
        let worker_kept = state
            .worker
            .as_ref()
            .filter(|track| next.worker.as_ref().is_none_or(|hash| track.runs(hash, &next.worker_settings)));
        let (_, prepared) = self.prepare_all(directory, &jobs, worker_kept)?;
        if let Some(prepared) = prepared {
            worker.store(Some(Arc::new(prepared)));
            directory.registry.ready(WORKER);
        }
        self.delete_abandoned_uploads(&state);
        Ok(())
    }

    /// Makes the host serve `plan`; see the module's design note.
    pub fn apply(&self, directory: &Directory, worker: &ArcSwapOption<Worker>, plan: &Plan) -> Result<Vec<Change>> {
        let _serial = self.serial.lock().unwrap();
        let state = self.state();
        let steps = check(&self.store, &state, plan)?;
        let listed: BTreeSet<&str> = plan.classes.iter().map(|c| c.name.as_str()).collect();
        let renamed: BTreeSet<&str> = steps
            .iter()
            .filter_map(|(_, step)| if let Step::Rename(from) = step { Some(*from) } else { None })
            .collect();
        let unlisted: Vec<String> = state
            .classes
            .keys()
            .filter(|name| !listed.contains(name.as_str()) && !renamed.contains(name.as_str()))
            .cloned()
            .collect();
        let drop_worker = plan.worker.is_none() && state.worker.is_some() && !plan.keep_unlisted;
        let named = |class: &String| plan.delete.contains(class);
        let deleted: Vec<String> = unlisted.into_iter().filter(|c| !plan.keep_unlisted || named(c)).collect();
        let unasked: Vec<&String> = deleted.iter().filter(|c| !named(c)).collect();
        if (!unasked.is_empty() || drop_worker) && !plan.allow_delete {
            let mut what: Vec<String> =
                unasked.iter().map(|c| format!("class `{c}` and all of its objects' data")).collect();
            if drop_worker {
                what.push("the worker".into());
            }
            return Err(Error::Conflict(format!(
                "this deploy would delete {}, because the manifest no longer lists {}; nothing was changed. \
                 Deploy with --allow-delete to delete, add a class back, or mark a renamed class with \
                 `renamed_from = \"<old name>\"`",
                what.join(" and "),
                if what.len() == 1 { "it" } else { "them" }
            )));
        }

        // Compile and link every changed class (and the worker) before anything changes: all at
        // once, since compiling is most of a first start.
        let mut next = state.clone();
        let mut changes = Vec::new();
        let mut new_versions: Vec<(&ClassPlan, Option<Version>)> = Vec::new();
        let mut planned = Vec::new();
        for (class, step) in &steps {
            let (track, action) = match step {
                Step::Unchanged => {
                    let track = &state.classes[&class.name];
                    changes.push(change(&class.name, Action::Unchanged, track, None, false));
                    continue;
                }
                Step::Create => (None, Action::Created),
                Step::Update => (state.classes.get(&class.name), Action::Updated),
                Step::Rename(from) => (state.classes.get(*from), Action::Renamed),
            };
            let size = self.store.size(&class.hash).expect("checked");
            let changed = track.is_none_or(|t| !t.runs(&class.hash, &class.settings));
            let track = match track {
                Some(track) if !changed => track.clone(),
                Some(track) => {
                    let mut track = track.clone();
                    track.push(&class.hash, size, &class.settings);
                    track
                }
                None => Track::first(&class.hash, size, &class.settings),
            };
            planned.push((class, step, action, track, changed));
        }
        let new_worker_track = match (&plan.worker, &state.worker) {
            (Some(hash), Some(track)) if track.runs(hash, &plan.worker_settings) => {
                changes.push(change(WORKER, Action::Unchanged, track, None, false));
                None
            }
            (Some(hash), track) => {
                let size = self.store.size(hash).expect("checked");
                Some(match track {
                    Some(track) => {
                        let mut track = track.clone();
                        track.push(hash, size, &plan.worker_settings);
                        (track, Action::Updated)
                    }
                    None => (Track::first(hash, size, &plan.worker_settings), Action::Created),
                })
            }
            (None, _) => None,
        };
        // At a host's start, a new class serves as soon as it is ready: nothing ran it before,
        // and a failure of another stops the host anyway.
        let serve_early = |class: &ClassPlan, step: &Step| {
            plan.serve_when_ready && matches!(step, Step::Create) && directory.registry.get(&class.name).is_err()
        };
        let jobs: Vec<Job> = planned
            .iter()
            .filter(|(_, _, _, _, changed)| *changed)
            .map(|(class, step, _, track, _)| Job { name: &class.name, track, early: serve_early(class, step) })
            .collect();
        let worker_job = new_worker_track.as_ref().map(|(track, _)| track);
        let (mut prepared, prepared_worker) = self.prepare_all(directory, &jobs, worker_job)?;
        for (class, step, action, track, changed) in planned {
            let (version, compiled) = match changed {
                true => prepared.remove(&class.name).expect("prepared"),
                false => (None, false),
            };
            let renamed_from = if let Step::Rename(from) = step { Some(*from) } else { None };
            changes.push(change(&class.name, action, &track, renamed_from, compiled));
            if let Some(from) = renamed_from {
                next.classes.remove(from);
            }
            next.classes.insert(class.name.clone(), track);
            // Served early (`serve_when_ready`): registered already, so nothing to switch.
            if version.is_some() || !changed {
                new_versions.push((class, version));
            }
        }
        let new_worker = match (new_worker_track, prepared_worker) {
            (Some((track, action)), Some(prepared)) => {
                changes.push(change(WORKER, action, &track, None, prepared.compiled));
                next.worker = Some(track);
                Some(prepared)
            }
            _ => None,
        };
        if drop_worker {
            next.worker = None;
            changes.push(deletion(WORKER));
        }

        // The whole outcome first, then its intent on disk: from here on a crash at any step is
        // finished at the next start (see the design note in `mod.rs`).
        for class in &deleted {
            next.classes.remove(class);
            changes.push(deletion(class));
        }
        next.prune(self.keep_versions);
        let renames: Vec<(String, String)> = steps
            .iter()
            .filter_map(|(class, step)| match step {
                Step::Rename(from) => Some((from.to_string(), class.name.clone())),
                _ => None,
            })
            .collect();
        let intent = Intent { next: next.clone(), renames, deleted: deleted.clone() };
        let moves_data = !intent.renames.is_empty() || !intent.deleted.is_empty();
        if moves_data {
            self.store.save_intent(&intent)?;
            crate::files::crash_point("deploy:intent-written");
        }

        // Stop the classes that leave under their name, then move or delete their files.
        for (from, to) in &intent.renames {
            let reason = format!("class `{from}` was renamed to `{to}`: reconnect to /{to}/...");
            stop_class(directory, from, 1012, &reason);
        }
        for class in &deleted {
            stop_class(directory, class, 1001, &format!("class `{class}` was deleted"));
        }
        if moves_data {
            self.finish(directory, &intent)?;
        } else {
            self.store.save_state(&next)?;
        }

        // Switch.
        for (class, version) in new_versions {
            let registered = directory.registry.get(&class.name).ok();
            match (registered, version) {
                (Some(current), Some(version)) => current.set_version(Arc::new(version)),
                (Some(_), None) => {}
                (None, version) => {
                    let track = &next.classes[&class.name];
                    let version = match version {
                        Some(version) => version,
                        None => self.prepare_class(&class.name, track, track.current)?,
                    };
                    directory.registry.insert(Class::open(&self.data_dir, &class.name, version)?);
                }
            }
        }
        if let Some(prepared) = new_worker {
            worker.store(Some(Arc::new(prepared)));
            directory.registry.ready(WORKER);
        }
        if drop_worker {
            worker.store(None);
        }
        self.delete_unused(&state, &next, plan);
        *self.state.lock().unwrap() = next;
        for change in &changes {
            tracing::info!(
                class = change.class,
                version = change.version,
                compiled = change.compiled,
                "{}",
                change.action
            );
        }
        Ok(changes)
    }

    /// Switches a class (or the worker) to an earlier version: `version`, or the one before the
    /// version that runs.
    pub fn rollback(
        &self,
        directory: &Directory,
        worker: &ArcSwapOption<Worker>,
        target: &Target,
        version: Option<u32>,
    ) -> Result<Change> {
        let _serial = self.serial.lock().unwrap();
        let state = self.state();
        let track = match target {
            Target::Class(name) => state.classes.get(name).ok_or_else(|| {
                let deployed: Vec<&str> = state.classes.keys().map(String::as_str).collect();
                Error::BadRequest(format!("no class `{name}` is deployed (deployed: {})", list(&deployed)))
            })?,
            Target::Worker => state.worker.as_ref().ok_or_else(|| Error::BadRequest("no worker is deployed".into()))?,
        };
        let label = target.label();
        let to = match version {
            Some(number) => track.get(number).map(|v| v.version).ok_or_else(|| {
                let numbers: Vec<String> = track.versions.iter().map(|v| v.version.to_string()).collect();
                Error::BadRequest(format!("{label} has no version {number} (versions: {})", numbers.join(", ")))
            })?,
            None => track.versions.iter().map(|v| v.version).filter(|&v| v < track.current).max().ok_or_else(|| {
                Error::BadRequest(format!("{label} has no version before {} to roll back to", track.current))
            })?,
        };
        let mut track = track.clone();
        if to == track.current {
            return Ok(change(label, Action::Unchanged, &track, None, false));
        }
        track.current = to;
        let mut next = state.clone();
        let report = match target {
            Target::Class(name) => {
                let class = directory.registry.get(name)?;
                let version = self.prepare_class(name, &track, to)?;
                let report = change(name, Action::RolledBack, &track, None, version.compiled);
                next.classes.insert(name.clone(), track);
                self.store.save_state(&next)?;
                class.set_version(Arc::new(version));
                report
            }
            Target::Worker => {
                let prepared = self.prepare_worker(&track, to)?;
                let report = change(WORKER, Action::RolledBack, &track, None, prepared.compiled);
                next.worker = Some(track);
                self.store.save_state(&next)?;
                worker.store(Some(Arc::new(prepared)));
                report
            }
        };
        *self.state.lock().unwrap() = next;
        tracing::info!(class = report.class, version = report.version, "rolled back");
        Ok(report)
    }

    /// Deletes the components (and their compiled code) that `before` used and `after` does not:
    /// versions pruned past `keep_versions`, deleted classes, a dropped worker. The components
    /// `plan` used are no longer awaited; those another deploy still awaits stay.
    fn delete_unused(&self, before: &DeployState, after: &DeployState, plan: &Plan) {
        let mut pinned = self.pins();
        for hash in plan.classes.iter().map(|c| &c.hash).chain(&plan.worker) {
            pinned.remove(hash);
        }
        let used = after.hashes();
        for hash in before.hashes().difference(&used).filter(|hash| !pinned.contains_key(**hash)) {
            self.delete_component(hash, "no version kept uses it");
        }
    }

    /// At start-up: deletes components no version uses that were uploaded long ago.
    fn delete_abandoned_uploads(&self, state: &DeployState) {
        let stored = match self.store.list() {
            Ok(stored) => stored,
            Err(e) => return tracing::warn!("cannot look for unused components: {e}"),
        };
        let used = state.hashes();
        let now = SystemTime::now();
        for (hash, modified) in stored {
            let age = now.duration_since(modified).unwrap_or_default();
            if !used.contains(hash.as_str()) && age >= ABANDONED_UPLOAD {
                self.delete_component(&hash, "no version uses it, and it is over a day old");
            }
        }
    }

    fn delete_component(&self, hash: &str, why: &str) {
        match self.store.remove(hash) {
            Ok(()) => {
                self.cache.forget(hash);
                tracing::info!(component = hash, "deleted: {why}");
            }
            Err(e) => tracing::warn!(component = hash, "cannot delete an unused component: {e}"),
        }
    }

    /// Prepares the versions `jobs` run (their tracks' current ones) and the worker's, several
    /// at once, logging progress. A job marked `early` is served as soon as it is ready (its
    /// entry then holds no version). Returns, per class, the version (unless served) and
    /// whether it was compiled; or the first failure.
    #[allow(clippy::type_complexity)]
    fn prepare_all(
        &self,
        directory: &Directory,
        jobs: &[Job],
        worker: Option<&Track>,
    ) -> Result<(HashMap<String, (Option<Version>, bool)>, Option<Worker>)> {
        let total = jobs.len() + usize::from(worker.is_some());
        if total == 0 {
            return Ok((HashMap::new(), None));
        }
        let started = Instant::now();
        tracing::info!("preparing {total} component(s)");
        let done = std::sync::atomic::AtomicUsize::new(0);
        let progress = |name: &str, compiled: bool| {
            let done = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let how = if compiled { "compiled" } else { "from the compile cache" };
            tracing::info!("[{done}/{total}] {name} ready ({how}) after {:.1?}", started.elapsed());
        };
        // Smallest first: most classes are small and serve within a second, while the large
        // (JavaScript, Python) ones share the remaining threads.
        let mut order: Vec<&Job> = jobs.iter().collect();
        order.sort_by_key(|job| job.track.get(job.track.current).map_or(0, |record| record.size));
        let prepare = |job: &&Job| -> Result<(String, (Option<Version>, bool))> {
            let version = self.prepare_class(job.name, job.track, job.track.current)?;
            let compiled = version.compiled;
            progress(job.name, compiled);
            if !job.early {
                return Ok((job.name.to_string(), (Some(version), compiled)));
            }
            directory.registry.insert(Class::open(&self.data_dir, job.name, version)?);
            Ok((job.name.to_string(), (None, compiled)))
        };
        std::thread::scope(|scope| {
            let worker = worker.map(|track| {
                scope.spawn(|| {
                    let prepared = self.prepare_worker(track, track.current)?;
                    progress(WORKER, prepared.compiled);
                    Ok::<_, Error>(prepared)
                })
            });
            let prepared = crate::engine::on_all_cores(&order, prepare).into_iter().collect::<Result<HashMap<_, _>>>();
            let worker = worker.map(|handle| handle.join().expect("preparing the worker does not panic")).transpose();
            Ok((prepared?, worker?))
        })
    }

    fn prepare_class(&self, name: &str, track: &Track, number: u32) -> Result<Version> {
        let bytes = self.version_bytes(name, track, number)?;
        let settings = &track.get(number).expect("a recorded version").settings;
        registry::prepare_version(&self.cache, &self.linker, name, number, &bytes, settings)
    }

    fn prepare_worker(&self, track: &Track, number: u32) -> Result<Worker> {
        let bytes = self.version_bytes(WORKER, track, number)?;
        let settings = &track.get(number).expect("a recorded version").settings;
        Worker::prepare(&self.cache, &self.linker, &bytes, settings)
    }

    fn version_bytes(&self, name: &str, track: &Track, number: u32) -> Result<Vec<u8>> {
        let record = track.get(number).expect("a recorded version");
        self.store.get(&record.hash).map_err(|e| Error::Component {
            class: name.to_string(),
            message: format!("version {number} (sha256 {}) cannot be loaded: {e}", record.hash),
        })
    }

    /// Carries out a deploy's intent (its classes already stopped): moves renamed classes' data,
    /// writes the new state, deletes deleted classes' data, forgets the intent. Each step may
    /// have happened already (a crash interrupted an earlier try), so each is safe to redo.
    fn finish(&self, directory: &Directory, intent: &Intent) -> Result<()> {
        for (from, to) in &intent.renames {
            self.move_data(directory, from, to)?;
            directory.backup_class_moved(from, Some(to));
            // Secrets live in the class's folder: they moved with it.
            directory.limits.vault.forget(from);
            directory.limits.vault.forget(to);
            crate::files::crash_point("deploy:moved");
        }
        // The new state is recorded before deleted data goes, so a crash in between cannot
        // bring a deleted class back without its data.
        self.store.save_state(&intent.next)?;
        *self.state.lock().unwrap() = intent.next.clone();
        crate::files::crash_point("deploy:state-written");
        for class in &intent.deleted {
            self.delete_data(directory, class);
            directory.backup_class_moved(class, None);
            directory.limits.vault.forget(class);
        }
        self.store.clear_intent()
    }

    /// Gives a renamed class's objects (databases and id secret) and alarms their new name.
    /// Redone after a crash, it moves only what is still under the old name.
    fn move_data(&self, directory: &Directory, from: &str, to: &str) -> Result<()> {
        let objects = self.data_dir.join("objects");
        let (old, new) = (objects.join(from), objects.join(to));
        if old.exists() {
            if new.exists() {
                // Left by a class of that name deleted outside wdo: keep it aside.
                let aside = objects.join(format!(".replaced-{to}-{}", unique_suffix()));
                crate::files::rename_durably(&new, &aside)
                    .map_err(|e| Error::io(format!("move {} aside", new.display()), e))?;
                tracing::warn!("moved the old folder {} to {}", new.display(), aside.display());
            }
            crate::files::rename_durably(&old, &new)
                .map_err(|e| Error::io(format!("rename {} to {}", old.display(), new.display()), e))?;
        }
        directory
            .alarms
            .rename_class(from, to)
            .map_err(|e| Error::Internal(format!("moving the alarms of `{from}` to `{to}`: {e}")))
    }

    /// Deletes a deleted class's objects and alarms. The state no longer lists the class, so a
    /// failure here leaves files behind but no class.
    fn delete_data(&self, directory: &Directory, class: &str) {
        if let Err(e) = directory.alarms.remove_class(class) {
            tracing::error!(class, "removing the alarms of a deleted class: {e}");
        }
        let objects = self.data_dir.join("objects");
        let dir = objects.join(class);
        let trash = objects.join(format!(".deleted-{class}-{}", unique_suffix()));
        let result = match std::fs::rename(&dir, &trash) {
            Ok(()) => std::fs::remove_dir_all(&trash),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(class, "deleting the data of a deleted class: {e}");
        }
    }
}

/// Checks a plan against the state and says what it does to each listed class.
fn check<'a>(store: &DeployStore, state: &DeployState, plan: &'a Plan) -> Result<Vec<(&'a ClassPlan, Step<'a>)>> {
    let mut listed = BTreeSet::new();
    for class in &plan.classes {
        validate_class_name(&class.name)?;
        class.settings.check(SettingsOf::Class(&class.name)).map_err(Error::BadRequest)?;
        if !listed.insert(class.name.as_str()) {
            return Err(Error::BadRequest(format!("class `{}` is listed twice", class.name)));
        }
    }
    let mut sources = BTreeSet::new();
    let mut steps = Vec::new();
    for class in &plan.classes {
        let name = &class.name;
        let step = match (state.classes.get(name), &class.renamed_from) {
            (Some(track), _) if track.runs(&class.hash, &class.settings) => Step::Unchanged,
            (Some(_), _) => Step::Update,
            (None, Some(from)) => {
                if !state.classes.contains_key(from) {
                    return Err(Error::Conflict(format!(
                        "class `{name}` is renamed from `{from}`, but no class `{from}` is deployed"
                    )));
                }
                if listed.contains(from.as_str()) {
                    return Err(Error::Conflict(format!(
                        "class `{name}` is renamed from `{from}`, but the manifest still lists `{from}`: \
                         remove one of them"
                    )));
                }
                if !sources.insert(from.as_str()) {
                    return Err(Error::Conflict(format!("two classes are renamed from `{from}`")));
                }
                Step::Rename(from)
            }
            (None, None) => Step::Create,
        };
        steps.push((class, step));
    }
    // Class folders must not collide on a case-insensitive disk: check what will be deployed.
    let kept = state
        .classes
        .keys()
        .filter(|name| plan.keep_unlisted && !sources.contains(name.as_str()) && !plan.delete.contains(name));
    let after = listed.iter().copied().chain(kept.map(String::as_str));
    if let Some((a, b)) = crate::manifest::case_collision(after) {
        return Err(Error::Conflict(format!("classes `{a}` and `{b}` differ only in case: rename one")));
    }
    plan.worker_settings.check(SettingsOf::Worker).map_err(Error::BadRequest)?;
    let hashes = plan.classes.iter().map(|c| (c.name.as_str(), &c.hash)).chain(plan.worker.iter().map(|h| (WORKER, h)));
    for (name, hash) in hashes {
        if !super::is_sha256(hash) {
            return Err(Error::BadRequest(format!("{name}: `{hash}` is not a sha256 (64 lower-case hex digits)")));
        }
        if store.size(hash).is_none() {
            return Err(Error::BadRequest(format!(
                "{name}: no component with sha256 {hash} was uploaded (PUT /_wdo/admin/components/<sha256> first)"
            )));
        }
    }
    Ok(steps)
}

/// Stops serving a class under its name and waits until none of its objects runs.
fn stop_class(directory: &Directory, class: &str, code: u16, reason: &str) {
    directory.registry.remove(class);
    directory.spares.forget(class);
    directory.limits.sockets.close_class(class, code, reason);
    directory.evict_class(class);
}

fn change(class: &str, action: Action, track: &Track, renamed_from: Option<&str>, compiled: bool) -> Change {
    Change {
        class: class.to_string(),
        action,
        version: Some(track.current),
        hash: Some(track.current().hash.clone()),
        renamed_from: renamed_from.map(str::to_string),
        compiled,
    }
}

fn deletion(class: &str) -> Change {
    Change {
        class: class.to_string(),
        action: Action::Deleted,
        version: None,
        hash: None,
        renamed_from: None,
        compiled: false,
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
