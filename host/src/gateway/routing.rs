//! From an HTTP request to an object, and from its answer (or an error) back to HTTP.

use crate::Host;
use crate::budget::Held;
use crate::error::Error;
use crate::host::Upgrade;
use crate::message::{Request, Response};
use crate::object::WorkerUpgrade;
use crate::observe::{ClassMetrics, Context, Outcome, REQUEST_ID_HEADER};
use bytes::Bytes;
use http_body_util::Either;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use std::convert::Infallible;
use std::sync::Arc;

pub(super) type HttpResponse = hyper::Response<Full<Bytes>>;

/// Answers one request, under its request id (the client's `x-request-id`, or a new one),
/// which every log line and tail record of its work carries and the response returns.
pub async fn handle(
    host: Host,
    request: hyper::Request<Incoming>,
    routes: Routes,
) -> Result<hyper::Response<super::observe::Body>, Infallible> {
    let given = request.headers().get(REQUEST_ID_HEADER).map(|id| id.as_bytes());
    let request_id = crate::observe::request_id(given);
    // The one streamed answer: it skips `route`, whose routes all answer whole bodies.
    if request.uri().path() == "/_wdo/admin/tail" && routes != Routes::Public {
        let query = request.uri().query().unwrap_or("").to_string();
        let streamed = super::admin::authorize(&host, &request).and_then(|()| super::observe::tail(&host, &query));
        return Ok(streamed.unwrap_or_else(|error| error_response(&error).map(Either::Left)));
    }
    let context = Context { request_id: Some(request_id.clone()), ..Context::default() };
    let mut counted = None;
    // Boxed: hyper moves this future (whole, ~1 KiB now) into its connection state for every
    // request, and each `async` layer around a future by value roughly doubles its size: with
    // `route` inline it was 29 KiB, copied twice per request (~2 µs of the hot path).
    let answer = context.scope(Box::pin(route(&host, request, routes, &mut counted))).await;
    if let Some(class) = counted {
        class.request(match &answer {
            Ok(response) => Outcome::of_status(response.status().as_u16()),
            Err(error) => Outcome::of_error(error),
        });
    }
    let mut response = answer.unwrap_or_else(|error| error_response(&error));
    if let Ok(id) = hyper::header::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, id);
    }
    Ok(response.map(Either::Left))
}

/// `counted`: set to the class the request addressed, once it is known to be served (so that
/// its count has a bounded label).
async fn route(
    host: &Host,
    mut request: hyper::Request<Incoming>,
    routes: Routes,
    counted: &mut Option<Arc<ClassMetrics>>,
) -> Result<HttpResponse, Error> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let class = parts.next().unwrap_or("");
    if class == "_wdo" {
        return match (parts.next().unwrap_or(""), routes) {
            ("metrics", Routes::Public) => {
                Ok(text(404, "metrics are served on the host's --admin-listen address (/_wdo/metrics)\n".into()))
            }
            // The admin listener is the operator's own address: a scraper needs no token there.
            ("metrics", Routes::Admin) => Ok(super::observe::metrics(host)),
            ("metrics", Routes::All) => {
                super::admin::authorize(host, &request)?;
                Ok(super::observe::metrics(host))
            }
            ("admin", Routes::Public) => Ok(text(
                404,
                "the admin API is not served on this listener: use the host's --admin-listen address\n".into(),
            )),
            // The rare routes are boxed so that their large futures do not size every request's.
            ("admin", _) => {
                let (host, path) = (host.clone(), parts.next().unwrap_or("").to_string());
                to_the_end(async move { super::admin::handle(&host, request, &path).await }).await
            }
            ("cluster", Routes::All | Routes::Public) => {
                Box::pin(forwarded_route(host, request, parts.next().unwrap_or(""))).await
            }
            (what @ "health", _) | (what, Routes::All | Routes::Public) => host_route(host, what),
            (_, Routes::Admin) => Ok(admin_only()),
        };
    }
    if routes == Routes::Admin {
        return Ok(admin_only());
    }
    host.serving(class).await?;
    let metrics = &host.observe().metrics;
    match class {
        "_call" if host.config().call_route => return Box::pin(call_route(host, request, counted)).await,
        "_call" => {
            return Ok(text(
                404,
                "the call route is off: start the host with --call-route to call objects' methods over HTTP \
                 (it goes around the worker, if there is one)\n"
                    .into(),
            ));
        }
        _ if host.has_worker() => {
            *counted = Some(metrics.worker().clone());
            return Box::pin(worker_route(host, request, path, query)).await;
        }
        "" if wants_html(&request) => return Ok(landing(host)),
        "" => return Ok(text(200, index(host))),
        _ => *counted = Some(metrics.class(class)),
    }
    let name = decode_name(parts.next().unwrap_or(""))?;
    let rest = format!("/{}", parts.next().unwrap_or(""));
    let upgrade = super::upgrade::requested(&mut request)?;
    // In a cluster, an upgrade for an object held by another host is proxied there; one that
    // another host proxied here is served here.
    let proxied = host.cluster().is_some_and(|cluster| {
        request.headers().contains_key(super::upgrade::PROXIED_HEADER) && cluster.authenticates(request.headers())
    });
    let upgrade = match (upgrade, host.cluster()) {
        (Some(upgrade), Some(cluster)) if !proxied => match cluster.remote_owner(&host.object_key(class, &name)?) {
            Some(owner) => {
                let (head, _) = request.into_parts();
                return Box::pin(upgrade.proxy(&head, host, owner)).await;
            }
            None => Some(upgrade),
        },
        (upgrade, _) => upgrade,
    };
    let (request, _held) = read_request(host, request, rest, query).await?;
    let response = match upgrade {
        Some(upgrade) => match Box::pin(host.upgrade(class, &name, request, proxied)).await? {
            Upgrade::Accepted(accepted) => return Ok(upgrade.accept(host, accepted)),
            Upgrade::Refused(response) => response,
        },
        None => host.fetch(class, &name, request).await?,
    };
    into_http(response, class, &name)
}

/// With a worker, every request but the host's own goes to it, path and query as sent.
/// A WebSocket upgrade goes to the worker too, which may hand it on to an object (the socket
/// then belongs to that object, as if the client had asked the object directly).
async fn worker_route(
    host: &Host,
    mut request: hyper::Request<Incoming>,
    path: String,
    query: String,
) -> Result<HttpResponse, Error> {
    let upgrade = super::upgrade::requested(&mut request)?;
    let (request, _held) = read_request(host, request, path, query).await?;
    let (response, accepted) = host.worker_exchange(request, upgrade.is_some()).await?;
    match (upgrade, accepted) {
        (Some(upgrade), WorkerUpgrade::Accepted(accepted)) if response.status == 101 => {
            Ok(upgrade.accept(host, accepted))
        }
        (Some(upgrade), WorkerUpgrade::Elsewhere(upstream)) if response.status == 101 => {
            Ok(upgrade.accept_elsewhere(upstream))
        }
        // The object accepted, but the worker answered something else: no connection comes.
        // Dropped, the socket is abandoned (the object hears it close); the connection to the
        // host of an object held elsewhere closes, and so does its socket there.
        (_, WorkerUpgrade::Accepted(_) | WorkerUpgrade::Elsewhere(_)) => into_http(response, "worker", "-"),
        (_, _) if response.status == 101 => Err(Error::EventFailed {
            outcome: crate::observe::Outcome::ErrorResponse,
            object: "worker".into(),
            reason: "answered 101 Switching Protocols, but no object accepted a WebSocket \
                     (hand the upgrade request to an object's fetch, which accepts it)"
                .into(),
        }),
        (_, _) => into_http(response, "worker", "-"),
    }
}

/// `POST /_call/<class>/<name>/<method>`: the object's `call` export, the request body as the
/// arguments, the result as the response body. (Class names start with a letter, so no object
/// path can collide with it.) A callee's own error answers 500 with its message.
async fn call_route(
    host: &Host,
    request: hyper::Request<Incoming>,
    counted: &mut Option<Arc<ClassMetrics>>,
) -> Result<HttpResponse, Error> {
    let path = request.uri().path().to_string();
    let mut parts = path.trim_start_matches("/_call/").splitn(3, '/');
    let (class, name, method) = match (parts.next(), parts.next(), parts.next()) {
        (Some(class), Some(name), Some(method)) if !class.is_empty() && !method.is_empty() => (class, name, method),
        _ => return Err(Error::InvalidName("call an object as POST /_call/<class>/<name>/<method>".into())),
    };
    if request.method() != hyper::Method::POST {
        return Ok(text(405, "calls are POST requests\n".into()));
    }
    let name = decode_name(name)?;
    host.serving(class).await?;
    *counted = Some(host.observe().metrics.class(class));
    let (body, _held) = read_body(host, request.into_body(), host.config().max_call_payload).await?;
    match host.call(class, &name, method, body).await? {
        Ok(result) => Ok(hyper::Response::new(Full::new(Bytes::from(result)))),
        Err(message) => Ok(text(500, format!("{class}/{name}.{method} failed: {message}\n"))),
    }
}

/// `POST /_wdo/cluster/event/<class>/<id>`: an event another host of the cluster forwarded
/// to this one (`cluster/forward.rs`).
async fn forwarded_route(host: &Host, request: hyper::Request<Incoming>, rest: &str) -> Result<HttpResponse, Error> {
    if let Some(target) = rest.strip_prefix("upgrade/") {
        return handed_upgrade_route(host, request, target.to_string()).await;
    }
    if request.method() != hyper::Method::POST {
        return Ok(text(405, "the cluster's routes take POST requests\n".into()));
    }
    if rest == "change" || rest == "drain" || rest == "restore" {
        let (host, rest) = (host.clone(), rest.to_string());
        return to_the_end(async move { cluster_change_route(&host, request, &rest).await }).await;
    }
    let Some(path) = rest.strip_prefix("event/") else {
        return Ok(text(
            404,
            "the cluster's routes are /_wdo/cluster/event/<class>/<id> and /_wdo/cluster/change\n".into(),
        ));
    };
    let path = path.to_string();
    let authenticated = host.cluster().is_some_and(|cluster| cluster.authenticates(request.headers()));
    // The request's body or the call's arguments, and the head that describes them.
    let limit = host.config().max_request_body.max(host.config().max_call_payload) + (1 << 20);
    let (body, _held) = read_body(host, request.into_body(), limit).await?;
    let answer = crate::cluster::serve_forwarded(host, authenticated, &path, &body).await?;
    Ok(hyper::Response::new(Full::new(Bytes::from(answer))))
}

/// Runs a request's handler in a task of its own, to its end even if the client hangs up (hyper
/// then drops the request's future): the admin API's changes and the cluster's are several steps
/// (made here, recorded in etcd, made on the other hosts; an object paused, moved, resumed) that
/// must not stop part way.
async fn to_the_end(
    handler: impl std::future::Future<Output = Result<HttpResponse, Error>> + Send + 'static,
) -> Result<HttpResponse, Error> {
    tokio::spawn(handler).await.map_err(|e| Error::Internal(format!("the request's handler failed: {e}")))?
}

/// `POST /_wdo/cluster/{change,drain,restore}`: another host of the cluster asks this one to
/// catch up with the cluster's changes, to drain, or to restore an object it holds.
async fn cluster_change_route(
    host: &Host,
    request: hyper::Request<Incoming>,
    rest: &str,
) -> Result<HttpResponse, Error> {
    let cluster = host.cluster().ok_or_else(|| Error::BadRequest("this host is not in a cluster".into()))?;
    if !cluster.authenticates(request.headers()) {
        return Err(Error::Unauthorized(": requests from other hosts carry the cluster's x-wdo-cluster-auth"));
    }
    if rest == "drain" {
        let answer = cluster.drain_host(cluster.host_id()).await?;
        return Ok(hyper::Response::new(Full::new(Bytes::from(answer.to_string()))));
    }
    if rest == "restore" {
        return restore_here(host, request).await;
    }
    let (body, _held) = read_body(host, request.into_body(), host.config().max_request_body).await?;
    let told: crate::cluster::CatchUp = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("a cluster change that is not the JSON expected: {e}")))?;
    let applied = crate::cluster::catch_up_to(host, told.revision).await?;
    let answer = serde_json::json!({ "applied": applied });
    Ok(hyper::Response::new(Full::new(Bytes::from(answer.to_string()))))
}

/// `POST /_wdo/cluster/restore` (`{"class", "name", "at_ms"}`): another host of the cluster asks
/// this one to restore an object it holds (`Cluster::restore_elsewhere`). Answers JSON: the
/// database's size, or the error's message (with the holder, on a 421).
async fn restore_here(host: &Host, request: hyper::Request<Incoming>) -> Result<HttpResponse, Error> {
    #[derive(serde::Deserialize)]
    struct Asked {
        class: String,
        name: String,
        at_ms: Option<u64>,
    }
    let (body, _held) = read_body(host, request.into_body(), 64 << 10).await?;
    let asked: Asked = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("a cluster restore that is not the JSON expected: {e}")))?;
    let (status, answer) = match host.restore_object_here(&asked.class, &asked.name, asked.at_ms, true).await {
        Ok(bytes) => (200, serde_json::json!({ "bytes": bytes })),
        Err(e) => {
            let holder = match &e {
                Error::Misdirected { host, .. } => Some(host.clone()),
                _ => None,
            };
            (e.status(), serde_json::json!({ "message": e.to_string(), "host": holder }))
        }
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(answer.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    Ok(response)
}

/// `GET /_wdo/cluster/upgrade/<class>/<id><path>`: a WebSocket upgrade that a worker on
/// another host of the cluster hands to an object held here (`upgrade::hand_to_owner`).
async fn handed_upgrade_route(
    host: &Host,
    mut request: hyper::Request<Incoming>,
    target: String,
) -> Result<HttpResponse, Error> {
    let cluster = host.cluster().ok_or_else(|| Error::BadRequest("this host is not in a cluster".into()))?;
    if !cluster.authenticates(request.headers()) {
        return Err(Error::Unauthorized(": requests from other hosts carry the cluster's x-wdo-cluster-auth"));
    }
    let bad = || Error::BadRequest("a handed upgrade is GET /_wdo/cluster/upgrade/<class>/<id><path>".into());
    let (class, rest) = target.split_once('/').ok_or_else(bad)?;
    let (id, path) = rest.find('/').map_or((rest, "/"), |at| rest.split_at(at));
    let upgrade = super::upgrade::requested(&mut request)?.ok_or_else(bad)?;
    let query = request.uri().query().unwrap_or("").to_string();
    let (request, _held) = read_request(host, request, path.to_string(), query).await?;
    match host.handed_upgrade(class, id, request).await? {
        Upgrade::Accepted(accepted) => Ok(upgrade.accept(host, accepted)),
        Upgrade::Refused(response) => into_http(response, class, id),
    }
}

/// An object name from a path segment.
fn decode_name(segment: &str) -> Result<String, Error> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|name| name.into_owned())
        .map_err(|_| Error::InvalidName("object name is not valid UTF-8 after percent-decoding".into()))
}

/// The request as an object (or the worker) sees it, its body read under `limit`.
async fn read_request(
    host: &Host,
    request: hyper::Request<Incoming>,
    path: String,
    query: String,
) -> Result<(Request, Held), Error> {
    let limit = host.config().max_request_body;
    let (head, body) = request.into_parts();
    let headers = head
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let (body, held) = read_body(host, body, limit).await?;
    Ok((Request { method: head.method.to_string(), path, query, headers, body }, held))
}

/// Reads a body of at most `limit` bytes; over it is a 413 (at once when the declared length is
/// over, before anything is read), a broken connection is not. The
/// body must keep up the host's minimum rate: it may take `body_timeout` plus the time its
/// bytes so far take at `min_body_rate`, so a client that dribbles is cut off (408).
///
/// The bytes come from the host's budget of buffered input (`budget.rs`): the declared length
/// before reading, or each frame as it comes; past the budget the request is refused (503). The
/// caller keeps the returned `Held` until the body's event has run.
pub(super) async fn read_body(host: &Host, mut body: Incoming, limit: usize) -> Result<(Vec<u8>, Held), Error> {
    use hyper::body::Body;
    let config = host.config();
    let budget = host.budget();
    let busy = || {
        Error::Busy(format!(
            "the host holds all the client input it may ({} bytes, --max-buffered-input); try again shortly",
            budget.total()
        ))
    };
    let mut held = Held::default();
    let mut paid = 0;
    if let Some(declared) = body.size_hint().exact() {
        let declared = usize::try_from(declared).unwrap_or(usize::MAX);
        if declared > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        if declared > 0 && !budget.try_take(&mut held, declared) {
            return Err(busy());
        }
        paid = declared;
    }
    let started = tokio::time::Instant::now();
    let rate = config.min_body_rate.max(1) as f64;
    let mut bytes = Vec::new();
    loop {
        let allowed = config.body_timeout + std::time::Duration::from_secs_f64(bytes.len() as f64 / rate);
        let frame = match tokio::time::timeout_at(started + allowed, body.frame()).await {
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "the request body came slower than {} bytes/s (after the first {:?})",
                    config.min_body_rate, config.body_timeout
                )));
            }
            Ok(None) => return Ok((bytes, held)),
            Ok(Some(Err(e))) => return Err(Error::BadRequest(format!("could not read the request body: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            let size = bytes.len() + data.len();
            if size > limit {
                return Err(Error::PayloadTooLarge { limit });
            }
            if size > paid {
                if !budget.try_take(&mut held, size - paid) {
                    return Err(busy());
                }
                paid = size;
            }
            bytes.extend_from_slice(&data);
        }
    }
}

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    /// Objects, the host's routes and the admin API: one listener for everything.
    All,
    /// Everything but the admin API, which has a listener of its own.
    Public,
    /// Only the admin API (and `/_wdo/health`).
    Admin,
}

fn admin_only() -> HttpResponse {
    text(404, "this listener serves only the admin API (/_wdo/admin/...)\n".into())
}

fn host_route(host: &Host, what: &str) -> Result<HttpResponse, Error> {
    match what {
        "health" => Ok(text(
            200,
            match host.backup_status() {
                Some((url, status)) => match status.failing {
                    Some(e) if status.mode == crate::config::BackupMode::Sync => format!(
                        "ok\nbackup {url} (sync): writes refused (503), {} commits waiting; the store does not answer: {e}\n",
                        status.waiting
                    ),
                    Some(e) => format!(
                        "ok\nbackup {url}: behind, {} commits waiting; the store does not answer: {e}\n",
                        status.waiting
                    ),
                    None => format!(
                        "ok\nbackup {url}: {} batches, {} bytes shipped, {} commits waiting\n",
                        status.batches, status.bytes, status.waiting
                    ),
                },
                None => "ok\n".into(),
            },
        )),
        "stats" => Ok(text(200, {
            let instances = host.instances();
            let resident = crate::object::resident_bytes().unwrap_or(0);
            let files = crate::storage::vfs::file_counts();
            format!(
                "active_objects {}\nmax_open_objects {}\nlive_instances {}\ninstance_places {}\nmax_instances {}\n\
                 instance_limit {}\nspare_instances {}\nresident_bytes {resident}\nmax_resident {}\n\
                 database_files_open {}\nmax_database_files {}\ndatabase_files_parked {}\n\
                 pending_alarms {}\nopen_sockets {}\nopen_connections {}\n\
                 max_connections {}\nbuffered_input_bytes {}\nmax_buffered_input {}\n",
                host.active_objects(),
                host.max_open_objects(),
                instances.live,
                instances.places,
                instances.max,
                instances.limit,
                host.directory().spares.count(),
                host.config().max_resident,
                files.open,
                files.budget,
                files.parked,
                host.pending_alarms(),
                host.open_sockets(),
                host.connections().open(),
                host.connections().max,
                host.budget().held(),
                host.budget().total()
            )
        })),
        other => Ok(text(
            404,
            format!(
                "no host route /_wdo/{other} (there are /_wdo/health, /_wdo/stats and the admin API under /_wdo/admin/)\n"
            ),
        )),
    }
}

/// Whether the client is a browser (it asks for HTML): scripts keep the plain-text index.
fn wants_html(request: &hyper::Request<Incoming>) -> bool {
    let accept = request.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.split(',').any(|kind| kind.trim().starts_with("text/html"))
}

/// The landing page: what wdo is, the examples' live demos and the classes served.
fn landing(host: &Host) -> HttpResponse {
    const PAGE: &str = include_str!("landing.html");
    let classes: Vec<serde_json::Value> = host
        .class_versions()
        .into_iter()
        .map(|(class, hash)| serde_json::json!({ "name": class, "hash": hash }))
        .collect();
    // JSON inside a script: `<` escaped so no class name can end the script early.
    let classes = serde_json::to_string(&classes).expect("serializable").replace('<', "\\u003c");
    hyper::Response::builder()
        .status(200)
        .header("content-type", "text/html; charset=utf-8")
        .body(Full::new(Bytes::from(PAGE.replacen("/*CLASSES*/[]", &classes, 1))))
        .expect("a valid response")
}

fn index(host: &Host) -> String {
    let mut text = String::from("wdo: durable objects on WebAssembly\naddress an object as /<class>/<name>/<path>\n");
    for (class, hash) in host.class_versions() {
        text.push_str(&format!("class {class} sha256:{hash}\n"));
    }
    text
}

/// Checks what the guest answered; an unusable status or header is the guest's error.
fn into_http(response: Response, class: &str, name: &str) -> Result<HttpResponse, Error> {
    let fail = |reason: String| Error::EventFailed {
        object: format!("{class}/{name}"),
        reason,
        outcome: crate::observe::Outcome::ErrorResponse,
    };
    let status = hyper::StatusCode::from_u16(response.status)
        .map_err(|_| fail(format!("answered with the invalid HTTP status {}", response.status)))?;
    let mut http = hyper::Response::builder().status(status);
    for (header, value) in &response.headers {
        let valid = hyper::header::HeaderName::from_bytes(header.as_bytes()).is_ok()
            && hyper::header::HeaderValue::from_str(value).is_ok();
        if !valid {
            return Err(fail(format!("answered with an invalid header `{header}: {value}`")));
        }
        http = http.header(header, value);
    }
    http.body(Full::new(Bytes::from(response.body))).map_err(|e| fail(format!("answered an invalid response: {e}")))
}

pub(super) fn text(status: u16, body: String) -> HttpResponse {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn error_response(error: &Error) -> HttpResponse {
    let mut response = text(error.status(), format!("{error}\n"));
    if let Error::Misdirected { host, .. } = error
        && let Ok(host) = hyper::header::HeaderValue::from_str(host)
    {
        response.headers_mut().insert(crate::cluster::OWNER_HEADER, host);
    }
    if error.status() == 503 {
        // Overloaded, busy or not durable yet: each is worth a retry.
        response.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
    }
    response
}
