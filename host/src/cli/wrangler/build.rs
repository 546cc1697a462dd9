//! Building a wrangler project: esbuild and componentize-js (installed once with npm into the
//! tools folder), the Cloudflare layer written beside the project, and a cache of components by
//! the hash of what they are built from.

use super::Project;
use crate::cli::embedded::{CLOUDFLARE_SDK, write_if_changed, write_wit};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The versions wdo builds with (the ones `make` installs for this repository).
const ESBUILD: &str = "0.28.2";
const COMPONENTIZE_JS: &str = "0.23.0";
/// componentize-js imports it without declaring it: npm must put it at the top.
const PREVIEW2_SHIM: &str = "0.25.0";

/// The components of a project.
pub struct Built {
    pub objects: PathBuf,
    pub worker: Option<PathBuf>,
}

/// The Node.js tools a build runs.
struct Tools {
    esbuild: PathBuf,
    componentize: PathBuf,
}

/// Where the tools live: `$WDO_TOOLS`, else `~/.cache/wdo/tools`.
fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WDO_TOOLS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("wdo").join("tools")
}

fn installed_version(package_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package_dir.join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["version"].as_str().map(str::to_string)
}

/// The tools, installed with npm the first time.
fn tools() -> Result<Tools, String> {
    let js = tools_dir().join("js");
    let modules = js.join("node_modules");
    let tools = Tools {
        esbuild: modules.join("esbuild").join("lib").join("main.js"),
        componentize: modules.join(".bin").join("componentize-js"),
    };
    let ready = installed_version(&modules.join("esbuild")).as_deref() == Some(ESBUILD)
        && installed_version(&modules.join("@bytecodealliance").join("componentize-js")).as_deref()
            == Some(COMPONENTIZE_JS)
        && modules.join("@bytecodealliance").join("preview2-shim").is_dir();
    if ready {
        return Ok(tools);
    }
    if Command::new("npm").arg("--version").output().is_err() {
        return Err("building a wrangler project needs Node.js and npm (e.g. `apt install nodejs npm`)".into());
    }
    eprintln!("wdo: installing esbuild {ESBUILD} and componentize-js {COMPONENTIZE_JS} into {} (once)", js.display());
    std::fs::create_dir_all(&js).map_err(|e| format!("cannot create {}: {e}", js.display()))?;
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
        .arg(&js)
        .arg(format!("esbuild@{ESBUILD}"))
        .arg(format!("@bytecodealliance/componentize-js@{COMPONENTIZE_JS}"))
        .arg(format!("@bytecodealliance/preview2-shim@{PREVIEW2_SHIM}"))
        .status()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !status.success() {
        return Err(format!("npm could not install esbuild and componentize-js into {}", js.display()));
    }
    Ok(tools)
}

/// Runs `command`; its stderr is the error when it fails.
fn run(mut command: Command, what: &str) -> Result<Vec<u8>, String> {
    let output = command.output().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said = if stderr.trim().is_empty() { stdout } else { stderr };
    Err(format!("{what} failed:\n{}", said.trim_end()))
}

/// Bundles the project and builds (or finds in the cache) its components.
pub fn build(project: &Project, dir: &Path) -> Result<Built, String> {
    let tools = tools()?;
    let out = dir.join(".wdo-build");
    let io = |e: std::io::Error| format!("writing {}: {e}", out.display());
    let sdk = out.join("sdk");
    for (file, text) in CLOUDFLARE_SDK {
        write_if_changed(&sdk.join("cloudflare").join(file), text).map_err(io)?;
    }
    write_wit(&out.join("wit")).map_err(io)?;
    write_if_changed(&out.join(".gitignore"), "*\n").map_err(io)?;

    // One folder per build, so builds of the same project side by side do not collide.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let job_dir = out.join(format!("job-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&job_dir).map_err(io)?;
    let result = build_in(project, dir, &tools, &out, &job_dir);
    let _ = std::fs::remove_dir_all(&job_dir);
    result
}

fn build_in(project: &Project, project_dir: &Path, tools: &Tools, out: &Path, job_dir: &Path) -> Result<Built, String> {
    let vars: serde_json::Map<String, serde_json::Value> = project
        .vars
        .iter()
        .map(|(name, (_, json))| (name.clone(), (if *json { "json" } else { "text" }).into()))
        .collect();
    let job = serde_json::json!({
        "esbuild": tools.esbuild,
        "sdk": out.join("sdk"),
        "main": project.main,
        "projectDir": project_dir,
        "baseDir": project.base_dir,
        "outdir": job_dir,
        "rules": project.rules,
        "define": project.define,
        "alias": project.alias,
        "project": { "bindings": project.bindings, "vars": vars },
    });
    let job_file = job_dir.join("job.json");
    std::fs::write(&job_file, job.to_string()).map_err(|e| format!("writing {}: {e}", job_file.display()))?;
    let mut node = Command::new("node");
    node.arg(out.join("sdk").join("cloudflare").join("bundle.mjs")).arg(&job_file);
    let said = run(node, &format!("bundling {}", project.main.display()))?;
    let found: serde_json::Value =
        serde_json::from_slice(&said).map_err(|e| format!("the bundler said something unexpected: {e}"))?;
    let exports: Vec<&str> = found["exports"].as_array().into_iter().flatten().filter_map(|e| e.as_str()).collect();
    for (class, _) in &project.classes {
        if !exports.contains(&class.as_str()) {
            let bound: Vec<&str> =
                project.bindings.iter().filter(|(_, c)| *c == class).map(|(b, _)| b.as_str()).collect();
            let why = if bound.is_empty() {
                "a migration creates it".to_string()
            } else {
                format!("bound as {}", bound.join(", "))
            };
            return Err(format!(
                "{} does not export class `{class}` ({why}); it exports: {}",
                project.main.display(),
                if exports.is_empty() { "nothing".into() } else { exports.join(", ") }
            ));
        }
    }
    let objects = component(tools, out, job_dir, "objects.js", "warmable-durable-object")?;
    let worker = match found["worker"].as_bool() {
        Some(true) => Some(component(tools, out, job_dir, "worker.js", "worker")?),
        _ => None,
    };
    prune(out, [Some(&objects), worker.as_ref()].into_iter().flatten().collect());
    Ok(Built { objects, worker })
}

/// Deletes components of earlier builds (14 MB each), but for the last minute's: another build
/// of the project may be starting with them.
fn prune(out: &Path, keep: Vec<&PathBuf>) {
    let Ok(entries) = std::fs::read_dir(out) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(60)));
        if old && path.extension().is_some_and(|e| e == "wasm") && !keep.contains(&&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The component of one bundle: from the cache, or built with componentize-js.
fn component(tools: &Tools, out: &Path, job_dir: &Path, bundle: &str, world: &str) -> Result<PathBuf, String> {
    let source = std::fs::read(job_dir.join(bundle)).map_err(|e| format!("the bundle {bundle}: {e}"))?;
    let mut hash = Sha256::new();
    for part in [&source[..], world.as_bytes(), COMPONENTIZE_JS.as_bytes(), crate::cli::embedded::WIT.as_bytes()] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let hash = hex::encode(hash.finalize());
    let target = out.join(format!("{}-{}.wasm", bundle.trim_end_matches(".js"), &hash[..16]));
    if target.is_file() {
        // Used again: not one of the old builds `prune` deletes.
        let _ = std::fs::File::open(&target).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(target);
    }
    eprintln!("wdo: building {} with componentize-js (world {world})", target.display());
    let partial = job_dir.join(format!("{bundle}.wasm"));
    let mut componentize = Command::new(&tools.componentize);
    componentize
        .current_dir(job_dir)
        .arg(bundle)
        .arg("--wit")
        .arg(out.join("wit"))
        .args(["-n", world, "-d", "fetch-event", "-o"])
        .arg(&partial);
    run(componentize, &format!("componentize-js ({world})"))?;
    std::fs::rename(&partial, &target).map_err(|e| format!("moving the component to {}: {e}", target.display()))?;
    Ok(target)
}
