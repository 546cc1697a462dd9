//! The cursor page in a real browser: headless Chromium (Debian's package), driven through
//! chromedriver over the W3C WebDriver protocol. `make test` installs both.

use crate::harness::{Client, Site};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    async fn start() -> Driver {
        let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver not found: `make test` installs Debian's chromium and chromium-driver");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, addr }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = Client::connect(self.addr).await.send_json(method, path, &body).await;
        assert_eq!(status, 200, "WebDriver {method} {path}: {answer}");
        answer["value"].clone()
    }

    async fn session(&self, profile: &std::path::Path) -> Page<'_> {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=800,600".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let value = self.call("POST", "/session", capabilities).await;
        Page { driver: self, id: value["sessionId"].as_str().expect("a session id").to_string() }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Page<'d> {
    driver: &'d Driver,
    id: String,
}

impl Page<'_> {
    async fn goto(&self, url: &str) {
        self.driver.call("POST", &format!("/session/{}/url", self.id), json!({"url": url})).await;
    }

    async fn script(&self, script: &str) -> Value {
        self.driver
            .call("POST", &format!("/session/{}/execute/sync", self.id), json!({"script": script, "args": []}))
            .await
    }

    /// Real pointer input: moves to (x, y), optionally clicking there.
    async fn pointer(&self, x: i64, y: i64, click: bool) {
        let mut actions = vec![json!({"type": "pointerMove", "duration": 0, "x": x, "y": y, "origin": "viewport"})];
        if click {
            actions.push(json!({"type": "pointerDown", "button": 0}));
            actions.push(json!({"type": "pointerUp", "button": 0}));
        }
        let body = json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": actions}]});
        self.driver.call("POST", &format!("/session/{}/actions", self.id), body).await;
    }

    /// Polls `script` until it returns something other than null/false.
    async fn wait_for(&self, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let value = self.script(script).await;
            if !(value.is_null() || value == json!(false)) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for `{script}`");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn close(self) {
        self.driver.call("DELETE", &format!("/session/{}", self.id), json!({})).await;
    }
}

/// The script that finds the cursor of `id` at (x, y) on a page.
fn cursor_at(id: &Value, x: i64, y: i64) -> String {
    let id = id.as_str().expect("ids are strings");
    format!(
        "const c = document.querySelector('.cursor[data-id=\"{id}\"]'); \
         return !!c && c.style.left === '{x}px' && c.style.top === '{y}px';"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_see_each_others_cursors_names_and_clicks_across_hibernation() {
    let site = Site::standard();
    // Instances idle out after 1 s: the room hibernates between moves, its sockets stay.
    let server = site.start(&["--idle-timeout", "1s"]);
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let a = driver.session(&profiles.path().join("a")).await;
    let b = driver.session(&profiles.path().join("b")).await;
    let url = format!("http://{}/cursors/demo", server.addr);
    a.goto(&url).await;
    b.goto(&url).await;
    let a_id = a.wait_for("return document.body.dataset.me || null").await;
    let b_id = b.wait_for("return document.body.dataset.me || null").await;
    assert_ne!(a_id, b_id, "each page has its own identity");
    // Each visitor has a generated name and a colour, and both pages count two visitors.
    let a_name = a.wait_for("return document.body.dataset.name || null").await;
    let b_name = b.wait_for("return document.body.dataset.name || null").await;
    let named = |name: &Value| name.as_str().is_some_and(|n| n.len() > 3 && n.contains('-'));
    assert!(named(&a_name) && named(&b_name) && a_name != b_name, "{a_name} {b_name}");
    for page in [&a, &b] {
        page.wait_for("return document.getElementById('count').dataset.count === '2'").await;
    }

    a.pointer(120, 80, false).await;
    b.wait_for(&cursor_at(&a_id, 120, 80)).await;
    let label = format!(
        "const c = document.querySelector('.cursor[data-id=\"{}\"] span'); return c && [c.textContent, c.style.background]",
        a_id.as_str().unwrap()
    );
    let label = b.script(&label).await;
    assert_eq!(label[0], a_name, "the cursor carries its visitor's name");
    assert!(label[1].as_str().is_some_and(|c| c.starts_with("rgb")), "and colour: {label}");
    // Past the idle timeout the room has no instance; the next move wakes it, names intact.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.pointer(140, 90, false).await;
    b.wait_for(&cursor_at(&a_id, 140, 90)).await;
    let label = b
        .script(&format!(
            "return document.querySelector('.cursor[data-id=\"{}\"]').dataset.name",
            a_id.as_str().unwrap()
        ))
        .await;
    assert_eq!(label, a_name);
    b.pointer(300, 200, false).await;
    a.wait_for(&cursor_at(&b_id, 300, 200)).await;

    // A click ripples on the other page.
    a.pointer(200, 150, true).await;
    b.wait_for("return document.querySelectorAll('.ripple').length > 0").await;
    let own = format!("return !!document.querySelector('.cursor[data-id=\"{}\"]')", a_id.as_str().unwrap());
    let own = a.script(&own).await;
    assert_eq!(own, json!(false), "a page does not draw its own cursor");
    a.screenshot("room").await;
    // One leaves: the other counts one visitor again.
    a.close().await;
    b.wait_for("return document.getElementById('count').dataset.count === '1'").await;
    // The socket drops: the page says so, then comes back on its own.
    let dropped = b.script(DROP_SOCKET).await;
    assert_eq!(dropped, json!("reconnecting…"), "the page says the room is away");
    b.wait_for("return document.getElementById('status').textContent === 'live' && document.getElementById('count').dataset.count === '1'")
        .await;
    b.close().await;
}

impl Page<'_> {
    /// Saves what the page shows as `target/screenshots/<name>.png` (a test artifact).
    async fn screenshot(&self, name: &str) {
        use base64::Engine;
        let value = self.driver.call("GET", &format!("/session/{}/screenshot", self.id), json!({})).await;
        let png = base64::engine::general_purpose::STANDARD.decode(value.as_str().expect("base64")).unwrap();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| crate::harness::workspace().join("target"));
        let dir = target.join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Runs `script` with the page's functions, after setting an input's value.
fn type_and_submit(input: &str, value: &str, form: &str) -> String {
    format!(
        "document.getElementById('{input}').value = {value}; \
         document.querySelector('#{form} button').click(); return true;",
        value = json!(value)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_classes_live_counters_a_tail_and_an_objects_data() {
    const TOKEN: &str = "dashboard-token-0123456789";
    let site = Site::standard();
    let server = site.start(&["--admin-token", TOKEN]);
    for _ in 0..3 {
        assert_eq!(server.post("/counter/visible/increment", "").await.0, 200);
    }
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.session(&profiles.path().join("dashboard")).await;
    page.goto(&format!("http://{}/_wdo/admin/ui", server.addr)).await;
    // A wrong token is refused and asked again; the right one opens the dashboard.
    page.script(&type_and_submit("token", "not-the-token-at-all", "token-form")).await;
    page.wait_for("return document.getElementById('login-error').textContent.includes('refused')").await;
    page.script(&type_and_submit("token", TOKEN, "token-form")).await;
    page.wait_for("return !!document.querySelector('#classes tr[data-class=\"counter\"]')").await;
    page.wait_for("return !!document.querySelector('#classes tr[data-class=\"chat\"]')").await;
    // Live counters from the metrics, and the busiest objects.
    page.wait_for(
        "const b = document.querySelector('[data-metric=\"wdo_open_objects\"]'); \
         return !!b && Number(b.textContent) >= 1",
    )
    .await;
    page.wait_for("return [...document.querySelectorAll('#busiest a')].some(a => a.textContent === 'counter/visible')")
        .await;
    page.wait_for("return document.getElementById('tail').textContent.includes('watching')").await;
    // The tail shows a failure as it happens, with the guest's message.
    assert_eq!(server.post("/probe/crash/trap", "").await.0, 500);
    page.wait_for(
        "return [...document.querySelectorAll('#tail .line')].some(l => \
         l.dataset.outcome === 'trap' && l.textContent.includes('deliberate panic'))",
    )
    .await;
    page.wait_for(
        "return [...document.querySelectorAll('#outcomes tr')].some(r => \
         r.textContent.includes('probe') && r.textContent.includes('trap'))",
    )
    .await;
    // One object: its summary, its key-value data, and a read-only query.
    page.script(
        "document.getElementById('object-class').value = 'counter'; \
         document.getElementById('object-name').value = 'visible'; \
         document.querySelector('#object-form button').click(); return true;",
    )
    .await;
    page.wait_for(
        "return [...document.querySelectorAll('#kv tr')].some(r => \
         r.cells[0].textContent === 'value' && r.cells[1].textContent === '3')",
    )
    .await;
    page.wait_for("return document.getElementById('object-summary').textContent.includes('counter/visible')").await;
    page.script(&type_and_submit("sql", "SELECT 40 + 2 AS answer", "sql-form")).await;
    page.wait_for(
        "return document.querySelector('#sql-result th')?.textContent === 'answer' && \
         document.querySelector('#sql-result td')?.textContent === '42'",
    )
    .await;
    page.screenshot("dashboard").await;
    page.script("document.getElementById('object-section').scrollIntoView(); return true;").await;
    page.screenshot("dashboard-object").await;
    page.script(&type_and_submit("sql", "DELETE FROM _wdo_kv", "sql-form")).await;
    page.wait_for("return document.getElementById('sql-error').textContent.includes('refused')").await;
    assert_eq!(server.get("/counter/visible").await, (200, "3".to_string()), "nothing was written");
    page.close().await;
}

/// Closes the page's WebSocket as a dropped connection would, and answers what the page's status
/// says right after its close handler ran.
const DROP_SOCKET: &str = "const s = socket; return new Promise((done) => { \
    s.addEventListener('close', () => done(document.getElementById('status').textContent)); s.close(); });";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_race_hands_out_each_ticket_once_on_the_left_and_duplicates_on_the_right() {
    let site = Site::standard();
    let server = site.start(&[]);
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.session(&profiles.path().join("race")).await;
    page.goto(&format!("http://{}/ticket/demo/race", server.addr)).await;
    page.wait_for("return !!document.getElementById('go')").await;
    page.script("document.getElementById('claims').value = '50'; document.getElementById('go').click(); return true;")
        .await;
    page.wait_for(
        "return document.getElementById('left').dataset.done === 'true' && \
         document.getElementById('right').dataset.done === 'true'",
    )
    .await;
    let read = |side: &str| {
        format!(
            "const s = document.getElementById('{side}').dataset; \
             return [Number(s.claims), Number(s.duplicates), Number(s.gaps)];"
        )
    };
    let left = page.script(&read("left")).await;
    let right = page.script(&read("right")).await;
    assert_eq!(left, json!([50, 0, 0]), "the object hands out 1..=50, each once");
    assert_eq!(right[0], json!(50));
    let (duplicates, lost) = (right[1].as_u64().unwrap(), right[2].as_u64().unwrap());
    assert!(duplicates + lost >= 1, "the naive side loses increments: {right}");
    let highlighted = page.script("return document.querySelectorAll('#right .t.dup').length").await;
    assert!(highlighted.as_u64().unwrap() >= 1, "duplicates are highlighted");
    page.screenshot("race").await;
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_landing_page_shows_the_demos_and_every_link_on_it_resolves() {
    let site = Site::standard();
    let server = site.start(&[]);
    // Scripts keep the plain-text index.
    let (status, index) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(index.starts_with("wdo: durable objects"), "{index}");
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.session(&profiles.path().join("landing")).await;
    page.goto(&format!("http://{}/", server.addr)).await;
    let demos = page
        .wait_for(
            "const d = [...document.querySelectorAll('.demo')].map(d => d.dataset.class); return d.length ? d : null",
        )
        .await;
    assert_eq!(demos, json!(["cursors", "ticket", "chat"]));
    let classes = page.script("return [...document.querySelectorAll('#classes code')].map(c => c.textContent)").await;
    assert!(classes.as_array().unwrap().iter().any(|c| c == "counter"), "{classes}");
    // The room embedded in the landing page is live: it says who you are.
    page.wait_for(
        "const f = document.querySelector('.demo[data-class=\"cursors\"] iframe'); \
         return !!f && !!f.contentDocument && !!f.contentDocument.body.dataset.name",
    )
    .await;
    let links = page.script("return [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))").await;
    let links: Vec<String> = links.as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    assert!(links.len() >= 5, "{links:?}");
    for link in &links {
        assert!(link.starts_with('/'), "links stay on this host: {link}");
        let (status, _) = server.get(link).await;
        assert_eq!(status, 200, "{link}");
    }
    page.screenshot("landing").await;
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_shows_names_presence_history_with_times_and_reconnects() {
    let site = Site::standard();
    let server = site.start(&[]);
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let ann = driver.session(&profiles.path().join("ann")).await;
    let bob = driver.session(&profiles.path().join("bob")).await;
    let url = format!("http://{}/chat/garden", server.addr);
    let join = |name: &str| {
        format!(
            "document.querySelector('#join input').value = '{name}'; document.querySelector('#join button').click(); return true;"
        )
    };
    ann.goto(&url).await;
    ann.script(&join("Ann")).await;
    ann.wait_for("return document.getElementById('status').textContent === 'live as Ann'").await;
    ann.script("document.querySelector('#say input').value = 'hello garden'; document.querySelector('#say button').click(); return true;")
        .await;
    ann.wait_for("return [...document.querySelectorAll('.msg .text')].some(t => t.textContent === 'hello garden')")
        .await;
    bob.goto(&url).await;
    bob.script(&join("Bob")).await;
    // Bob gets the history, with its time, and both see both present.
    bob.wait_for(
        "const m = [...document.querySelectorAll('.msg')].find(m => m.querySelector('.text').textContent === 'hello garden'); \
         return !!m && m.querySelector('.who').textContent === 'Ann' && /\\d/.test(m.querySelector('.at').textContent)",
    )
    .await;
    for page in [&ann, &bob] {
        page.wait_for("return document.getElementById('present').dataset.names.split(',').sort().join() === 'Ann,Bob'")
            .await;
    }
    ann.wait_for("return [...document.querySelectorAll('.notice')].some(n => n.textContent.startsWith('Bob joined'))")
        .await;
    // The socket drops: the page says so, rejoins under the same name, history not doubled.
    let dropped = bob.script(DROP_SOCKET).await;
    assert_eq!(dropped, json!("reconnecting…"));
    bob.wait_for("return document.getElementById('status').textContent === 'live as Bob'").await;
    let copies = bob
        .script(
            "return [...document.querySelectorAll('.msg .text')].filter(t => t.textContent === 'hello garden').length",
        )
        .await;
    assert_eq!(copies, json!(1));
    bob.screenshot("chat").await;
    ann.close().await;
    bob.close().await;
}
