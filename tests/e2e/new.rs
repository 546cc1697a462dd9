//! `wdo new`: a project in each language (and in Cloudflare's style, JavaScript and TypeScript)
//! builds with the commands it prints, deploys to a running host and answers.

use crate::harness::Server;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_project_in_each_language_builds_deploys_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    for lang in ["rust", "js", "python", "cloudflare", "ts"] {
        // A host per project: a deploy makes the host serve exactly its manifest.
        let data = dir.path().join(format!("data-{lang}"));
        let server = Server::launch(None, &data, &[], None);
        let name = format!("hello-{lang}");
        let output = Command::new(env!("CARGO_BIN_EXE_wdo"))
            .args(["new", &name, "--lang", lang])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{lang}: {}", String::from_utf8_lossy(&output.stderr));
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        // The commands it prints, between `cd` and `wdo deploy`, as a user would run them.
        let commands: Vec<&str> = printed
            .lines()
            .filter_map(|line| line.strip_prefix("    "))
            .skip_while(|command| command.starts_with("cd "))
            .take_while(|command| !command.starts_with("wdo deploy"))
            .collect();
        assert!(!commands.is_empty(), "{lang}: no build commands in {printed}");
        let project = dir.path().join(&name);
        for command in commands {
            let ran = Command::new("sh")
                .args(["-c", command])
                .current_dir(&project)
                // Its own target folder: the manifest names the component inside it.
                .env_remove("CARGO_TARGET_DIR")
                .env("PATH", tool_path())
                .env("WDO_TOOLS", crate::harness::tools())
                .output()
                .unwrap();
            let said = format!("{}{}", String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
            assert!(ran.status.success(), "{lang}: `{command}` failed:\n{said}");
        }
        let deploy = Command::new(env!("CARGO_BIN_EXE_wdo"))
            .args(["deploy", "--server", &format!("http://{}", server.addr), "--data"])
            .arg(&data)
            .current_dir(&project)
            .env("WDO_TOOLS", crate::harness::tools())
            .output()
            .unwrap();
        assert!(deploy.status.success(), "{lang}: {}", String::from_utf8_lossy(&deploy.stderr));
        assert!(String::from_utf8_lossy(&deploy.stdout).contains("created"), "{lang}");
        assert_eq!(server.post(&format!("/{name}/alice/increment"), "").await, (200, "1".into()), "{lang}");
        assert_eq!(server.post(&format!("/{name}/alice/increment"), "").await, (200, "2".into()), "{lang}");
        assert_eq!(server.get(&format!("/{name}/alice")).await, (200, "2".into()), "{lang}");
    }
    // A name that cannot be a class is refused before anything is written.
    let output =
        Command::new(env!("CARGO_BIN_EXE_wdo")).args(["new", "bad.name"]).current_dir(dir.path()).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid class name `bad.name`"));
    assert!(!dir.path().join("bad.name").exists());
}

/// The user's PATH, plus cargo's folder (tests may run with a PATH that lacks it) and wdo's.
fn tool_path() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let cargo = std::path::Path::new(env!("CARGO")).parent().unwrap().display().to_string();
    let wdo = std::path::Path::new(env!("CARGO_BIN_EXE_wdo")).parent().unwrap().display().to_string();
    format!("{wdo}:{cargo}:{path}")
}
