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
//! [worker]                                                    # optional: receives every request
//! component = "front.wasm"
//! ```

use crate::error::{Error, Result};
use serde::Deserialize;
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerEntry {
    component: PathBuf,
}

/// A manifest with every path resolved.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub classes: Vec<ClassSpec>,
    /// The worker component, which then receives every HTTP request.
    pub worker: Option<PathBuf>,
}

/// One class of a manifest.
#[derive(Debug, Clone)]
pub struct ClassSpec {
    pub name: String,
    /// Absolute (or manifest-relative resolved) path of the component file.
    pub component: PathBuf,
    /// The class's previous name: a deploy renames it, keeping its objects and their data.
    pub renamed_from: Option<String>,
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
            classes.push(ClassSpec { name, component, renamed_from: entry.renamed_from });
        }
        if classes.is_empty() {
            return Err(fail("names no classes (add a `[classes.NAME]` table with a `component` path)".into()));
        }
        let worker = file.worker.map(|w| base.join(w.component));
        Ok(Manifest { path: path.to_path_buf(), classes, worker })
    }
}

/// Class names appear in URLs and folder names: lower-case letters, digits and `-`, starting
/// with a letter, at most 63 characters.
pub fn validate_class_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(format!(
            "invalid class name `{name}`: use lower-case letters, digits and `-`, starting with a letter (at most 63)"
        )))
    }
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
        assert!(err("[classes.Counter]\ncomponent = \"c.wasm\"").contains("invalid class name `Counter`"));
        assert!(err("[classes.counter]\n").contains("missing field `component`"));
        assert!(err("[classes.counter]\ncomponent = \"c\"\nextra = 1").contains("unknown field `extra`"));
        assert!(err("").contains("names no classes"));
        assert!(err("[classes").contains("invalid"));
    }
}
