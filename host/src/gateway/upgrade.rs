//! WebSocket upgrades: the request goes to the object's `fetch` like any other; if the object
//! accepts, the gateway answers 101 and hands the connection to the hub.

use super::routing::HttpResponse;
use crate::Host;
use crate::error::Error;
use crate::object::ObjectKey;
use crate::sockets::SocketId;
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
    pub fn accept(self, host: &Host, key: ObjectKey, socket: SocketId) -> HttpResponse {
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
                    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                    hub.serve_socket(key, socket, ws).await;
                }
                Err(e) => {
                    tracing::debug!("WebSocket upgrade failed: {e}");
                    hub.abandon(key, socket);
                }
            }
        });
        let mut response = hyper::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers
            .insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&self.accept_key).expect("base64 is a valid header"));
        response
    }
}
