//! WebSocket upgrades: the request goes to the object's `fetch` like any other; if the object
//! accepts, the gateway answers 101 and hands the connection to the hub.

use super::routing::HttpResponse;
use crate::Host;
use crate::error::Error;
use crate::object::ObjectKey;
use crate::sockets::AcceptedSocket;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// An upgrade the client asked for, ready to be completed.
pub struct Requested {
    on_upgrade: hyper::upgrade::OnUpgrade,
    accept_key: String,
    /// The connection's place under the host's bound: the socket keeps it while it is open.
    permit: Option<super::ConnectionPermit>,
}

fn has_token(request: &hyper::Request<Incoming>, header: hyper::header::HeaderName, token: &str) -> bool {
    crate::message::lists_token(request.headers().get_all(header).iter().filter_map(|v| v.to_str().ok()), token)
}

/// `Some` when the request asks for a WebSocket upgrade; a malformed one is refused.
pub fn requested(request: &mut hyper::Request<Incoming>) -> Result<Option<Requested>, Error> {
    if !has_token(request, UPGRADE, "websocket") {
        return Ok(None);
    }
    let bad = |m: &str| Err(Error::InvalidName(format!("bad WebSocket upgrade: {m}")));
    if !has_token(request, CONNECTION, "upgrade") {
        return bad("the Connection header must include `upgrade`");
    }
    if request.headers().get(SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return bad("only Sec-WebSocket-Version 13 is supported");
    }
    let Some(key) = request.headers().get(SEC_WEBSOCKET_KEY) else {
        return bad("missing Sec-WebSocket-Key");
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let permit = request.extensions_mut().remove::<super::ConnectionPermit>();
    Ok(Some(Requested { on_upgrade: hyper::upgrade::on(request), accept_key, permit }))
}

impl Requested {
    /// Answers 101 and, once the connection is switched, hands it to the hub.
    pub fn accept(self, host: &Host, accepted: AcceptedSocket) -> HttpResponse {
        let hub = host.hub().clone();
        // A small read chunk keeps a quiet socket cheap (3.5 KiB of host memory per open socket
        // in `make bench`); large messages still assemble in tungstenite's growing buffer.
        let config = WebSocketConfig::default()
            .read_buffer_size(512)
            .write_buffer_size(0)
            .max_message_size(Some(hub.limits.max_message))
            .max_frame_size(Some(hub.limits.max_message));
        tokio::spawn(async move {
            let _permit = self.permit;
            match self.on_upgrade.await {
                Ok(upgraded) => {
                    let (key, socket) = accepted.take();
                    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                    hub.serve_socket(key, socket, ws).await;
                }
                // The client went away: `accepted` drops, and the object hears the socket close.
                Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
            }
        });
        switching(&self.accept_key)
    }
}

/// The 101 answering a client's handshake whose key derives `accept_key`.
fn switching(accept_key: &str) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(accept_key).expect("base64 is a valid header"));
    response
}

/// Marks a request one host of a cluster proxied to another (with the cluster's
/// authentication): it is served where it arrives, never proxied again.
pub const PROXIED_HEADER: &str = "x-wdo-proxied";

impl Requested {
    /// Proxies the upgrade to `owner`, the host of the cluster holding the object: the client's
    /// request goes there as it came, and once the owner answers 101 the two connections are
    /// joined, both ways, until either closes (a client whose object's host dies sees its
    /// connection close, and reconnects through any host). Any other answer is the client's.
    /// An owner that names another host as the holder (421) gets one retry there.
    pub async fn proxy(
        self,
        head: &hyper::http::request::Parts,
        host: &Host,
        owner: crate::cluster::Member,
    ) -> Result<HttpResponse, Error> {
        let cluster = host.cluster().expect("proxied only in a cluster");
        let request = |uri: &hyper::Uri| {
            let mut request = hyper::Request::builder().method(head.method.clone()).uri(uri.clone());
            for (name, value) in &head.headers {
                request = request.header(name, value);
            }
            request
        };
        let (status, headers, body, upstream) = send_upgrade(&head.uri, request, owner, cluster).await?;
        let mut response = hyper::Response::new(Full::new(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        if let Some(upstream) = upstream {
            self.join(upstream);
        }
        Ok(response)
    }

    /// Answers 101 to a client whose worker handed its upgrade to an object on another host
    /// ([`hand_to_owner`]), and joins its connection to that host's.
    pub fn accept_elsewhere(self, upstream: hyper::upgrade::OnUpgrade) -> HttpResponse {
        let response = switching(&self.accept_key);
        self.join(upstream);
        response
    }

    /// Once both are switched, copies the client's connection to `upstream` and back until
    /// either closes.
    fn join(self, upstream: hyper::upgrade::OnUpgrade) {
        tokio::spawn(async move {
            let _permit = self.permit;
            let (client, upstream) = match (self.on_upgrade.await, upstream.await) {
                (Ok(client), Ok(upstream)) => (client, upstream),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!("a proxied WebSocket upgrade failed: {e}");
                    return;
                }
            };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

/// What became of a worker's upgrade handed to an object on another host.
pub enum Handed {
    /// The object accepted: the connection to its host, once switched.
    Accepted(hyper::upgrade::OnUpgrade),
    /// The object answered this instead (the worker gets it, like any fetch's answer).
    Refused(crate::message::Response),
}

/// Hands the upgrade a worker asks of the object `key` (`objects.fetch` with `Upgrade:
/// websocket`) to `owner`, the host of the cluster holding it, as `GET
/// /_wdo/cluster/upgrade/<class>/<id><path>`: the worker's request, with a handshake of this
/// host's own (the client's is answered here, [`Requested::accept_elsewhere`]).
pub async fn hand_to_owner(
    cluster: &crate::cluster::Cluster,
    owner: crate::cluster::Member,
    key: &ObjectKey,
    request: &crate::message::Request,
) -> Result<Handed, Error> {
    let mut target = format!("/_wdo/cluster/upgrade/{}/{}{}", key.class, key.id.to_hex(), request.path);
    if !request.query.is_empty() {
        target = format!("{target}?{}", request.query);
    }
    let uri: hyper::Uri = target.parse().map_err(|e| Error::BadRequest(format!("the request's path: {e}")))?;
    let handshake = [
        (UPGRADE.as_str(), "websocket".to_string()),
        (CONNECTION.as_str(), "Upgrade".to_string()),
        (SEC_WEBSOCKET_VERSION.as_str(), "13".to_string()),
        (SEC_WEBSOCKET_KEY.as_str(), tokio_tungstenite::tungstenite::handshake::client::generate_key()),
    ];
    let build = |uri: &hyper::Uri| {
        let mut built = hyper::Request::builder().method(hyper::Method::GET).uri(uri.clone());
        let own = |name: &str| {
            handshake.iter().any(|(h, _)| h.eq_ignore_ascii_case(name))
                || name.to_ascii_lowercase().starts_with("sec-websocket-")
                || name.eq_ignore_ascii_case("host")
                || name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
        };
        for (name, value) in request.headers.iter().filter(|(name, _)| !own(name)) {
            built = built.header(name.as_str(), value.as_str());
        }
        for (name, value) in &handshake {
            built = built.header(*name, value.as_str());
        }
        built
    };
    let (status, headers, body, upstream) = send_upgrade(&uri, build, owner, cluster).await?;
    if let Some(upstream) = upstream {
        return Ok(Handed::Accepted(upstream));
    }
    let headers = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    Ok(Handed::Refused(crate::message::Response { status: status.as_u16(), headers, body: body.to_vec() }))
}

/// What the owner answered a proxied upgrade: its status, headers and body, and (after a 101)
/// the connection to it, once switched.
type UpstreamAnswer = (hyper::StatusCode, hyper::HeaderMap, Bytes, Option<hyper::upgrade::OnUpgrade>);

/// Sends an upgrade request (`build` makes it, for a URI) to `owner`, marked as proxied and
/// authenticated with the cluster's secret; an owner that names another host as the holder
/// (421) gets one retry there.
async fn send_upgrade(
    uri: &hyper::Uri,
    build: impl Fn(&hyper::Uri) -> hyper::http::request::Builder,
    mut owner: crate::cluster::Member,
    cluster: &crate::cluster::Cluster,
) -> Result<UpstreamAnswer, Error> {
    let mut retried = false;
    loop {
        let mut request = build(uri);
        if let Some(headers) = request.headers_mut() {
            headers.remove(crate::cluster::AUTH_HEADER);
            headers.remove(PROXIED_HEADER);
        }
        let request = request
            .header(crate::cluster::AUTH_HEADER, cluster.forward_auth())
            .header(PROXIED_HEADER, "1")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Internal(format!("cannot make a proxied upgrade: {e}")))?;
        let answer = send_upgrade_once(request, &owner, cluster).await?;
        if answer.0 == 421 && !retried {
            let named = answer.1.get(crate::cluster::OWNER_HEADER).and_then(|v| v.to_str().ok());
            if let Some(next) = named.and_then(|id| cluster.live_member(id)) {
                (owner, retried) = (next, true);
                continue;
            }
        }
        return Ok(answer);
    }
}

async fn send_upgrade_once(
    request: hyper::Request<Full<Bytes>>,
    owner: &crate::cluster::Member,
    cluster: &crate::cluster::Cluster,
) -> Result<UpstreamAnswer, Error> {
    let object = request.uri().path().to_string();
    let unavailable = |why: String| Error::Unavailable {
        object: object.clone(),
        reason: format!(
            "its owner, host {} ({}), does not answer ({why}); if that host is gone, its objects move to another \
             host once its lease expires: retry",
            owner.id, owner.advertise
        ),
    };
    let authority = owner.advertise.trim_start_matches("http://").to_string();
    let stream = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(&authority))
        .await
        .map_err(|_| unavailable("no connection in 5 s".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    // A paused owner keeps the connection without answering: give up when it leaves the cluster.
    let left = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            if cluster.live_member(&owner.id).is_none() {
                return;
            }
        }
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(60), sender.send_request(request));
    let mut response = tokio::select! {
        answer = answer => answer.map_err(|_| unavailable("no answer in 60 s".into()))?.map_err(|e| unavailable(e.to_string()))?,
        () = left => return Err(unavailable("it left the cluster before answering".into())),
    };
    let status = response.status();
    if status == hyper::StatusCode::SWITCHING_PROTOCOLS {
        let upgraded = hyper::upgrade::on(&mut response);
        return Ok((status, response.headers().clone(), Bytes::new(), Some(upgraded)));
    }
    let mut headers = response.headers().clone();
    // The body is whole here: the client's response gets its own framing.
    for hop in [hyper::header::TRANSFER_ENCODING, CONNECTION] {
        headers.remove(hop);
    }
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| unavailable(e.to_string()))?
        .to_bytes();
    Ok((status, headers, body, None))
}
