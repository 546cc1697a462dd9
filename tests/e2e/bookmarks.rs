//! Bookmarks (`storage.current-bookmark`, `bookmark-for-time`, `restore-on-next-session`): an
//! object asks to come back as it was at a bookmark, and its next session starts there; the same
//! in Rust, JavaScript and Python.

use crate::backup::file_url;
use crate::harness::{Server, Site, guest};
use std::time::{Duration, SystemTime};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn bookmarks_bring_an_object_back(server: &Server, class: &str) {
    let path = |route: &str| format!("/{class}/b/bookmark/{route}");
    let reading = path("read");
    let read = || server.get(&reading);
    assert_eq!(server.post(&path("write"), "v1").await.0, 200, "{class}");
    let (status, first) = server.get(&path("now")).await;
    assert!(status == 200 && first.starts_with("wdo-"), "{class}: {status} {first}");
    assert_eq!(server.post(&path("write"), "v2").await.0, 200, "{class}");
    let (status, undo) = server.post(&path("restore"), &first).await;
    assert!(status == 200 && undo.starts_with("wdo-") && undo > first, "{class}: {status} {undo}");
    assert_eq!(read().await, (200, "v2".into()), "{class}: this session goes on as it was");
    // The session ends when the instance idles (--idle-timeout); the next one starts at the bookmark.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(read().await, (200, "v1".into()), "{class}: the next session starts at the bookmark");
    // Undone at once: ask, then fail on purpose (Cloudflare's `ctx.abort()`).
    let (status, body) = server.post(&path("restore-abort"), &undo).await;
    assert_eq!(status, 500, "{class}: {body}");
    assert_eq!(read().await, (200, "v2".into()), "{class}: the restore is undone");
    assert_eq!(read().await, (200, "v2".into()), "{class}: and asks nothing more");

    let (status, past) = server.get(&path(&format!("at?ms={}", now_ms() - 10))).await;
    assert!(status == 200 && past.starts_with("wdo-"), "{class}: {status} {past}");
    let (status, body) = server.get(&path(&format!("at?ms={}", now_ms() + 60_000))).await;
    // The Rust SDK answers an invalid argument with 400; the others fail the event (500).
    assert!(status >= 400 && body.contains("is in the future"), "{class}: {status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_comes_back_at_a_bookmark_in_rust_javascript_and_python() {
    let site =
        Site::new(&[("probe", guest("probe")), ("probe-js", guest("probe-js")), ("probe-py", guest("probe-py"))]);
    let store = site.dir.path().join("store");
    let server = site.start(&["--backup", &file_url(&store), "--backup-interval", "100ms", "--idle-timeout", "300ms"]);
    for class in ["probe", "probe-js", "probe-py"] {
        bookmarks_bring_an_object_back(&server, class).await;
    }
}

/// Without a backup store there is no history to go back to: the object is told so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_without_a_backup_store_say_what_they_need() {
    let site = Site::new(&[("probe", guest("probe"))]);
    let server = site.start(&[]);
    let (status, body) = server.get("/probe/b/bookmark/now").await;
    assert!(status == 403 && body.contains("bookmarks need the host's backup store"), "{status} {body}");
}
