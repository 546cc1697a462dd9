//! The admin API under `/_wdo/admin/`: what `wdo deploy`, `wdo versions` and `wdo rollback`
//! talk to. Every request needs `Authorization: Bearer <admin token>`; objects cannot reach
//! these paths (they only reach other objects), and object routes never start with `_`.
//!
//! | request | does |
//! |---|---|
//! | `GET /_wdo/admin/ui` | the dashboard (an HTML page; asks for the token, needs none to load) |
//! | `GET /_wdo/admin/deployed` | the classes and worker deployed, every version (JSON) |
//! | `HEAD /_wdo/admin/components/<sha256>` | 200 if the host has that component, else 404 |
//! | `PUT /_wdo/admin/components/<sha256>` | uploads a component; the body must hash to the URL |
//! | `POST /_wdo/admin/components/<sha256>/compile?class=NAME` (or `?worker`) | compiles and checks it |
//! | `POST /_wdo/admin/deploy` | applies a plan (JSON [`Plan`]); answers the changes |
//! | `GET /_wdo/admin/cluster` | the cluster's live hosts and the objects each holds (JSON) |
//! | `GET /_wdo/admin/cluster/owner/<class>/<name>` | the host holding that object now, if any |
//! | `POST /_wdo/admin/cluster/drain/<host>` | hands that host's objects over to the others (JSON: how many) |
//! | `GET /_wdo/admin/tail?class=&object=&status=` | finished events as they come (NDJSON, streamed; `gateway/observe.rs`) |
//! | `GET /_wdo/admin/objects?top=N` | the objects held now that ran the most events |
//! | `GET /_wdo/admin/objects/<class>/<name>` | one object: id, database size, alarm, sockets, tables |
//! | `GET /_wdo/admin/objects/<class>/<name>/kv?prefix=&start_after=&limit=` | its key-value pairs |
//! | `POST /_wdo/admin/objects/<class>/<name>/sql` | a read-only query (the body), as an event of the object |
//! | `POST /_wdo/admin/rollback` | `{"class": NAME, "version": N}` (or `"worker": true`; no version: the one before) |

use super::routing::{HttpResponse, read_body, text};
use crate::Host;
use crate::cluster::Change;
use crate::deploy::{Plan, Target, WORKER, is_sha256};
use crate::error::Error;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde::Deserialize;
use sha2::{Digest, Sha256};

fn in_cluster(host: &Host) -> Result<&std::sync::Arc<crate::Cluster>, Error> {
    host.cluster().ok_or_else(|| Error::BadRequest("this host is not in a cluster (start it with --cluster)".into()))
}

/// The dashboard: one page, no data in it (every call it makes carries the token typed there).
const DASHBOARD: &str = include_str!("dashboard.html");

pub async fn handle(host: &Host, request: Request<Incoming>, path: &str) -> Result<HttpResponse, Error> {
    if path == "ui" && request.method() == Method::GET {
        return Ok(hyper::Response::builder()
            .status(200)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .header(
                "content-security-policy",
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            )
            .body(Full::new(Bytes::from_static(DASHBOARD.as_bytes())))
            .expect("a valid response"));
    }
    authorize(host, &request)?;
    let method = request.method().clone();
    let segments: Vec<&str> = path.split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["deployed"]) => Ok(json(200, &host.deployed())),
        (&Method::GET, ["cluster"]) => Ok(json(200, &in_cluster(host)?.status().await?)),
        (&Method::POST, ["cluster", "drain", id]) => Ok(json(200, &in_cluster(host)?.drain_host(&decoded(id)).await?)),
        (&Method::GET, ["cluster", "owner", class, name]) => {
            let (class, name) = (decoded(class), decoded(name));
            let id = host.object_id(&class, &name)?;
            let owner = in_cluster(host)?.owner_of(&class, &id).await?;
            Ok(json(
                200,
                &serde_json::json!({
                    "class": class, "name": name, "id": id.to_hex(),
                    "host": owner.as_ref().map(|m| &m.id), "advertise": owner.as_ref().map(|m| &m.advertise),
                }),
            ))
        }
        (&Method::GET, ["objects"]) => {
            Ok(json(200, &super::observe::busiest(host, request.uri().query().unwrap_or(""))?))
        }
        (&Method::GET, ["objects", class, name]) => {
            let summary = super::observe::Inspect::Summary;
            Ok(json(200, &super::observe::inspect(host, &decoded(class), &decoded(name), summary).await?))
        }
        (&Method::GET, ["objects", class, name, "kv"]) => {
            let keys = super::observe::keys_asked(request.uri().query().unwrap_or(""))?;
            Ok(json(200, &super::observe::inspect(host, &decoded(class), &decoded(name), keys).await?))
        }
        (&Method::POST, ["objects", class, name, "sql"]) => {
            let (class, name) = (decoded(class), decoded(name));
            let (body, _held) = read_body(host, request.into_body(), 1 << 20).await?;
            let query = String::from_utf8(body).map_err(|_| Error::BadRequest("the SQL is not UTF-8 text".into()))?;
            let sql = super::observe::Inspect::Sql { query };
            Ok(json(200, &super::observe::inspect(host, &class, &name, sql).await?))
        }
        (&Method::HEAD | &Method::GET, ["components", hash]) => Ok(match host.component_size(hash) {
            Some(size) => json(200, &serde_json::json!({ "hash": hash, "size": size })),
            None => text(404, format!("no component with sha256 {hash}\n")),
        }),
        (&Method::PUT, ["components", hash]) => upload(host, request, hash).await,
        (&Method::POST, ["components", hash, "compile"]) => {
            let query = request.uri().query().unwrap_or("");
            let name = if query == "worker" {
                WORKER.to_string()
            } else {
                query
                    .strip_prefix("class=")
                    .map(str::to_string)
                    .ok_or_else(|| Error::BadRequest("say what the component is for: ?class=NAME or ?worker".into()))?
            };
            let (host, hash) = (host.clone(), hash.to_string());
            let started = std::time::Instant::now();
            let compiled = blocking(move || host.compile_component(&name, &hash)).await?;
            let millis = started.elapsed().as_millis() as u64;
            Ok(json(200, &serde_json::json!({ "compiled": compiled, "millis": millis })))
        }
        (&Method::POST, ["deploy"]) => {
            let plan: Plan = read_json(host, request).await?;
            let turn = host.begin_change().await?;
            let (deploying, applied) = (host.clone(), plan.clone());
            let changes = blocking(move || deploying.deploy(&applied)).await?;
            host.replicate_change("the deploy").await?;
            host.change_everywhere(turn, Change::Deploy { plan }).await?;
            Ok(json(200, &serde_json::json!({ "changes": changes })))
        }
        (&Method::POST, ["rollback"]) => {
            let ask: RollbackRequest = read_json(host, request).await?;
            let target = match (ask.class, ask.worker) {
                (Some(class), false) => Target::Class(class),
                (None, true) => Target::Worker,
                _ => return Err(Error::BadRequest("name either a `class` or `\"worker\": true`".into())),
            };
            let (rolling_back, everywhere) = (host.clone(), target.label().to_string());
            let turn = host.begin_change().await?;
            let change = blocking(move || rolling_back.rollback(&target, ask.version)).await?;
            host.replicate_change("the rollback").await?;
            // The version it went to, so that every host goes to the same one.
            let version = change.version.or(ask.version);
            host.change_everywhere(turn, Change::Rollback { target: everywhere, version }).await?;
            Ok(json(200, &serde_json::json!({ "changes": [change] })))
        }
        (&Method::POST, ["restore", class, name]) => {
            let ask: RestoreRequest = read_json(host, request).await?;
            let (class, name) = (decoded(class), decoded(name));
            let bytes = host.restore_object(&class, &name, ask.at_ms).await?;
            tracing::info!(class, name, at_ms = ask.at_ms, bytes, "object restored from the backup store");
            Ok(json(200, &serde_json::json!({ "class": class, "name": name, "at_ms": ask.at_ms, "bytes": bytes })))
        }
        (&Method::GET, ["secrets", owner]) => {
            let names = host.secret_names(&secret_owner(owner))?;
            Ok(json(200, &serde_json::json!({ "names": names })))
        }
        (&Method::PUT, ["secrets", owner, name]) => {
            let (owner, name) = (secret_owner(owner), decoded(name));
            let (value, _held) = read_body(host, request.into_body(), crate::manifest::MAX_VAR_VALUE + 1).await?;
            let value = String::from_utf8(value.to_vec())
                .map_err(|_| Error::BadRequest(format!("secret `{name}`: the value is not UTF-8 text")))?;
            let turn = host.begin_change().await?;
            let replaced = host.set_secret(&owner, &name, Some(&value))?;
            tracing::info!(owner = owner.label(), secret = name, replaced, "secret set");
            host.replicate_change("setting the secret").await?;
            let change = Change::Secret { owner: owner.label().into(), name: name.clone(), value: Some(value) };
            host.change_everywhere(turn, change).await?;
            Ok(json(200, &serde_json::json!({ "name": name, "replaced": replaced })))
        }
        (&Method::DELETE, ["secrets", owner, name]) => {
            let (owner, name) = (secret_owner(owner), decoded(name));
            let turn = host.begin_change().await?;
            match host.set_secret(&owner, &name, None)? {
                true => {
                    tracing::info!(owner = owner.label(), secret = name, "secret deleted");
                    host.replicate_change("deleting the secret").await?;
                    let change = Change::Secret { owner: owner.label().into(), name: name.clone(), value: None };
                    host.change_everywhere(turn, change).await?;
                    Ok(json(200, &serde_json::json!({ "name": name, "deleted": true })))
                }
                false => Ok(text(404, format!("{} has no secret `{name}`\n", owner.label()))),
            }
        }
        _ => Ok(text(404, format!("no admin route {method} /_wdo/admin/{path}\n"))),
    }
}

/// A path segment as sent, percent-decoded (`%5Bworker%5D` is the worker).
fn decoded(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn secret_owner(segment: &str) -> Target {
    Target::parse(&decoded(segment))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    class: Option<String>,
    #[serde(default)]
    worker: bool,
    version: Option<u32>,
}

/// `POST /_wdo/admin/restore/<class>/<name>`: `{"at_ms": ...}` (milliseconds since the Unix
/// epoch; absent or null: the latest commit shipped).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreRequest {
    #[serde(default)]
    at_ms: Option<u64>,
}

pub(super) fn authorize(host: &Host, request: &Request<Incoming>) -> Result<(), Error> {
    let header = request.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match header.and_then(|h| h.strip_prefix("Bearer ")) {
        Some(token) if host.is_admin_token(token.trim()) => Ok(()),
        Some(_) => Err(Error::Unauthorized(": the token given is not it")),
        None => Err(Error::Unauthorized(" (none was given)")),
    }
}

/// Keeps an uploaded component once its bytes hash to the sha256 in the URL: an upload cut
/// short or damaged on the way is refused, and nothing is kept.
async fn upload(host: &Host, request: Request<Incoming>, hash: &str) -> Result<HttpResponse, Error> {
    if !is_sha256(hash) {
        return Err(Error::BadRequest(format!("`{hash}` is not a sha256 (64 lower-case hex digits)")));
    }
    let limit = host.config().max_component_size;
    let (bytes, _held) = read_body(host, request.into_body(), limit).await.map_err(|e| match e {
        Error::PayloadTooLarge { .. } | Error::Busy(_) => e,
        other => Error::BadRequest(format!("the upload was cut short: {other}")),
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != hash {
        return Err(Error::BadRequest(format!(
            "the upload is truncated or damaged: its {} bytes hash to sha256 {actual}, not to {hash}; nothing was kept",
            bytes.len()
        )));
    }
    let host = host.clone();
    let size = bytes.len();
    let hash = blocking(move || host.upload_component(&bytes)).await?;
    Ok(json(201, &serde_json::json!({ "hash": hash, "size": size })))
}

async fn read_json<T: serde::de::DeserializeOwned>(host: &Host, request: Request<Incoming>) -> Result<T, Error> {
    let (body, _held) = read_body(host, request.into_body(), host.config().max_request_body).await?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("the request body is not the JSON expected: {e}")))
}

/// Runs deploy work (compiling, fsync, waiting for actors) off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(Error::Internal(format!("deploy task failed: {e}"))))
}

fn json(status: u16, value: &impl serde::Serialize) -> HttpResponse {
    let body = serde_json::to_vec_pretty(value).expect("serializable");
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}
