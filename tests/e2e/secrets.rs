//! Files and secrets: the data folder is the host's alone, the admin token need not appear on
//! the command line, and the admin API can live on a listener of its own.

use crate::harness::{Client, Server, Site};
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_can_have_its_own_listener_and_a_token_from_a_file() {
    let site = Site::standard();
    let token_file = site.dir.path().join("token");
    std::fs::write(&token_file, "a-token-from-a-file-0123456789\n").unwrap();
    let token_file = token_file.display().to_string();
    let flags = ["--admin-listen", "127.0.0.1:0", "--admin-token-file", &token_file];
    let mut server = Server::start(&site.manifest(), &site.data(), &flags, None);
    let line = server.next_line();
    let admin: std::net::SocketAddr =
        line.trim().strip_prefix("wdo admin API on http://").unwrap_or_else(|| panic!("{line:?}")).parse().unwrap();
    let bearer = [("authorization", "Bearer a-token-from-a-file-0123456789")];

    // The public listener serves objects, not the admin API.
    let mut public = server.client().await;
    assert_eq!(public.send("POST", "/counter/a/increment", "").await, (200, "1".into()));
    let (status, body) = public.send_with_headers("GET", "/_wdo/admin/deployed", &bearer, Vec::new()).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("--admin-listen"), "{}", String::from_utf8_lossy(&body));

    // The admin listener serves the admin API (with the token read from the file), not objects.
    let mut private = Client::connect(admin).await;
    let (status, body) = private.send_with_headers("GET", "/_wdo/admin/deployed", &bearer, Vec::new()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("counter"));
    assert_eq!(private.send("GET", "/_wdo/admin/deployed", "").await.0, 401);
    let (status, body) = private.send("POST", "/counter/a/increment", "").await;
    assert_eq!(status, 404);
    assert!(body.contains("only the admin API"), "{body}");
    assert_eq!(private.send("GET", "/_wdo/health", "").await, (200, "ok\n".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_and_everything_in_it_are_private_to_the_host() {
    let site = Site::standard();
    let server = site.start(&[]);
    assert_eq!(server.post("/counter/a/increment", "").await, (200, "1".into()));
    assert_eq!(server.post("/probe/p/sql", r#"{"query":"CREATE TABLE t (x)","params":[]}"#).await.0, 200);
    let data = site.data();
    assert_eq!(mode(&data), 0o700, "the data folder");
    let mut databases = 0;
    let mut stack = vec![data.join("objects")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                stack.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                databases += path.extension().is_some_and(|e| e == "sqlite") as usize;
            }
        }
    }
    assert!(databases >= 2, "two objects' databases were checked");
    assert_eq!(mode(&data.join("admin-token")), 0o600);
    assert_eq!(mode(&data.join("alarms.sqlite")), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_that_is_not_yet_a_data_folder_is_warned_about_not_changed() {
    let site = Site::standard();
    let shared = site.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(&site.manifest(), &shared, &[], None);
    assert_eq!(server.post("/counter/a/increment", "").await, (200, "1".into()));
    assert_eq!(mode(&shared), 0o755, "a folder the host did not make is not chmod-ed");
    assert!(server.log().contains("can be read by other users"), "{}", server.log());
    // Once it holds a host's data (its lock file), the next start makes it private.
    drop(server);
    let _server = Server::start(&site.manifest(), &shared, &[], None);
    assert_eq!(mode(&shared), 0o700);
}
