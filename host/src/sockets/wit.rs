//! The WIT `websockets` import. Reads go to the hub; `accept`, `send`, `close` and the
//! auto-response are recorded in the event's `SocketEffects` and reach the hub after the commit.

use super::hub::{Accepted, Connected, Outgoing, SocketId};
use crate::bindings::WitError;
use crate::bindings::wdo::object::websockets::{self, Message as WitMessage};
use crate::object::HostState;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The host, port and whether TLS, of a `ws://` or `wss://` URL.
fn ws_target(url: &str) -> Option<(String, u16, bool)> {
    let uri: http::Uri = url.parse().ok()?;
    let tls = match uri.scheme_str()? {
        "ws" => false,
        "wss" => true,
        _ => return None,
    };
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_string();
    Some((host, uri.port_u16().unwrap_or(if tls { 443 } else { 80 }), tls))
}

type Call<T> = wasmtime::Result<Result<T, WitError>>;

const MAX_TAGS: usize = 10;
const MAX_TAG_LENGTH: usize = 256;
const MAX_ATTACHMENT: usize = 2048;

fn invalid<T>(message: String) -> Call<T> {
    Ok(Err(WitError::InvalidArgument(message)))
}

fn limit<T>(message: String) -> Call<T> {
    Ok(Err(WitError::LimitExceeded(message)))
}

fn check_attachment(attachment: &Option<Vec<u8>>) -> Result<(), WitError> {
    match attachment {
        Some(a) if a.len() > MAX_ATTACHMENT => {
            Err(WitError::LimitExceeded(format!("the attachment is {} bytes; the limit is {MAX_ATTACHMENT}", a.len())))
        }
        _ => Ok(()),
    }
}

impl HostState {
    /// A socket the current event accepted or opened, not yet in the hub.
    fn accepting(&mut self, socket: SocketId) -> Option<&mut Accepted> {
        let effects = &mut self.socket_effects;
        let opened = effects.connected.iter_mut().map(|c| &mut c.socket);
        effects.accepted.iter_mut().chain(opened).find(|a| a.id == socket)
    }

    /// Whether this object may hold one more socket with these tags and attachment.
    fn check_new_socket(&self, what: &str, tags: &[String], attachment: &Option<Vec<u8>>) -> Result<(), WitError> {
        if tags.len() > MAX_TAGS {
            return Err(WitError::LimitExceeded(format!("{} tags; the limit is {MAX_TAGS}", tags.len())));
        }
        if let Some(tag) = tags.iter().find(|t| t.chars().count() > MAX_TAG_LENGTH) {
            let length = tag.chars().count();
            return Err(WitError::LimitExceeded(format!(
                "a tag of {length} characters; the limit is {MAX_TAG_LENGTH}"
            )));
        }
        check_attachment(attachment)?;
        let pending = self.socket_effects.connected.len() + usize::from(self.socket_effects.accepted.is_some());
        let (held, most) =
            (self.sockets.count(&self.object.key()) + pending, self.sockets.limits.max_sockets_per_object);
        if held >= most {
            return Err(WitError::LimitExceeded(format!(
                "{what}: this object holds {held} WebSockets; the limit is {most}"
            )));
        }
        Ok(())
    }

    /// Whether `socket` is an open socket of this object (or the one being accepted).
    fn is_open(&mut self, socket: SocketId) -> bool {
        let key = self.object.key();
        self.accepting(socket).is_some() || self.sockets.with_socket(&key, socket, |s| !s.closed).unwrap_or(false)
    }

    fn unknown<T>(&self, socket: SocketId) -> Call<T> {
        invalid(format!("socket {socket} is not an open socket of this object"))
    }
}

impl websockets::Host for HostState {
    fn accept(&mut self, tags: Vec<String>, attachment: Option<Vec<u8>>) -> Call<u64> {
        if !self.upgrade_requested {
            return invalid(
                "accept: the request being handled is not a WebSocket upgrade \
                 (it has no `Upgrade: websocket` header)"
                    .into(),
            );
        }
        if self.socket_effects.accepted.is_some() {
            return invalid("accept: this request's socket was already accepted".into());
        }
        if let Err(e) = self.check_new_socket("accept", &tags, &attachment) {
            return Ok(Err(e));
        }
        let id = self.sockets.new_id();
        self.socket_effects.accepted = Some(Accepted { id, tags, attachment, holds_instance: false });
        Ok(Ok(id))
    }

    async fn connect(
        &mut self,
        url: String,
        protocols: Vec<String>,
        tags: Vec<String>,
        attachment: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<u64, String>> {
        let failed = |reason: String| Ok(Err(format!("connect to {url}: {reason}")));
        if self.warming_up {
            return failed("not during warm-up, which runs for no object".into());
        }
        if let Err(WitError::LimitExceeded(reason) | WitError::InvalidArgument(reason)) =
            self.check_new_socket("connect", &tags, &attachment)
        {
            return failed(reason);
        }
        let Some((host, port, tls)) = ws_target(&url) else {
            return failed("not a ws:// or wss:// URL".into());
        };
        // The output gate: what the event wrote so far is durable before anyone hears from it.
        if let Err(reason) = self.commit_before_outbound().await {
            return failed(reason);
        }
        let (stream, by) = match self.outbound().open(&host, port, tls).await {
            Ok(opened) => opened,
            Err(reason) => return failed(reason),
        };
        let mut request = match url.as_str().into_client_request() {
            Ok(request) => request,
            Err(e) => return failed(e.to_string()),
        };
        if !protocols.is_empty() {
            match protocols.join(", ").parse() {
                Ok(value) => request.headers_mut().insert("sec-websocket-protocol", value),
                Err(_) => return failed(format!("protocols {protocols:?} are not a valid header")),
            };
        }
        let limits = &self.sockets.limits;
        let config = WebSocketConfig::default()
            .max_message_size(Some(limits.max_message))
            .max_frame_size(Some(limits.max_message));
        let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
        let ws = match tokio::time::timeout_at(by, handshake).await {
            Ok(Ok((ws, _response))) => ws,
            Ok(Err(e)) => return failed(format!("the WebSocket handshake failed: {e}")),
            Err(_) => return failed("the WebSocket handshake timed out".into()),
        };
        let id = self.sockets.new_id();
        self.socket_effects
            .connected
            .push(Connected { socket: Accepted { id, tags, attachment, holds_instance: false }, ws });
        Ok(Ok(id))
    }

    fn get_websockets(&mut self, tag: Option<String>) -> Call<Vec<u64>> {
        let mut ids = self.sockets.list(&self.object.key(), tag.as_deref());
        let effects = &self.socket_effects;
        let pending = effects.accepted.iter().chain(effects.connected.iter().map(|c| &c.socket));
        ids.extend(pending.filter(|a| tag.as_ref().is_none_or(|t| a.tags.contains(t))).map(|a| a.id));
        Ok(Ok(ids))
    }

    fn send(&mut self, socket: u64, message: WitMessage) -> Call<()> {
        if !self.is_open(socket) {
            return self.unknown(socket);
        }
        let message = match message {
            WitMessage::Text(text) => Message::text(text),
            WitMessage::Binary(bytes) => Message::binary(bytes),
        };
        let limits = &self.sockets.limits;
        if message.len() > limits.max_message {
            return limit(format!("a message of {} bytes; the limit is {}", message.len(), limits.max_message));
        }
        // A broadcast sends the same message to every socket: keep its bytes once.
        let last = self.socket_effects.outbox.iter().rev().find_map(|(_, out)| match out {
            Outgoing::Message(sent) => Some(sent),
            Outgoing::Close(..) => None,
        });
        let message = match last {
            Some(last) if *last == message => last.clone(),
            _ => {
                let queued = self.socket_effects.queued + message.len();
                if queued > limits.max_event_sends {
                    return limit(format!(
                        "this event would queue {queued} bytes of WebSocket messages; the limit is {} \
                         (a message sent to many sockets in a row counts once)",
                        limits.max_event_sends
                    ));
                }
                if let Err(e) = self.hold_host_copy(message.len()) {
                    return limit(e);
                }
                self.socket_effects.queued = queued;
                message
            }
        };
        self.socket_effects.outbox.push((socket, Outgoing::Message(message)));
        Ok(Ok(()))
    }

    fn close(&mut self, socket: u64, code: u16, reason: String) -> Call<()> {
        // The codes an endpoint may send (RFC 6455 7.4 and IANA's registry), not those that
        // only describe a close (1005, 1006, 1015) or are reserved.
        if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
            return invalid(format!("close code {code}: use 1000-1003, 1007-1014 or 3000-4999"));
        }
        if reason.len() > 123 {
            return limit(format!("a close reason of {} bytes; the limit is 123", reason.len()));
        }
        if !self.is_open(socket) {
            return self.unknown(socket);
        }
        self.socket_effects.outbox.push((socket, Outgoing::Close(code, reason)));
        Ok(Ok(()))
    }

    fn get_tags(&mut self, socket: u64) -> Call<Vec<String>> {
        if let Some(accepted) = self.accepting(socket) {
            return Ok(Ok(accepted.tags.clone()));
        }
        match self.sockets.with_socket(&self.object.key(), socket, |s| s.tags.clone()) {
            Some(tags) => Ok(Ok(tags)),
            None => self.unknown(socket),
        }
    }

    fn get_attachment(&mut self, socket: u64) -> Call<Option<Vec<u8>>> {
        if let Some(accepted) = self.accepting(socket) {
            return Ok(Ok(accepted.attachment.clone()));
        }
        match self.sockets.with_socket(&self.object.key(), socket, |s| s.attachment.clone()) {
            Some(attachment) => Ok(Ok(attachment)),
            None => self.unknown(socket),
        }
    }

    fn set_attachment(&mut self, socket: u64, attachment: Option<Vec<u8>>) -> Call<()> {
        if let Err(e) = check_attachment(&attachment) {
            return Ok(Err(e));
        }
        if let Some(accepted) = self.accepting(socket) {
            accepted.attachment = attachment;
            return Ok(Ok(()));
        }
        match self.sockets.with_socket(&self.object.key(), socket, |s| s.attachment = attachment) {
            Some(()) => Ok(Ok(())),
            None => self.unknown(socket),
        }
    }

    fn set_auto_response(&mut self, pair: Option<(String, String)>) -> Call<()> {
        self.socket_effects.auto_response = Some(pair);
        Ok(Ok(()))
    }

    fn get_auto_response_timestamp(&mut self, socket: u64) -> Call<Option<u64>> {
        if self.accepting(socket).is_some() {
            return Ok(Ok(None));
        }
        match self.sockets.with_socket(&self.object.key(), socket, |s| s.auto_responded_at) {
            Some(at) => Ok(Ok(at)),
            None => self.unknown(socket),
        }
    }

    fn hold_instance(&mut self, socket: u64) -> Call<()> {
        if let Some(accepted) = self.accepting(socket) {
            accepted.holds_instance = true;
            return Ok(Ok(()));
        }
        match self.sockets.with_socket(&self.object.key(), socket, |s| s.holds_instance = true) {
            Some(()) => Ok(Ok(())),
            None => self.unknown(socket),
        }
    }
}
