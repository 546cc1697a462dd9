//! Cloudflare projects: `wdo serve wrangler.toml` and `wdo deploy wrangler.toml` (also
//! `wrangler.json` / `wrangler.jsonc`).
//!
//! A wrangler config becomes a wdo manifest:
//!
//! - `main` (JavaScript or TypeScript) is bundled with esbuild into two components, built with
//!   componentize-js: one for the objects (world `warmable-durable-object`), which serves every
//!   class of the project and instantiates the module's export named like the class it runs as,
//!   and one for the worker (world `worker`), from the module's default export, when it has one.
//!   The Cloudflare layer (`guest-sdk/js/cloudflare`, carried in the binary) gives them
//!   `cloudflare:workers`, `ctx`, `env` and the web classes.
//! - Each class of `[[durable_objects.bindings]]` and `[[migrations]]` is a wdo class of the same
//!   name; `env.<binding>` is its namespace. Migrations map to what a wdo deploy does: new
//!   classes are created, `renamed_classes` become `renamed_from` (applied when the old class is
//!   deployed), `deleted_classes` are deleted without `--allow-delete`.
//! - `[vars]` are the vars of every class and of the worker; secrets come from `wdo secret put`.
//! - Outbound requests may reach any public host (`outbound = ["*"]`), as on Cloudflare.
//!
//! Builds are cached in `.wdo-build/` beside the config, by the hash of the bundle, so a
//! project that did not change starts without running componentize-js again.

mod build;
mod config;

pub use config::is_wrangler_config;

use config::{Config, Rule};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wdo_host::{ClassSpec, Manifest, Settings, WorkerSpec};

/// wrangler's module rules, after the project's own (`[[rules]]`).
const DEFAULT_RULES: &[(&str, &[&str])] = &[
    ("Text", &["**/*.txt", "**/*.html", "**/*.sql"]),
    ("Data", &["**/*.bin"]),
    ("CompiledWasm", &["**/*.wasm", "**/*.wasm?module"]),
];

/// What a config asks wdo to build and serve, before any building.
#[derive(Debug)]
struct Project {
    main: PathBuf,
    base_dir: PathBuf,
    /// Every class, and the name it had before if a migration renamed it.
    classes: Vec<(String, Option<String>)>,
    deleted: Vec<String>,
    /// Binding name → class name.
    bindings: BTreeMap<String, String>,
    /// Var name → (text, whether it was written as JSON rather than a string).
    vars: BTreeMap<String, (String, bool)>,
    rules: Vec<Rule>,
    define: BTreeMap<String, String>,
    alias: BTreeMap<String, String>,
}

/// Reads, builds and resolves a wrangler config into a manifest whose components exist.
pub fn load(path: &Path) -> Result<Manifest, String> {
    let fail = |e: String| format!("{}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    let read = config::parse(path, &text).map_err(fail)?;
    for note in &read.notes {
        tracing::info!("{}: {note}", path.display());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = dir.canonicalize().map_err(|e| fail(format!("its folder: {e}")))?;
    let project = plan(&read.config, &dir).map_err(fail)?;
    let built = build::build(&project, &dir).map_err(fail)?;
    let settings = Settings {
        outbound: vec!["*".into()],
        vars: project.vars.iter().map(|(name, (text, _))| (name.clone(), text.clone())).collect(),
        reuse_instances: false,
    };
    let classes = project
        .classes
        .iter()
        .map(|(name, renamed_from)| ClassSpec {
            name: name.clone(),
            component: built.objects.clone(),
            renamed_from: renamed_from.clone(),
            settings: settings.clone(),
        })
        .collect();
    // Cloudflare runs many requests in one isolate, module state kept between them: code
    // written for it expects no fresh start per request, and runs faster without one.
    let worker_settings = Settings { reuse_instances: true, ..settings.clone() };
    let worker = built.worker.map(|component| WorkerSpec { component, settings: worker_settings });
    Ok(Manifest { path: path.to_path_buf(), classes, worker, deleted: project.deleted, renames_if_deployed: true })
}

/// Checks a config and works out its classes, bindings, vars and rules.
fn plan(config: &Config, dir: &Path) -> Result<Project, String> {
    let main =
        config.main.as_deref().ok_or("no `main`: name the Worker's entry module, e.g. main = \"src/index.ts\"")?;
    let main = dir.join(main);
    if !main.is_file() {
        return Err(format!("`main` is {}, which is not a file", main.display()));
    }
    let base_dir = match &config.base_dir {
        Some(base) => dir.join(base),
        None => main.parent().unwrap_or(dir).to_path_buf(),
    };

    // The classes, migration by migration.
    let mut classes: Vec<(String, Option<String>)> = Vec::new();
    let mut deleted = Vec::new();
    let has = |classes: &Vec<(String, Option<String>)>, name: &str| classes.iter().any(|(c, _)| c == name);
    for (i, migration) in config.migrations.iter().enumerate() {
        let which = match &migration.tag {
            Some(tag) => format!("migration `{tag}`"),
            None => format!("migration {}", i + 1),
        };
        if !migration.transferred_classes.is_empty() {
            return Err(format!("{which}: transferred_classes (from another Worker) are not supported by wdo"));
        }
        for name in migration.new_classes.iter().chain(&migration.new_sqlite_classes) {
            check_class(name).map_err(|e| format!("{which}: {e}"))?;
            if has(&classes, name) {
                return Err(format!("{which}: class `{name}` is created twice"));
            }
            deleted.retain(|d| d != name);
            classes.push((name.clone(), None));
        }
        for rename in &migration.renamed_classes {
            check_class(&rename.to).map_err(|e| format!("{which}: {e}"))?;
            let Some(at) = classes.iter().position(|(c, _)| *c == rename.from) else {
                return Err(format!("{which}: renames `{}`, which no earlier migration creates", rename.from));
            };
            classes[at] = (rename.to.clone(), Some(rename.from.clone()));
        }
        for name in &migration.deleted_classes {
            let Some(at) = classes.iter().position(|(c, _)| c == name) else {
                return Err(format!("{which}: deletes `{name}`, which no earlier migration creates"));
            };
            classes.remove(at);
            deleted.push(name.clone());
        }
    }

    let mut bindings = BTreeMap::new();
    for binding in &config.durable_objects.bindings {
        let own = binding.script_name.is_none() || binding.script_name == config.name;
        if !own {
            return Err(format!(
                "durable_objects binding `{}` uses a class of another Worker (script_name = {:?}): \
                 wdo serves one project's classes",
                binding.name,
                binding.script_name.as_deref().unwrap_or_default()
            ));
        }
        if binding.environment.is_some() {
            return Err(format!("durable_objects binding `{}`: `environment` is not supported by wdo", binding.name));
        }
        wdo_host::check_var(&binding.name, "").map_err(|e| format!("durable_objects binding: {e}"))?;
        check_class(&binding.class_name).map_err(|e| format!("durable_objects binding `{}`: {e}", binding.name))?;
        if deleted.contains(&binding.class_name) {
            return Err(format!(
                "durable_objects binding `{}` names class `{}`, which a migration deletes",
                binding.name, binding.class_name
            ));
        }
        // A bound class no migration creates is created all the same.
        if !has(&classes, &binding.class_name) {
            classes.push((binding.class_name.clone(), None));
        }
        if bindings.insert(binding.name.clone(), binding.class_name.clone()).is_some() {
            return Err(format!("durable_objects binding `{}` is defined twice", binding.name));
        }
    }

    let mut vars = BTreeMap::new();
    for (name, value) in &config.vars {
        if bindings.contains_key(name) {
            return Err(format!("`{name}` is both a var and a durable_objects binding"));
        }
        let (text, json) = match value {
            serde_json::Value::String(text) => (text.clone(), false),
            other => (other.to_string(), true),
        };
        wdo_host::check_var(name, &text).map_err(|e| format!("vars: {e}"))?;
        vars.insert(name.clone(), (text, json));
    }

    // wrangler: the project's rules first, then the defaults; a rule without `fallthrough`
    // ends the rules of its type.
    let defaults = DEFAULT_RULES.iter().map(|(kind, globs)| Rule {
        kind: kind.to_string(),
        globs: globs.iter().map(|g| g.to_string()).collect(),
        fallthrough: false,
    });
    let mut rules: Vec<Rule> = Vec::new();
    let mut closed = Vec::new();
    for rule in config.rules.iter().cloned().chain(defaults) {
        if !matches!(rule.kind.as_str(), "Text" | "Data" | "ESModule" | "CommonJS" | "CompiledWasm") {
            return Err(format!(
                "rules: unknown module type `{}` (Text, Data, ESModule, CommonJS, CompiledWasm)",
                rule.kind
            ));
        }
        if closed.contains(&rule.kind) {
            continue;
        }
        if !rule.fallthrough {
            closed.push(rule.kind.clone());
        }
        rules.push(rule);
    }

    Ok(Project {
        main,
        base_dir,
        classes,
        deleted,
        bindings,
        vars,
        rules,
        define: config.define.clone(),
        alias: config.alias.clone(),
    })
}

fn check_class(name: &str) -> Result<(), String> {
    wdo_host::validate_class_name(name).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(text: &str) -> Result<Project, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/index.ts"), "export default {}").unwrap();
        let read = config::parse(Path::new("wrangler.toml"), text)?;
        plan(&read.config, dir.path())
    }

    const HEAD: &str = "main = \"src/index.ts\"\n";

    #[test]
    fn migrations_give_the_classes_renames_and_deletions() {
        let p = project(&format!(
            "{HEAD}[[durable_objects.bindings]]\nname = \"TALLY\"\nclass_name = \"Tally\"\n\
             [[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = [\"Counter\", \"Old\"]\n\
             [[migrations]]\ntag = \"v2\"\nrenamed_classes = [{{ from = \"Counter\", to = \"Tally\" }}]\n\
             deleted_classes = [\"Old\"]\n"
        ))
        .unwrap();
        assert_eq!(p.classes, [("Tally".to_string(), Some("Counter".to_string()))]);
        assert_eq!(p.deleted, ["Old"]);
        assert_eq!(p.bindings["TALLY"], "Tally");
        assert!(p.base_dir.ends_with("src"));
    }

    #[test]
    fn bound_classes_need_no_migration_and_vars_keep_their_json() {
        let p = project(&format!(
            "{HEAD}[[durable_objects.bindings]]\nname = \"ROOM\"\nclass_name = \"Room\"\n\
             [vars]\nNAME = \"x\"\nLIMITS = {{ max = 3 }}\n"
        ))
        .unwrap();
        assert_eq!(p.classes, [("Room".to_string(), None)]);
        assert_eq!(p.vars["NAME"], ("x".to_string(), false));
        assert_eq!(p.vars["LIMITS"], ("{\"max\":3}".to_string(), true));
    }

    #[test]
    fn rules_come_before_the_defaults_and_close_their_type() {
        let p = project(&format!("{HEAD}[[rules]]\ntype = \"Text\"\nglobs = [\"**/*.md\"]\n")).unwrap();
        let kinds: Vec<_> = p.rules.iter().map(|r| (r.kind.as_str(), r.globs[0].as_str())).collect();
        assert_eq!(kinds, [("Text", "**/*.md"), ("Data", "**/*.bin"), ("CompiledWasm", "**/*.wasm")]);
        let p =
            project(&format!("{HEAD}[[rules]]\ntype = \"Text\"\nglobs = [\"**/*.md\"]\nfallthrough = true\n")).unwrap();
        assert_eq!(p.rules.len(), 4);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let err = |text: &str| project(text).unwrap_err();
        assert!(err("").contains("no `main`"));
        assert!(err("main = \"src/nope.ts\"").contains("not a file"));
        let foreign = err(&format!(
            "{HEAD}[[durable_objects.bindings]]\nname = \"A\"\nclass_name = \"A\"\nscript_name = \"other\""
        ));
        assert!(foreign.contains("another Worker"), "{foreign}");
        let bad_class = err(&format!("{HEAD}[[migrations]]\nnew_classes = [\"9lives\"]"));
        assert!(bad_class.contains("invalid class name `9lives`"), "{bad_class}");
        let rename = err(&format!("{HEAD}[[migrations]]\nrenamed_classes = [{{ from = \"A\", to = \"B\" }}]"));
        assert!(rename.contains("renames `A`, which no earlier migration creates"), "{rename}");
        let moved = err(&format!(
            "{HEAD}[[migrations]]\ntransferred_classes = [{{ from = \"A\", from_script = \"x\", to = \"B\" }}]"
        ));
        assert!(moved.contains("transferred_classes"), "{moved}");
        assert!(err(&format!("{HEAD}[[rules]]\ntype = \"Python\"\nglobs = [\"*\"]")).contains("unknown module type"));
    }
}
