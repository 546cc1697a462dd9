//! The host's routes for watching it: `GET /_wdo/metrics` (Prometheus text) and
//! `GET /_wdo/admin/tail` (finished events as newline-delimited JSON, streamed until the
//! client leaves). The dashboard (`/_wdo/admin/ui`) and the inspector build on these.

use super::routing::{HttpResponse, text};
use crate::Host;
use crate::error::Error;
use crate::observe::metrics::Gauges;
use crate::observe::tail::{Filter, StatusFilter};
use bytes::Bytes;
use http_body_util::{Either, Full};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub use crate::object::inspect::Inspect;

/// A response's body: whole, or streamed (a tail).
pub type Body = Either<Full<Bytes>, Streamed>;

/// A body written as its chunks come, ending when their sender is gone.
pub struct Streamed(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

/// `GET /_wdo/metrics`.
pub fn metrics(host: &Host) -> HttpResponse {
    let observe = host.observe();
    if !observe.metrics.is_on() {
        return text(404, "metrics are off on this host (it was started with --metrics off)\n".into());
    }
    let directory = host.directory();
    let instances = host.instances();
    let mut now = Gauges::default();
    now.set("wdo_queued_events", directory.queued_events());
    now.set("wdo_open_objects", host.active_objects());
    now.set("wdo_max_open_objects", host.max_open_objects());
    now.set("wdo_live_instances", instances.live);
    now.set("wdo_instance_places", instances.places);
    now.set("wdo_instance_limit", instances.limit);
    now.set("wdo_spare_instances", directory.spares.count());
    now.set("wdo_worker_instances_idle", host.idle_worker_instances());
    now.set("wdo_database_files_open", crate::storage::vfs::file_counts().open);
    now.set("wdo_resident_bytes", crate::object::resident_bytes().unwrap_or(0));
    now.set("wdo_alarms_pending", host.pending_alarms());
    now.set("wdo_websockets_open", host.open_sockets());
    now.set("wdo_connections_open", host.connections().open());
    now.set("wdo_buffered_input_bytes", host.budget().held());
    now.set("wdo_tails", observe.tail.watchers());
    if let Some((_, status)) = host.backup_status() {
        now.set("wdo_backup_commits_waiting", status.waiting);
        now.set("wdo_backup_batches", status.batches);
        now.set("wdo_backup_bytes", status.bytes);
        now.set("wdo_backup_failing", i64::from(status.failing.is_some()));
    }
    hyper::Response::builder()
        .status(200)
        .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(Full::new(Bytes::from(observe.metrics.encode(&now))))
        .expect("a valid response")
}

/// `GET /_wdo/admin/tail?class=C&object=NAME&status=error|ok` (each optional): every event that
/// finishes from now on, one JSON object a line; `{"dropped": N}` when the client read too
/// slowly to get N of them.
pub fn tail(host: &Host, query: &str) -> Result<hyper::Response<Body>, Error> {
    let mut filter = Filter::default();
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "class" => filter.class = Some(value),
            "object" | "name" => filter.object = Some(value),
            "status" => {
                filter.status = Some(match value.as_str() {
                    "error" => StatusFilter::Error,
                    "ok" => StatusFilter::Ok,
                    other => return Err(Error::BadRequest(format!("status `{other}`: use error or ok"))),
                })
            }
            other => {
                return Err(Error::BadRequest(format!("the tail has no parameter `{other}` (class, object, status)")));
            }
        }
    }
    let observe = host.observe();
    let Some(lines) = observe.tail.watch(filter, observe.metrics.tail_dropped.clone()) else {
        return Err(Error::Busy(format!(
            "{} tails are open on this host already, the most it serves; close one",
            crate::observe::tail::MAX_TAILS
        )));
    };
    Ok(hyper::Response::builder()
        .status(200)
        .header("content-type", "application/x-ndjson")
        .header("cache-control", "no-store")
        .body(Either::Right(Streamed(lines)))
        .expect("a valid response"))
}

/// `GET /_wdo/admin/objects?top=N`: the objects held now that ran the most events (20 by
/// default, at most 1,000), with the events they ran and those waiting.
pub fn busiest(host: &Host, query: &str) -> Result<serde_json::Value, Error> {
    let mut top = 20;
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "top" => top = value.parse().map_err(|_| Error::BadRequest(format!("top `{value}` is not a number")))?,
            other => return Err(Error::BadRequest(format!("no parameter `{other}` here (top)"))),
        }
    }
    let objects: Vec<serde_json::Value> = host
        .directory()
        .busiest(top.min(1000))
        .into_iter()
        .map(|(key, events, queued)| {
            let name = host.directory().registry.get(&key.class).ok().and_then(|class| class.name_of(&key.id));
            serde_json::json!({ "class": &*key.class, "id": key.id.to_hex(), "name": name, "events": events, "queued": queued })
        })
        .collect();
    Ok(serde_json::json!({ "objects": objects, "open_objects": host.active_objects() }))
}

/// The inspector's routes under `/_wdo/admin/objects/<class>/<name>`: the object itself
/// (`GET`), its key-value pairs (`GET .../kv?prefix=&start_after=&limit=`) and a read-only
/// query (`POST .../sql`, the SQL as the body). Each runs as an event of the object.
pub async fn inspect(host: &Host, class: &str, name: &str, what: Inspect) -> Result<serde_json::Value, Error> {
    let key = host.key(class, name)?;
    let summary = matches!(what, Inspect::Summary);
    let reply = host.send(class, name, crate::object::Event::Inspect(what)).await?;
    let mut answer: serde_json::Value = match reply {
        crate::object::Reply::Called(Ok(json)) => serde_json::from_slice(&json)
            .map_err(|e| Error::Internal(format!("the inspector answered something not JSON: {e}")))?,
        crate::object::Reply::Called(Err(message)) => return Err(Error::BadRequest(message)),
        _ => return Err(Error::Internal("the inspector answered nothing".into())),
    };
    if summary {
        answer["class"] = (&*key.class).into();
        answer["name"] = name.into();
        answer["id"] = key.id.to_hex().into();
    }
    Ok(answer)
}

/// The key listing asked by a query string.
pub fn keys_asked(query: &str) -> Result<Inspect, Error> {
    let (mut prefix, mut start_after, mut limit) = (None, None, 100);
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "prefix" => prefix = Some(value),
            "start_after" => start_after = Some(value),
            "limit" => {
                limit = value.parse().map_err(|_| Error::BadRequest(format!("limit `{value}` is not a number")))?
            }
            other => {
                return Err(Error::BadRequest(format!("no parameter `{other}` here (prefix, start_after, limit)")));
            }
        }
    }
    Ok(Inspect::Keys { prefix, start_after, limit })
}

/// A query string's `name=value` pairs, percent-decoded (`+` is a space).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let spaced = text.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_pairs_are_decoded() {
        let pairs = super::query_pairs("class=counter&object=a%2Fb+c&status=");
        let expected = [("class", "counter"), ("object", "a/b c"), ("status", "")];
        assert_eq!(pairs, expected.map(|(n, v)| (n.to_string(), v.to_string())));
    }
}
