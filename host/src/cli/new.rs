//! `wdo new NAME --lang rust|js|python|cloudflare|ts`: a project with one durable object (a
//! counter), its manifest, and a README whose commands build and deploy it. The wdo-SDK projects
//! carry their own copy of the SDK and the WIT, so they build anywhere, without this repository;
//! `cloudflare` (JavaScript) and `ts` (TypeScript) make a wrangler project in Cloudflare's style,
//! which `wdo build`, `wdo serve` and `wdo deploy` build themselves.

use super::embedded::{WIT, WIT_DEPS};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
    /// A wrangler project in JavaScript, in Cloudflare's style.
    Cloudflare,
    /// A wrangler project in TypeScript, in Cloudflare's style.
    Ts,
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// The project's name, which is also its class name (letters, digits, `-` and `_`).
    name: String,
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to create the project (default: a folder named NAME here).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const JS_SDK: &[(&str, &str)] = &[
    ("wdo.js", include_str!("../../../guest-sdk/js/wdo.js")),
    ("http.js", include_str!("../../../guest-sdk/js/http.js")),
    ("objects.js", include_str!("../../../guest-sdk/js/objects.js")),
    ("worker.js", include_str!("../../../guest-sdk/js/worker.js")),
];
const PYTHON_SDK: &[(&str, &str)] = &[
    ("__init__.py", include_str!("../../../guest-sdk/python/wdo/__init__.py")),
    ("http.py", include_str!("../../../guest-sdk/python/wdo/http.py")),
    ("calls.py", include_str!("../../../guest-sdk/python/wdo/calls.py")),
    ("_bindings.py", include_str!("../../../guest-sdk/python/wdo/_bindings.py")),
    ("outbound.py", include_str!("../../../guest-sdk/python/wdo/outbound.py")),
    ("object.py", include_str!("../../../guest-sdk/python/wdo/object.py")),
    ("worker.py", include_str!("../../../guest-sdk/python/wdo/worker.py")),
];
const RUST_SDK: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    ("__private.rs", include_str!("../../../guest-sdk/src/__private.rs")),
    ("alarms.rs", include_str!("../../../guest-sdk/src/alarms.rs")),
    ("context.rs", include_str!("../../../guest-sdk/src/context.rs")),
    ("error.rs", include_str!("../../../guest-sdk/src/error.rs")),
    ("fetch.rs", include_str!("../../../guest-sdk/src/fetch.rs")),
    ("http.rs", include_str!("../../../guest-sdk/src/http.rs")),
    ("objects.rs", include_str!("../../../guest-sdk/src/objects.rs")),
    ("sql.rs", include_str!("../../../guest-sdk/src/sql.rs")),
    ("storage.rs", include_str!("../../../guest-sdk/src/storage.rs")),
    ("websockets.rs", include_str!("../../../guest-sdk/src/websockets.rs")),
];
/// The toolchain versions the projects pin (the ones `make` installs for this repository).
const COMPONENTIZE_JS: &str = "0.23.0";
const COMPONENTIZE_PY: &str = "0.25.1";

pub fn new(args: NewArgs) -> Result<(), super::admin_client::Failure> {
    wdo_host::validate_class_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(format!("{} exists and is not empty: choose another name or --dir", dir.display()).into());
    }
    let name = &args.name;
    if let Lang::Cloudflare | Lang::Ts = args.lang {
        let (files, build) = cloudflare(name, matches!(args.lang, Lang::Ts));
        for (path, text) in files {
            write(&dir.join(path), &text)?;
        }
        return print_next_steps(name, "Cloudflare-style", &dir, &build);
    }
    let (files, build, component) = match args.lang {
        Lang::Rust => rust(name),
        Lang::Js => js(name),
        _ => python(name),
    };
    let manifest = format!("[classes.{name}]\ncomponent = \"{component}\"\n");
    let readme = readme(name, args.lang, &build);
    let common =
        [("wit/object.wit".to_string(), WIT.to_string()), ("wdo.toml".into(), manifest), ("README.md".into(), readme)];
    let deps = WIT_DEPS.iter().map(|(package, text)| (format!("wit/deps/{package}/{package}.wit"), text.to_string()));
    for (path, text) in files.into_iter().chain(common).chain(deps) {
        write(&dir.join(path), &text)?;
    }
    let lang = match args.lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
        _ => "Python",
    };
    print_next_steps(name, lang, &dir, &build)
}

fn print_next_steps(name: &str, lang: &str, dir: &Path, build: &[String]) -> Result<(), super::admin_client::Failure> {
    println!("created {lang} project `{name}` in {}; build and deploy it with:\n", dir.display());
    println!("    cd {}", dir.display());
    for command in build {
        println!("    {command}");
    }
    println!("    wdo deploy                       # to a host started with `wdo serve`");
    println!("    curl -X POST localhost:8787/{name}/alice/increment");
    Ok(())
}

type Project = (Vec<(String, String)>, Vec<String>, String);

fn rust(name: &str) -> Project {
    let crate_name = name.replace('-', "_");
    let cargo = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\nwdo-sdk = {{ path = \"wdo-sdk\" }}\n\n\
         [workspace]\nmembers = [\"wdo-sdk\"]\n\n\
         # Small, fast components.\n[profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\n\
         strip = true\npanic = \"abort\"\n"
    );
    let sdk_cargo = "[package]\nname = \"wdo-sdk\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\n\
         wit-bindgen = { version = \"0.63\", default-features = false, features = [\"macros\", \"realloc\", \"std\"] }\n\
         serde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\nwasip2 = \"1\"\n";
    let mut files = vec![
        ("Cargo.toml".to_string(), cargo),
        ("src/lib.rs".into(), template(include_str!("templates/rust_lib.rs"), name)),
        ("wdo-sdk/Cargo.toml".into(), sdk_cargo.to_string()),
        (".gitignore".into(), "/target\n".into()),
    ];
    files.extend(RUST_SDK.iter().map(|(file, text)| (format!("wdo-sdk/src/{file}"), text.to_string())));
    let build = vec!["rustup target add wasm32-wasip2".into(), "cargo build --release --target wasm32-wasip2".into()];
    (files, build, format!("target/wasm32-wasip2/release/{crate_name}.wasm"))
}

fn js(name: &str) -> Project {
    let package = format!(
        "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"scripts\": {{\n    \
         \"build\": \"componentize-js app.js --wit wit -n warmable-durable-object -d fetch-event -o {name}.wasm\"\n  }},\n  \
         \"devDependencies\": {{\n    \"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS}\"\n  }}\n}}\n"
    );
    let mut files = vec![
        ("package.json".to_string(), package),
        ("app.js".into(), template(include_str!("templates/app.js"), name)),
        (".gitignore".into(), "node_modules/\n*.wasm\n".into()),
    ];
    files.extend(JS_SDK.iter().map(|(file, text)| (file.to_string(), text.to_string())));
    (files, vec!["npm install".into(), "npm run build".into()], format!("{name}.wasm"))
}

fn python(name: &str) -> Project {
    let build = format!(
        "#!/bin/sh\n# Builds {name}.wasm with componentize-py, installed in .venv the first time.\nset -e\ncd \"$(dirname \"$0\")\"\n\
         [ -x .venv/bin/componentize-py ] || {{ python3 -m venv .venv && .venv/bin/pip install --quiet -r requirements.txt; }}\n\
         .venv/bin/componentize-py -d wit -w warmable-durable-object componentize app -o {name}.wasm\n"
    );
    let mut files = vec![
        ("app.py".to_string(), template(include_str!("templates/app.py"), name)),
        ("requirements.txt".into(), format!("componentize-py=={COMPONENTIZE_PY}\n")),
        ("build.sh".into(), build),
        (".gitignore".into(), ".venv/\n__pycache__/\n*.wasm\n".into()),
    ];
    files.extend(PYTHON_SDK.iter().map(|(file, text)| (format!("wdo/{file}"), text.to_string())));
    (files, vec!["./build.sh".into()], format!("{name}.wasm"))
}

/// A wrangler project: the class is `name` in PascalCase, its binding in SCREAMING_CASE.
fn cloudflare(name: &str, typescript: bool) -> (Vec<(String, String)>, Vec<String>) {
    let words: Vec<&str> = name.split(['-', '_']).filter(|w| !w.is_empty()).collect();
    let class: String = words
        .iter()
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    let binding = words.join("_").to_ascii_uppercase();
    let (main, source) = if typescript {
        ("src/index.ts", include_str!("templates/cloudflare.ts"))
    } else {
        ("src/index.js", include_str!("templates/cloudflare.js"))
    };
    let source = source.replace("{{class}}", &class).replace("{{binding}}", &binding).replace("{{name}}", name);
    let config = format!(
        "name = \"{name}\"\nmain = \"{main}\"\ncompatibility_date = \"2025-04-01\"\n\n\
         [[durable_objects.bindings]]\nname = \"{binding}\"\nclass_name = \"{class}\"\n\n\
         [[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = [\"{class}\"]\n"
    );
    let readme = format!(
        "# {name}\n\nA Durable Object project in Cloudflare's style: `{main}` has the class `{class}` (a counter per \
         object name) and the Worker (its default export), which reaches it as `env.{binding}` over RPC. \
         `wrangler.toml` is the config, as for Cloudflare; the same project runs on wdo.\n\n\
         ## Run it\n\n    wdo serve wrangler.toml      # builds (once), then serves on 127.0.0.1:8787\n\n\
         or deploy it to a running host:\n\n    wdo build                    # bundles {main} and builds its components into .wdo-build/\n    \
         wdo deploy                   # to a running `wdo serve` (token: --token, WDO_ADMIN_TOKEN or --data)\n\n\
         Then:\n\n    curl -X POST localhost:8787/{name}/alice/increment\n    curl localhost:8787/{name}/alice\n"
    );
    let mut files = vec![
        ("wrangler.toml".to_string(), config),
        (main.to_string(), source),
        ("README.md".into(), readme),
        (".gitignore".into(), ".wdo-build/\nnode_modules/\n.wrangler/\n".into()),
    ];
    if typescript {
        // For editors: Cloudflare's types (`npm install` fetches them; building does not need them).
        let package = format!(
            "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"type\": \"module\",\n  \
             \"devDependencies\": {{\n    \"@cloudflare/workers-types\": \"^4.20250401.0\",\n    \"typescript\": \"^5.8.0\"\n  }}\n}}\n"
        );
        let tsconfig = "{\n  \"compilerOptions\": {\n    \"target\": \"es2022\",\n    \"module\": \"es2022\",\n    \
             \"moduleResolution\": \"bundler\",\n    \"strict\": true,\n    \"noEmit\": true,\n    \
             \"types\": [\"@cloudflare/workers-types\"]\n  },\n  \"include\": [\"src\"]\n}\n";
        files.push(("package.json".into(), package));
        files.push(("tsconfig.json".into(), tsconfig.into()));
    }
    (files, vec!["wdo build".into()])
}

fn readme(name: &str, lang: Lang, build: &[String]) -> String {
    let source = match lang {
        Lang::Rust => "`src/lib.rs`",
        Lang::Js => "`app.js` (the SDK is `wdo.js`, with `http.js` and `objects.js`; `worker.js` for a worker)",
        _ => "`app.py` (the SDK is `wdo/`)",
    };
    let mut text = format!(
        "# {name}\n\nA wdo durable object: {source} is the object, a counter per object name.\n\
         `wit/object.wit` is the contract with the host, `wdo.toml` the manifest.\n\n## Build and deploy\n\n"
    );
    for command in build {
        text.push_str(&format!("    {command}\n"));
    }
    text.push_str(&format!(
        "    wdo deploy          # to a running `wdo serve` (token: --token, WDO_ADMIN_TOKEN or --data)\n\n\
         Then:\n\n    curl -X POST localhost:8787/{name}/alice/increment\n    curl localhost:8787/{name}/alice\n"
    ));
    text
}

fn template(text: &str, name: &str) -> String {
    text.replace("{{class}}", name)
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    if path.extension().is_some_and(|e| e == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}
