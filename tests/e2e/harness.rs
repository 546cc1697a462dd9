//! Starts the real `wdo serve` on an ephemeral port with a temporary data folder, and talks to
//! it over real HTTP connections.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The path of a guest component, building the test guests once if they are missing
/// (`make test` builds them before the tests run).
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    let path = target.join("wasm32-wasip2/guest").join(format!("{}.wasm", name.replace('-', "_")));
    if !path.exists() && (name.ends_with("-js") || name.ends_with("-py") || name.ends_with("-c")) {
        // JavaScript, Python and C guests come from their own toolchains, which make installs.
        static LANGUAGES: OnceLock<()> = OnceLock::new();
        LANGUAGES.get_or_init(|| {
            let status = Command::new("make")
                .current_dir(workspace())
                .args(["js-guests", "py-guests", "c-guests"])
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .expect("run make to build the JavaScript and Python guests");
            assert!(status.success(), "building the JavaScript and Python guests failed");
        });
    }
    if !path.exists() {
        BUILT.get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .current_dir(workspace())
                .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
                .args(["-p", "counter", "-p", "ticket", "-p", "history", "-p", "reminder", "-p", "meter", "-p", "room"])
                .args(["-p", "poller", "-p", "relay"])
                .args(["-p", "chat", "-p", "cursors", "-p", "worker-counter-object", "-p", "worker-counter-worker"])
                .args(["-p", "probe", "-p", "other-world", "-p", "deploy-v1", "-p", "deploy-v2", "-p", "stray-import"])
                .args(["-p", "warm-up"])
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .expect("run cargo to build the test guests");
            assert!(status.success(), "building the test guests failed");
        });
    }
    assert!(path.exists(), "missing guest component {}", path.display());
    path
}

/// The hand-written component of two linear memories (`tests/guests/multi-memory`), built into
/// `dir`: no language toolchain makes one.
pub fn multi_memory_guest(dir: &Path) -> PathBuf {
    let wat = workspace().join("tests/guests/multi-memory/component.wat");
    let component = dir.join("multi_memory.wasm");
    std::fs::write(&component, wat::parse_file(&wat).unwrap()).unwrap();
    component
}

/// Where `wdo` finds esbuild and componentize-js to build wrangler projects: the repository's
/// `.tools` (what `make` installs), unless the environment says otherwise.
pub fn tools() -> PathBuf {
    std::env::var_os("WDO_TOOLS").map(PathBuf::from).unwrap_or_else(|| workspace().join(".tools"))
}

/// A compiled-component cache shared by test hosts (the JavaScript and Python components take
/// seconds each to compile, the nine Rust ones of [`Site::standard`] seconds together). Every
/// test host uses it unless its flags name another `--cache-dir` or hold [`OWN_CACHE`].
pub fn shared_cache() -> String {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    target.join("wdo-cache").display().to_string()
}

/// Not a flag of `wdo serve`: the harness takes it out and starts the host with its own cache
/// (`<data>/cache`, which the host owns and prunes), for tests that look at what a host compiles
/// or deletes.
pub const OWN_CACHE: &str = "(harness: the host's own compile cache)";

/// `flags` as `wdo serve` gets them: [`shared_cache`] unless they say otherwise.
fn serve_flags(flags: &[&str]) -> Vec<String> {
    let mut serve: Vec<String> = flags.iter().filter(|f| **f != OWN_CACHE).map(|f| f.to_string()).collect();
    if !flags.contains(&OWN_CACHE) && !flags.contains(&"--cache-dir") {
        serve.extend(["--cache-dir".to_string(), shared_cache()]);
    }
    serve
}

/// A temporary folder with a manifest serving the given classes.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    /// `classes`: (class name, component path).
    pub fn new(classes: &[(&str, PathBuf)]) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = String::new();
        for (name, path) in classes {
            manifest.push_str(&format!("[classes.{name}]\ncomponent = {:?}\n", path.display().to_string()));
        }
        std::fs::write(dir.path().join("wdo.toml"), manifest).unwrap();
        Site { dir }
    }

    /// The examples and the probe.
    pub fn standard() -> Site {
        Site::new(&[
            ("counter", guest("counter")),
            ("ticket", guest("ticket")),
            ("history", guest("history")),
            ("reminder", guest("reminder")),
            ("meter", guest("meter")),
            ("room", guest("room")),
            ("chat", guest("chat")),
            ("cursors", guest("cursors")),
            ("probe", guest("probe")),
        ])
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir.path().join("wdo.toml")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn start(&self, flags: &[&str]) -> Server {
        Server::start(&self.manifest(), &self.data(), flags, None)
    }
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    /// What `wdo serve` prints after its first line (the admin listener's address).
    stdout: BufReader<std::process::ChildStdout>,
    /// Lines read while waiting for "wdo ready", not yet asked for.
    early_lines: std::collections::VecDeque<String>,
}

impl Server {
    /// Starts `wdo serve`; `open_files` runs it under that open-file limit (soft and hard).
    pub fn start(manifest: &Path, data: &Path, flags: &[&str], open_files: Option<u32>) -> Server {
        Server::launch(Some(manifest), data, flags, open_files)
    }

    /// Starts `wdo serve` with or without a manifest.
    pub fn launch(manifest: Option<&Path>, data: &Path, flags: &[&str], open_files: Option<u32>) -> Server {
        Server::launch_with_env(manifest, data, flags, open_files, &[])
    }

    /// Starts `wdo serve` with these environment variables set as well.
    pub fn launch_with_env(
        manifest: Option<&Path>,
        data: &Path,
        flags: &[&str],
        open_files: Option<u32>,
        env: &[(&str, &str)],
    ) -> Server {
        Server::spawn(manifest, data, flags, open_files, env, true)
    }

    /// Starts `wdo serve` and returns as soon as it listens, while its classes may still compile.
    pub fn start_listening(manifest: &Path, data: &Path, flags: &[&str]) -> Server {
        Server::spawn(Some(manifest), data, flags, None, &[], false)
    }

    fn spawn(
        manifest: Option<&Path>,
        data: &Path,
        flags: &[&str],
        open_files: Option<u32>,
        env: &[(&str, &str)],
        wait_ready: bool,
    ) -> Server {
        let log = data.with_extension(format!("log.{}", rand_suffix()));
        let mut command = match open_files {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(env!("CARGO_BIN_EXE_wdo"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_wdo")),
        };
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data)
            .args(serve_flags(flags))
            .args(manifest)
            .env("WDO_LOG", "info")
            .env("WDO_TOOLS", tools())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = command.spawn().expect("start wdo serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(addr) = line.split("http://").nth(1).and_then(|rest| rest.split_whitespace().next()) else {
            let _ = child.wait();
            panic!(
                "wdo serve did not start: {line:?}\nits log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        // The host listens at once and compiles meanwhile: wait until every class serves.
        let mut early_lines = std::collections::VecDeque::new();
        let mut waiting = wait_ready;
        while waiting {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let _ = child.wait();
                panic!(
                    "wdo serve stopped before it was ready\nits log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            waiting = !line.starts_with("wdo ready");
            if waiting {
                early_lines.push_back(line);
            }
        }
        Server { child, addr: addr.parse().unwrap(), log, stdout, early_lines }
    }

    /// The next line `wdo serve` printed (after the first).
    pub fn next_line(&mut self) -> String {
        if let Some(line) = self.early_lines.pop_front() {
            return line;
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    /// The host process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`, then wait for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits (at most `within`) for the process to end by itself; whether it did.
    pub fn wait_for_exit(&mut self, within: Duration) -> bool {
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if !self.is_running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// One request on its own connection.
    pub async fn send(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.client().await.send(method, path, body).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        self.send("GET", path, "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, String) {
        self.send("POST", path, body).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Runs `wdo serve` expecting it to refuse to start; returns its exit status and stderr.
pub fn start_failure(manifest: &Path, data: &Path) -> String {
    start_failure_with(manifest, data, &[])
}

/// [`start_failure`] with more flags.
pub fn start_failure_with(manifest: &Path, data: &Path, flags: &[&str]) -> String {
    let log = data.with_extension(format!("refused.{}", rand_suffix()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_wdo"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(flags)
        .arg(manifest)
        .env("WDO_TOOLS", tools())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run wdo serve");
    // A host that starts after all would serve forever: give it a while, then stop it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("wdo serve did not stop within 120 s although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "wdo serve started although it should have refused: {said}");
    said
}

/// One HTTP/1.1 keep-alive connection.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    /// How long a request may wait for its answer before the test fails.
    answer_within: Duration,
}

/// How long a request waits for its answer unless the client is [`Client::patient`].
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

impl Client {
    /// Waits up to `within` for each answer (for what the host may take long over on a slow
    /// machine, such as compiling a JavaScript component from an empty cache).
    pub fn patient(mut self, within: Duration) -> Client {
        self.answer_within = within;
        self
    }

    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to wdo");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        Client { sender, addr, answer_within: ANSWER_WITHIN }
    }

    /// A connection, or `None` when nothing listens (a host that was killed).
    pub async fn try_connect(addr: SocketAddr) -> Option<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(connection);
        Some(Client { sender, addr, answer_within: ANSWER_WITHIN })
    }

    /// A request whose connection may break (the host killed under it): `None` then.
    pub async fn try_send(&mut self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        self.sender.ready().await.ok()?;
        let response = tokio::time::timeout(self.answer_within, self.sender.send_request(request))
            .await
            .unwrap_or_else(|_| panic!("wdo did not answer within {:?}", self.answer_within))
            .ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub async fn send(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let (status, body) = self.send_bytes(method, path, body.as_bytes().to_vec()).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A JSON request (for the WebDriver client); the answer parsed as JSON.
    pub async fn send_json(&mut self, method: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (status, bytes) = self.send_bytes(method, path, body.to_string().into_bytes()).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    pub async fn send_bytes(&mut self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.send_with_headers(method, path, &[], body).await
    }

    pub async fn send_with_headers(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        self.sender.ready().await.expect("connection ready");
        let response = tokio::time::timeout(self.answer_within, self.sender.send_request(request))
            .await
            .unwrap_or_else(|_| panic!("wdo did not answer within {:?}", self.answer_within))
            .expect("an HTTP response");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, body)
    }
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message of a socket (skipping pings and pongs), within 10 s.
pub async fn next_message(socket: &mut Socket) -> tokio_tungstenite::tungstenite::Message {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("no protocol error");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// Wakes new objects, `path(0)`, `path(1)`, ... (each answers JSON with `warm_ups`), until one
/// came up in a warmed-up spare instance (`warm_ups` not 0), within `within`. Returns every
/// answer, that one last.
pub async fn wake_until_warmed(
    server: &Server,
    within: Duration,
    path: impl Fn(usize) -> String,
) -> Vec<serde_json::Value> {
    let started = std::time::Instant::now();
    let mut answers = Vec::new();
    for i in 0.. {
        let path = path(i);
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let warmed = answer["warm_ups"] != 0;
        answers.push(answer);
        if warmed {
            break;
        }
        assert!(started.elapsed() < within, "{path}: no object woke in a warmed-up spare");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answers
}

/// `count` POSTs to `path` at once, each on its own connection; their answers.
pub async fn concurrent_posts(server: &Server, path: &str, count: usize) -> Vec<(u16, String)> {
    let mut tasks = Vec::new();
    for _ in 0..count {
        let (addr, path) = (server.addr, path.to_string());
        tasks.push(tokio::spawn(async move { Client::connect(addr).await.send("POST", &path, "").await }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

impl Server {
    /// Opens a WebSocket to `path`.
    pub async fn socket(&self, path: &str) -> Socket {
        let (socket, response) =
            tokio_tungstenite::connect_async(format!("ws://{}{path}", self.addr)).await.expect("WebSocket upgrade");
        assert_eq!(response.status(), 101);
        socket
    }
}
