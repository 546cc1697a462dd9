//! Events forwarded between hosts of a cluster: an object's HTTP request, call or alarm, sent
//! to the host that holds the object, and its reply back.
//!
//! A forwarded event is `POST /_wdo/cluster/event/<class>/<id>` on the owner's advertised URL,
//! with `x-wdo-cluster-auth` (derived from the cluster's secret) and a body of a 4-byte length,
//! a JSON head ([`Head`]) and the payload (the request body or the call's arguments). The answer
//! has the same shape: a JSON [`Answer`] and the payload (the response body or the call's
//! result). WebSocket events never cross hosts: a socket's object runs where the socket is; a
//! restore from the store is asked of the owner as a whole (`Cluster::restore_elsewhere`), its
//! database too large for an event.

use super::etcd::Member;
use crate::error::Error;
use crate::ids::ObjectId;
use crate::message::{Request, Response};
use crate::object::{Event, ObjectKey, Reply};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

pub const AUTH_HEADER: &str = "x-wdo-cluster-auth";

/// How long a forwarded event may take when it carries no deadline of its own.
const DEFAULT_WAIT: Duration = Duration::from_secs(120);

#[derive(Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum WireEvent {
    Fetch {
        method: String,
        path: String,
        query: String,
        headers: Vec<(String, String)>,
    },
    Call {
        method: String,
    },
    Alarm {
        retry: u32,
    },
    Hibernate {
        close_storage: bool,
    },
    /// The inspector's question (`object/inspect.rs`); a query travels as the payload.
    Inspect {
        what: String,
        prefix: Option<String>,
        start_after: Option<String>,
        limit: u32,
    },
}

/// What a forwarded event says besides its payload.
#[derive(Serialize, Deserialize)]
struct Head {
    #[serde(flatten)]
    event: WireEvent,
    name: Option<String>,
    /// The objects waiting on this event (`class/id`), innermost last.
    chain: Vec<String>,
    /// Milliseconds left before the event must be over.
    deadline_ms: Option<u64>,
    /// When the sender sent it (ms since 1970): an event that reaches its object much later
    /// (the owner was paused) is not run, since the sender gave up on it.
    #[serde(default)]
    sent_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
enum Answer {
    Response { status: u16, headers: Vec<(String, String)> },
    Called,
    CallFailed { message: String },
    Done,
    Error { status: u16, message: String },
    Misdirected { host: String },
}

/// Where a forwarded event goes and what it carries besides the event.
pub(super) struct Addressed<'a> {
    pub key: &'a ObjectKey,
    pub name: Option<&'a str>,
    /// The objects waiting on it.
    pub chain: &'a [ObjectKey],
    pub deadline: Option<Instant>,
    /// The client request it serves: the owner logs it under the same id.
    pub request_id: Option<&'a str>,
}

/// What became of a forwarded event.
pub(super) enum Outcome {
    Reply(Result<Reply, Error>),
    /// The host does not hold the object (`host` does, if it knows): the event comes back to be
    /// sent there.
    Misdirected {
        host: String,
        event: Event,
    },
}

pub(super) struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    pub auth: String,
}

/// The value of [`AUTH_HEADER`] for a cluster with `secret`.
pub(super) fn auth(secret: &[u8; 32]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key size");
    mac.update(b"wdo forwarded event");
    hex::encode(mac.finalize().into_bytes())
}

impl Forwarder {
    pub fn new(secret: &[u8; 32]) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector);
        Forwarder { client, auth: auth(secret) }
    }

    /// POSTs `body` to `path` on `member` (with the cluster's authentication): its status and
    /// body. Bounded by [`DEFAULT_WAIT`] (a deploy compiles components).
    pub async fn post(&self, member: &Member, path: &str, body: Vec<u8>) -> Result<(u16, Bytes), String> {
        let request = hyper::Request::post(format!("{}{path}", member.advertise))
            .header(AUTH_HEADER, &self.auth)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(DEFAULT_WAIT, exchange).await.map_err(|_| format!("no answer in {DEFAULT_WAIT:?}"))?
    }

    /// Sends `event` to `owner` and waits for its reply.
    pub async fn send(
        &self,
        owner: &Member,
        to: Addressed<'_>,
        event: Event,
        owner_live: impl Fn() -> bool,
    ) -> Result<Outcome, Error> {
        let Addressed { key, name, chain, deadline, request_id } = to;
        let object = match name {
            Some(name) => format!("{}/{name}", key.class),
            None => format!("{}/{}", key.class, key.id.to_hex()),
        };
        let Some((wire, payload)) = to_wire(&event) else {
            return Ok(Outcome::Reply(Err(Error::Unavailable {
                object,
                reason: format!(
                    "it is held by host {} of the cluster, and this kind of event is not forwarded",
                    owner.id
                ),
            })));
        };
        let now = Instant::now();
        let head = Head {
            event: wire,
            name: name.map(str::to_string),
            chain: chain.iter().map(|k| format!("{}/{}", k.class, k.id.to_hex())).collect(),
            deadline_ms: deadline.map(|d| d.saturating_duration_since(now).as_millis() as u64),
            sent_ms: crate::backup::now_ms(),
        };
        let body = frame(&serde_json::to_vec(&head).expect("serializable"), payload);
        let uri = format!("{}/_wdo/cluster/event/{}/{}", owner.advertise, key.class, key.id.to_hex());
        let mut request = hyper::Request::post(uri).header(AUTH_HEADER, &self.auth);
        if let Some(id) = request_id {
            request = request.header(crate::observe::REQUEST_ID_HEADER, id);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Internal(format!("cannot make a forwarded request: {e}")))?;
        let wait = deadline.map_or(DEFAULT_WAIT, |d| d.saturating_duration_since(now) + Duration::from_secs(1));
        let unavailable = |why: String| Error::Unavailable {
            object: object.clone(),
            reason: format!(
                "its owner, host {} ({}), does not answer ({why}); if that host is gone, its objects move to \
                 another host once its lease expires: retry",
                owner.id, owner.advertise
            ),
        };
        // A host that stopped (paused, cut off) may keep its connections open without answering:
        // the wait ends when it leaves the cluster (its lease expired: it can commit nothing).
        let left = async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if !owner_live() {
                    return;
                }
            }
        };
        let response = tokio::select! {
            answer = tokio::time::timeout(wait, self.client.request(request)) => match answer {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return Err(unavailable(e.to_string())),
                Err(_) => return Err(unavailable(format!("no answer in {wait:?}"))),
            },
            () = left => return Err(unavailable("it left the cluster before answering: whether the request ran is not known".into())),
        };
        let status = response.status();
        let bytes = tokio::time::timeout(wait, response.into_body().collect())
            .await
            .map_err(|_| unavailable("the answer stalled".into()))?
            .map_err(|e| unavailable(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(unavailable(format!("{status}: {}", String::from_utf8_lossy(&bytes).trim())));
        }
        let (head, payload) = unframe(&bytes).ok_or_else(|| unavailable("a damaged answer".into()))?;
        let answer: Answer = serde_json::from_slice(head).map_err(|e| unavailable(format!("a damaged answer: {e}")))?;
        Ok(match answer {
            Answer::Misdirected { host } => Outcome::Misdirected { host, event },
            Answer::Response { status, headers } => {
                Outcome::Reply(Ok(Reply::Response(Response { status, headers, body: payload.to_vec() })))
            }
            Answer::Called => Outcome::Reply(Ok(Reply::Called(Ok(payload.to_vec())))),
            Answer::CallFailed { message } => Outcome::Reply(Ok(Reply::Called(Err(message)))),
            Answer::Done => Outcome::Reply(Ok(Reply::Done)),
            Answer::Error { status, message } => Outcome::Reply(Err(Error::Forwarded { status, message })),
        })
    }
}

/// A forwarded event as the owner reads it.
pub struct Incoming {
    /// When the sender sent it (ms since 1970, the sender's clock).
    pub sent_ms: u64,
    pub event: Event,
    pub name: Option<String>,
    pub chain: Vec<ObjectKey>,
    pub deadline: Option<Instant>,
}

/// What of `event` crosses to another host: its head and its payload (`None`: it does not).
fn to_wire(event: &Event) -> Option<(WireEvent, &[u8])> {
    Some(match event {
        Event::Fetch(r) => (
            WireEvent::Fetch {
                method: r.method.clone(),
                path: r.path.clone(),
                query: r.query.clone(),
                headers: r.headers.clone(),
            },
            &r.body[..],
        ),
        Event::Call { method, args } => (WireEvent::Call { method: method.clone() }, &args[..]),
        Event::Alarm { retry } => (WireEvent::Alarm { retry: *retry }, &[][..]),
        Event::Hibernate { close_storage } => (WireEvent::Hibernate { close_storage: *close_storage }, &[][..]),
        Event::Inspect(ask) => {
            use crate::object::inspect::Inspect;
            let (what, prefix, start_after, limit, query) = match ask {
                Inspect::Summary => ("summary", None, None, 0, &[][..]),
                Inspect::Keys { prefix, start_after, limit } => {
                    ("keys", prefix.clone(), start_after.clone(), *limit, &[][..])
                }
                Inspect::Sql { query } => ("sql", None, None, 0, query.as_bytes()),
            };
            (WireEvent::Inspect { what: what.into(), prefix, start_after, limit }, query)
        }
        _ => return None,
    })
}

/// Reads a forwarded event's body; the chain's classes are checked by `class_of`.
pub fn decode(body: &[u8], class_of: impl Fn(&str) -> Option<std::sync::Arc<str>>) -> Result<Incoming, String> {
    let (head, payload) = unframe(body).ok_or("a forwarded event too short for its head")?;
    let head: Head = serde_json::from_slice(head).map_err(|e| format!("a damaged forwarded event: {e}"))?;
    let event = match head.event {
        WireEvent::Fetch { method, path, query, headers } => {
            Event::Fetch(Request { method, path, query, headers, body: payload.to_vec() })
        }
        WireEvent::Call { method } => Event::Call { method, args: payload.to_vec() },
        WireEvent::Alarm { retry } => Event::Alarm { retry },
        WireEvent::Hibernate { close_storage } => Event::Hibernate { close_storage },
        WireEvent::Inspect { what, prefix, start_after, limit } => {
            use crate::object::inspect::Inspect;
            Event::Inspect(match what.as_str() {
                "summary" => Inspect::Summary,
                "keys" => Inspect::Keys { prefix, start_after, limit },
                "sql" => Inspect::Sql { query: String::from_utf8_lossy(payload).into_owned() },
                other => return Err(format!("a forwarded inspection of an unknown kind `{other}`")),
            })
        }
    };
    let chain = head
        .chain
        .iter()
        .filter_map(|k| {
            let (class, id) = k.split_once('/')?;
            Some(ObjectKey { class: class_of(class)?, id: ObjectId::from_hex(id)? })
        })
        .collect();
    let deadline = head.deadline_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
    Ok(Incoming { sent_ms: head.sent_ms, event, name: head.name, chain, deadline })
}

/// The body answering a forwarded event.
pub fn encode(result: Result<Reply, Error>) -> Vec<u8> {
    let (answer, payload) = match result {
        Ok(Reply::Response(response)) => {
            (Answer::Response { status: response.status, headers: response.headers }, response.body)
        }
        Ok(Reply::Called(Ok(result))) => (Answer::Called, result),
        Ok(Reply::Called(Err(message))) => (Answer::CallFailed { message }, Vec::new()),
        Ok(Reply::Done) => (Answer::Done, Vec::new()),
        Ok(Reply::Upgrade(_)) => (
            Answer::Error { status: 500, message: "a forwarded event was answered with an upgrade".into() },
            Vec::new(),
        ),
        Err(Error::Misdirected { host, .. }) => (Answer::Misdirected { host }, Vec::new()),
        Err(e) => (Answer::Error { status: e.status(), message: e.to_string() }, Vec::new()),
    };
    frame(&serde_json::to_vec(&answer).expect("serializable"), &payload)
}

fn frame(head: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + head.len() + payload.len());
    body.extend_from_slice(&(head.len() as u32).to_be_bytes());
    body.extend_from_slice(head);
    body.extend_from_slice(payload);
    body
}

fn unframe(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u32::from_be_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let head = body.get(4..4 + length)?;
    Some((head, &body[4 + length..]))
}

/// Serves `POST /_wdo/cluster/event/<class>/<id>` (the gateway's route for forwarded events).
pub(crate) async fn serve_forwarded(
    host: &crate::Host,
    authenticated: bool,
    path: &str,
    body: &[u8],
) -> Result<Vec<u8>, Error> {
    let cluster = host.cluster().ok_or_else(|| Error::BadRequest("this host is not in a cluster".into()))?;
    if !authenticated {
        return Err(Error::Unauthorized(": forwarded events carry the cluster's x-wdo-cluster-auth"));
    }
    let (class, id) = path
        .split_once('/')
        .and_then(|(class, id)| Some((class, ObjectId::from_hex(id)?)))
        .ok_or_else(|| Error::InvalidName(format!("a forwarded event for `{path}`: expected <class>/<id>")))?;
    let incoming = decode(body, |class| host.class_name(class)).map_err(Error::BadRequest)?;
    let late = crate::backup::now_ms().saturating_sub(incoming.sent_ms);
    if late > cluster.ttl.as_millis() as u64 {
        // The sender stopped waiting when this host left the cluster (it was paused): running
        // it now could run it twice.
        let reason = format!("a forwarded event that reached this host {late} ms after it was sent is not run");
        return Ok(encode(Err(Error::Unavailable { object: format!("{class}/{}", id.to_hex()), reason })));
    }
    Ok(encode(host.forwarded(class, id, incoming).await))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each event that crosses hosts reads back as it was sent.
    #[test]
    fn forwarded_events_read_back_as_sent() {
        use crate::object::inspect::Inspect;
        let request = Request {
            method: "POST".into(),
            path: "/increment".into(),
            query: "by=2".into(),
            headers: vec![("x-a".into(), "1".into())],
            body: b"body".to_vec(),
        };
        let events = [
            Event::Fetch(request),
            Event::Call { method: "add".into(), args: b"[1,2]".to_vec() },
            Event::Alarm { retry: 3 },
            Event::Hibernate { close_storage: true },
            Event::Inspect(Inspect::Summary),
            Event::Inspect(Inspect::Keys { prefix: Some("user:".into()), start_after: None, limit: 5 }),
            Event::Inspect(Inspect::Sql { query: "SELECT 1".into() }),
        ];
        for event in events {
            let (wire, payload) = to_wire(&event).expect("forwarded");
            let head = Head { event: wire, name: Some("n".into()), chain: Vec::new(), deadline_ms: None, sent_ms: 7 };
            let body = frame(&serde_json::to_vec(&head).unwrap(), payload);
            let read = decode(&body, |_| None).unwrap();
            assert_eq!((read.name.as_deref(), read.sent_ms), (Some("n"), 7));
            match (event, read.event) {
                (Event::Fetch(sent), Event::Fetch(got)) => {
                    assert_eq!(
                        (sent.method, sent.path, sent.query, sent.headers, sent.body),
                        (got.method, got.path, got.query, got.headers, got.body)
                    );
                }
                (Event::Call { method, args }, Event::Call { method: m, args: a }) => {
                    assert_eq!((method, args), (m, a))
                }
                (Event::Alarm { retry }, Event::Alarm { retry: r }) => assert_eq!(retry, r),
                (Event::Hibernate { close_storage }, Event::Hibernate { close_storage: c }) => {
                    assert_eq!(close_storage, c)
                }
                (Event::Inspect(sent), Event::Inspect(got)) => assert_eq!(format!("{sent:?}"), format!("{got:?}")),
                _ => panic!("an event read back as another kind"),
            }
        }
        let socket = Event::WebSocketError { socket: 1, error: "x".into() };
        assert!(to_wire(&socket).is_none(), "socket events stay on their host");
    }
}
