//! `wdo.toml`: the classes a host serves and the component file of each.
//!
//! ```toml
//! [classes.counter]
//! component = "../target/wasm32-wasip2/guest/counter.wasm"   # relative to this file's folder
//!
//! [classes.tally]
//! component = "tally.wasm"
//! renamed_from = "score"              # was class `score`: its objects and data carry over
//!
//! [classes.poller]
//! component = "poller.wasm"
//! outbound = ["status.example.com", "*.example.org"]   # hosts it may reach (default: none)
//! vars = { URL = "https://status.example.com/", PERIOD = 30 }   # read with `context.env`
//!
//! [worker]                                                    # optional: receives every request
//! component = "front.wasm"
//! outbound = []
//! reuse_instances = true     # an instance serves request after request (default: a fresh one each)
//! [worker.vars]
//! GREETING = "hello"
//! ```

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    classes: BTreeMap<String, ClassEntry>,
    worker: Option<WorkerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassEntry {
    component: PathBuf,
    renamed_from: Option<String>,
    #[serde(default)]
    outbound: Vec<String>,
    #[serde(default)]
    vars: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerEntry {
    component: PathBuf,
    #[serde(default)]
    outbound: Vec<String>,
    #[serde(default)]
    vars: BTreeMap<String, toml::Value>,
    #[serde(default)]
    reuse_instances: bool,
}

/// What a class (or the worker) is deployed with besides its code: a change is a new version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The hosts its outbound requests and WebSockets may reach (see `outbound::rules`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<String>,
    /// Plain settings its code reads with `context.env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The worker only: an instance serves one request after another, keeping its module state
    /// (as a Cloudflare isolate does), instead of a fresh instance for every request. See
    /// `worker.rs` for how long one lives.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_instances: bool,
}

/// Longest variable (or secret) name, and largest value.
pub const MAX_VAR_NAME: usize = 128;
pub const MAX_VAR_VALUE: usize = 64 << 10;

/// Whose settings [`Settings::check`] looks at: what each may have differs.
#[derive(Debug, Clone, Copy)]
pub enum SettingsOf<'a> {
    /// The class of this name.
    Class(&'a str),
    Worker,
}

impl std::fmt::Display for SettingsOf<'_> {
    /// The manifest table the settings come from, for messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingsOf::Class(name) => write!(f, "[classes.{name}]"),
            SettingsOf::Worker => f.write_str("[worker]"),
        }
    }
}

impl Settings {
    /// Checks what a manifest (or a deploy plan) gives the class or the worker `of`.
    pub fn check(&self, of: SettingsOf<'_>) -> std::result::Result<(), String> {
        crate::outbound::Allowed::parse(&self.outbound, format!("{of} outbound"))?;
        if self.reuse_instances && !matches!(of, SettingsOf::Worker) {
            return Err(format!(
                "{of} reuse_instances: only the worker has it (an object keeps its one instance already)"
            ));
        }
        for (name, value) in &self.vars {
            check_var(name, value).map_err(|e| format!("{of} vars: {e}"))?;
        }
        Ok(())
    }

    fn from_entry(outbound: Vec<String>, vars: BTreeMap<String, toml::Value>) -> Settings {
        let vars = vars
            .into_iter()
            .map(|(name, value)| {
                let text = match value {
                    toml::Value::String(text) => text,
                    // Numbers and booleans as written; arrays and tables as JSON.
                    toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => value.to_string(),
                    other => serde_json::to_string(&other).unwrap_or_default(),
                };
                (name, text)
            })
            .collect();
        Settings { outbound, vars, reuse_instances: false }
    }
}

/// A variable's or secret's name and value: names like environment variables.
pub fn check_var(name: &str, value: &str) -> std::result::Result<(), String> {
    let ok = (1..=MAX_VAR_NAME).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "`{name}` is not a valid name: use letters, digits and `_`, not starting with a digit \
             (at most {MAX_VAR_NAME})"
        ));
    }
    if value.len() > MAX_VAR_VALUE {
        return Err(format!("`{name}` is {} bytes; a value holds at most {MAX_VAR_VALUE}", value.len()));
    }
    Ok(())
}

/// A manifest with every path resolved.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub classes: Vec<ClassSpec>,
    /// The worker, which then receives every HTTP request.
    pub worker: Option<WorkerSpec>,
    /// Classes to delete, with their objects' data, if they are deployed (a wrangler config's
    /// `deleted_classes` migrations): no `--allow-delete` needed for these.
    pub deleted: Vec<String>,
    /// Whether a class whose `renamed_from` is not deployed is created instead of refused (a
    /// wrangler config's migrations list every rename since the first deploy).
    pub renames_if_deployed: bool,
}

/// The worker of a manifest.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub component: PathBuf,
    pub settings: Settings,
}

/// One class of a manifest.
#[derive(Debug, Clone)]
pub struct ClassSpec {
    pub name: String,
    /// Absolute (or manifest-relative resolved) path of the component file.
    pub component: PathBuf,
    /// The class's previous name: a deploy renames it, keeping its objects and their data.
    pub renamed_from: Option<String>,
    pub settings: Settings,
}

impl Manifest {
    /// Reads and checks a manifest. Paths are resolved against the manifest's folder.
    pub fn load(path: &Path) -> Result<Manifest> {
        let fail = |message: String| Error::Manifest { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                fail("not found (give the path of a wdo.toml, e.g. `wdo serve examples/wdo.toml`)".into())
            } else {
                fail(format!("cannot be read: {e}"))
            }
        })?;
        Self::parse(path, &text)
    }

    /// Parses manifest text as if it were read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest> {
        let fail = |message: String| Error::Manifest { path: path.to_path_buf(), message };
        let file: ManifestFile = toml::from_str(text).map_err(|e| fail(format!("invalid: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut classes = Vec::new();
        for (name, entry) in file.classes {
            validate_class_name(&name).map_err(|e| fail(e.to_string()))?;
            if let Some(from) = &entry.renamed_from {
                validate_class_name(from).map_err(|e| fail(format!("class `{name}`: renamed_from: {e}")))?;
            }
            let component = base.join(entry.component);
            let settings = Settings::from_entry(entry.outbound, entry.vars);
            settings.check(SettingsOf::Class(&name)).map_err(fail)?;
            classes.push(ClassSpec { name, component, renamed_from: entry.renamed_from, settings });
        }
        if let Some((a, b)) = case_collision(classes.iter().map(|c| c.name.as_str())) {
            return Err(fail(format!("classes `{a}` and `{b}` differ only in case: rename one")));
        }
        if classes.is_empty() {
            return Err(fail("names no classes (add a `[classes.NAME]` table with a `component` path)".into()));
        }
        let worker = match file.worker {
            Some(w) => {
                let settings =
                    Settings { reuse_instances: w.reuse_instances, ..Settings::from_entry(w.outbound, w.vars) };
                settings.check(SettingsOf::Worker).map_err(fail)?;
                Some(WorkerSpec { component: base.join(w.component), settings })
            }
            None => None,
        };
        Ok(Manifest { path: path.to_path_buf(), classes, worker, deleted: Vec::new(), renames_if_deployed: false })
    }
}

/// Class names appear in URLs and folder names: ASCII letters, digits, `-` and `_`, starting
/// with a letter, at most 63 characters. Both `counter` and Cloudflare's `Counter` style work;
/// two classes may not differ only in case (folders on a case-insensitive disk would collide).
pub fn validate_class_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(format!(
            "invalid class name `{name}`: use letters, digits, `-` and `_`, starting with a letter (at most 63)"
        )))
    }
}

/// The first two names of `names` that differ only in case, if any.
pub fn case_collision<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<(&'a str, &'a str)> {
    let mut seen = std::collections::HashMap::new();
    for name in names {
        if let Some(other) = seen.insert(name.to_ascii_lowercase(), name)
            && other != name
        {
            return Some((other, name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_manifest_folder() {
        let m = Manifest::parse(Path::new("/srv/app/wdo.toml"), "[classes.counter]\ncomponent = \"c.wasm\"\n").unwrap();
        assert_eq!(m.classes[0].name, "counter");
        assert_eq!(m.classes[0].component, Path::new("/srv/app/c.wasm"));
    }

    #[test]
    fn bad_manifests_name_the_problem() {
        let p = Path::new("wdo.toml");
        let err = |text: &str| Manifest::parse(p, text).unwrap_err().to_string();
        assert!(err("[classes.1counter]\ncomponent = \"c.wasm\"").contains("invalid class name `1counter`"));
        assert!(err("[classes.\"a.b\"]\ncomponent = \"c.wasm\"").contains("invalid class name `a.b`"));
        let twins = err("[classes.Counter]\ncomponent = \"c\"\n[classes.counter]\ncomponent = \"c\"");
        assert!(twins.contains("`Counter` and `counter` differ only in case"), "{twins}");
        assert!(err("[classes.counter]\n").contains("missing field `component`"));
        assert!(err("[classes.counter]\ncomponent = \"c\"\nextra = 1").contains("unknown field `extra`"));
        assert!(err("").contains("names no classes"));
        assert!(err("[classes").contains("invalid"));
        let bad_host = err("[classes.c]\ncomponent = \"c\"\noutbound = [\"https://x.org\"]");
        assert!(bad_host.contains("[classes.c] outbound") && bad_host.contains("without a scheme"), "{bad_host}");
        let bad_var = err("[worker]\ncomponent = \"w\"\nvars = { \"A-B\" = \"x\" }\n[classes.c]\ncomponent = \"c\"");
        assert!(bad_var.contains("[worker] vars") && bad_var.contains("`A-B`"), "{bad_var}");
    }

    #[test]
    fn vars_are_text_whatever_toml_type_they_are_written_in() {
        let text = "[classes.c]\ncomponent = \"c\"\noutbound = [\"*.example.org\"]\n\
                    vars = { URL = \"https://a.example.org/\", PERIOD = 30, ON = true, LIST = [1, 2] }";
        let m = Manifest::parse(Path::new("wdo.toml"), text).unwrap();
        let vars = &m.classes[0].settings.vars;
        assert_eq!(vars["URL"], "https://a.example.org/");
        assert_eq!((vars["PERIOD"].as_str(), vars["ON"].as_str(), vars["LIST"].as_str()), ("30", "true", "[1,2]"));
        assert_eq!(m.classes[0].settings.outbound, ["*.example.org"]);
    }

    #[test]
    fn only_the_worker_may_reuse_instances_and_a_plan_that_says_so_for_a_class_is_refused() {
        let text = "[worker]\ncomponent = \"w\"\nreuse_instances = true\n[classes.c]\ncomponent = \"c\"";
        let m = Manifest::parse(Path::new("wdo.toml"), text).unwrap();
        assert!(m.worker.unwrap().settings.reuse_instances);
        assert!(!m.classes[0].settings.reuse_instances);
        let fresh =
            Manifest::parse(Path::new("wdo.toml"), "[worker]\ncomponent = \"w\"\n[classes.c]\ncomponent = \"c\"");
        assert!(!fresh.unwrap().worker.unwrap().settings.reuse_instances, "fresh instances by default");
        let class = "[classes.c]\ncomponent = \"c\"\nreuse_instances = true";
        assert!(Manifest::parse(Path::new("wdo.toml"), class).unwrap_err().to_string().contains("unknown field"));
        // A deploy plan carries settings as JSON: the check refuses it there.
        let settings = Settings { reuse_instances: true, ..Settings::default() };
        let refused = settings.check(SettingsOf::Class("c")).unwrap_err();
        assert!(refused.contains("[classes.c] reuse_instances: only the worker"), "{refused}");
        assert!(settings.check(SettingsOf::Worker).is_ok());
        // Saved settings without the field read as before, and the field is written only when set.
        let old: Settings = serde_json::from_str(r#"{"outbound":["a.org"]}"#).unwrap();
        assert!(!old.reuse_instances);
        assert_eq!(serde_json::to_string(&Settings::default()).unwrap(), "{}");
    }
}
