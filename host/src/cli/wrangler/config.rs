//! A wrangler config (`wrangler.toml`, `wrangler.json`, `wrangler.jsonc`) as wdo reads it: what
//! it supports, what it ignores (settings of Cloudflare's edge that mean nothing on one host,
//! named in the log), and what it refuses with an error that names the key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The parts of a wrangler config wdo serves.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: Option<String>,
    pub main: Option<String>,
    /// Where `rules` globs are matched from (default: the folder of `main`).
    pub base_dir: Option<String>,
    #[serde(default)]
    pub compatibility_flags: Vec<String>,
    #[serde(default)]
    pub durable_objects: DurableObjects,
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub migrations: Vec<Migration>,
    /// esbuild's `define` and `alias`, as wrangler passes them.
    #[serde(default)]
    pub define: BTreeMap<String, String>,
    #[serde(default)]
    pub alias: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurableObjects {
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub name: String,
    pub class_name: String,
    pub script_name: Option<String>,
    pub environment: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "type")]
    pub kind: String,
    pub globs: Vec<String>,
    #[serde(default, skip_serializing)]
    pub fallthrough: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    #[allow(dead_code)] // wdo keeps no migration tags: the deployed classes are its state
    pub tag: Option<String>,
    #[serde(default)]
    pub new_classes: Vec<String>,
    #[serde(default)]
    pub new_sqlite_classes: Vec<String>,
    #[serde(default)]
    pub renamed_classes: Vec<Rename>,
    #[serde(default)]
    pub deleted_classes: Vec<String>,
    #[serde(default)]
    pub transferred_classes: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

/// Keys of Cloudflare's edge that mean nothing on one host: read, reported, not used.
const IGNORED: &[&str] = &[
    "$schema",
    "account_id",
    "compatibility_date",
    "workers_dev",
    "preview_urls",
    "route",
    "routes",
    "observability",
    "logpush",
    "placement",
    "upload_source_maps",
    "keep_vars",
    "minify",
    "limits",
    "dev",
    "send_metrics",
    "find_additional_modules",
    "no_bundle",
    "tsconfig",
    "jsx_factory",
    "jsx_fragment",
    "usage_model",
    "logfwdr",
    "first_party_worker",
];

/// Bindings and features wdo does not have, and what they are.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("kv_namespaces", "Workers KV namespaces (use a Durable Object's storage)"),
    ("r2_buckets", "R2 buckets"),
    ("d1_databases", "D1 databases (use a Durable Object's SQL storage)"),
    ("services", "service bindings to other Workers"),
    ("queues", "Queues"),
    ("analytics_engine_datasets", "Analytics Engine"),
    ("ai", "Workers AI"),
    ("browser", "Browser Rendering"),
    ("vectorize", "Vectorize"),
    ("hyperdrive", "Hyperdrive"),
    ("dispatch_namespaces", "Workers for Platforms"),
    ("mtls_certificates", "mTLS certificates"),
    ("send_email", "Email sending"),
    ("tail_consumers", "Tail Workers"),
    ("unsafe", "unsafe bindings"),
    ("workflows", "Workflows"),
    ("assets", "static assets (serve files from the worker)"),
    ("site", "Workers Sites"),
    ("containers", "Containers"),
    ("secrets_store_secrets", "Secrets Store (use `wdo secret put`)"),
    ("version_metadata", "version metadata"),
    ("images", "Images"),
    ("pipelines", "Pipelines"),
    ("wasm_modules", "service-worker format modules"),
    ("text_blobs", "service-worker format modules"),
    ("data_blobs", "service-worker format modules"),
    ("env", "named environments (keep one config per environment)"),
    ("build", "a custom build command (wdo bundles `main` itself, with esbuild)"),
    ("node_compat", "Node.js compatibility"),
    ("legacy_env", "legacy environments"),
    ("triggers", "cron triggers (`scheduled` handlers); use a Durable Object alarm"),
    ("secrets", "declared secrets (set them with `wdo secret put`)"),
];

/// What reading the config found besides the config: lines for the log.
#[derive(Debug)]
pub struct Read {
    pub config: Config,
    pub notes: Vec<String>,
}

/// Whether `path` names a wrangler config.
pub fn is_wrangler_config(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|name| {
        matches!(name, "wrangler.toml" | "wrangler.json" | "wrangler.jsonc")
            || name.starts_with("wrangler.")
                && (name.ends_with(".toml") || name.ends_with(".json") || name.ends_with(".jsonc"))
    })
}

/// Parses a wrangler config's text; `path` tells the format (`.toml`, `.json`, `.jsonc`).
pub fn parse(path: &Path, text: &str) -> Result<Read, String> {
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(text).map_err(|e| format!("invalid TOML: {e}"))?
    } else {
        // JSON with comments and trailing commas, as wrangler.jsonc allows.
        json5::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?
    };
    let serde_json::Value::Object(mut table) = value else {
        return Err("the config is not a table of settings".into());
    };
    let mut notes = Vec::new();
    for key in table.keys().cloned().collect::<Vec<_>>() {
        let value = &table[&key];
        if IGNORED.contains(&key.as_str()) {
            table.remove(&key);
            notes.push(format!("`{key}` is a setting of Cloudflare's edge; wdo ignores it"));
        } else if let Some((_, what)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
            // An empty table or list asks for nothing; `triggers` matters only with crons.
            let asks =
                if key == "triggers" { value.get("crons").is_some_and(|c| !is_empty(c)) } else { !is_empty(value) };
            if asks {
                return Err(format!("`{key}`: wdo does not support {what}; remove it from the config"));
            }
            table.remove(&key);
        }
    }
    let config: Config = serde_json::from_value(serde_json::Value::Object(table)).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix("unknown field ") {
            Some(rest) => format!("unknown setting {}", rest.split(", expected").next().unwrap_or(rest)),
            None => text,
        }
    })?;
    for flag in &config.compatibility_flags {
        if flag.starts_with("nodejs_compat") {
            notes.push(format!(
                "compatibility flag `{flag}`: wdo has no Node.js built-in modules; an import of `node:*` fails the build"
            ));
        }
    }
    Ok(Read { config, notes })
}

fn is_empty(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Array(items) => items.is_empty(),
        serde_json::Value::Object(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> Result<Read, String> {
        parse(Path::new("wrangler.toml"), text)
    }

    #[test]
    fn reads_what_a_durable_object_project_has() {
        let read = toml(
            r#"
            name = "counter"
            main = "src/index.ts"
            compatibility_date = "2025-04-01"
            [[durable_objects.bindings]]
            name = "COUNTER"
            class_name = "Counter"
            [vars]
            GREETING = "hi"
            LIMITS = { max = 3 }
            [[rules]]
            type = "Text"
            globs = ["**/*.md"]
            fallthrough = true
            [[migrations]]
            tag = "v1"
            new_sqlite_classes = ["Counter"]
            [[migrations]]
            tag = "v2"
            renamed_classes = [{ from = "Counter", to = "Tally" }]
            deleted_classes = ["Old"]
            "#,
        )
        .unwrap();
        let c = read.config;
        assert_eq!(c.main.as_deref(), Some("src/index.ts"));
        assert_eq!(c.durable_objects.bindings[0].class_name, "Counter");
        assert_eq!(c.vars["LIMITS"]["max"], 3);
        assert_eq!(c.rules[0].kind, "Text");
        assert_eq!(c.migrations[1].renamed_classes[0].to, "Tally");
        assert!(read.notes.iter().any(|n| n.contains("compatibility_date")));
    }

    #[test]
    fn jsonc_allows_comments_and_trailing_commas() {
        let text = r#"{
            // the entry
            "main": "src/index.js",
            "durable_objects": { "bindings": [{ "name": "ROOM", "class_name": "Room", },] },
        }"#;
        let read = parse(Path::new("wrangler.jsonc"), text).unwrap();
        assert_eq!(read.config.durable_objects.bindings[0].name, "ROOM");
    }

    #[test]
    fn what_wdo_lacks_is_named() {
        let err = toml("main = \"a.js\"\n[[kv_namespaces]]\nbinding = \"KV\"\nid = \"x\"").unwrap_err();
        assert!(err.contains("`kv_namespaces`: wdo does not support Workers KV namespaces"), "{err}");
        let err = toml("main = \"a.js\"\n[triggers]\ncrons = [\"* * * * *\"]").unwrap_err();
        assert!(err.contains("cron triggers"), "{err}");
        assert!(toml("main = \"a.js\"\nkv_namespaces = []\n[triggers]\ncrons = []").is_ok());
        let err = toml("main = \"a.js\"\nmian = 1").unwrap_err();
        assert!(err.contains("unknown setting `mian`"), "{err}");
        let err = toml("main = \"a.js\"\n[[durable_objects.bindings]]\nname = \"A\"\nclass = \"B\"").unwrap_err();
        assert!(err.contains("class"), "{err}");
        assert!(parse(Path::new("wrangler.json"), "{").unwrap_err().contains("invalid JSON"));
    }
}
