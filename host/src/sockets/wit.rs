//! The WIT `websockets` import. Reads go to the hub; `accept`, `send`, `close` and the
//! auto-response are recorded in the event's `SocketEffects` and reach the hub after the commit.

use super::hub::{Accepted, Outgoing, SocketId};
use crate::bindings::WitError;
use crate::bindings::wdo::object::websockets::{self, Message as WitMessage};
use crate::object::HostState;
use tokio_tungstenite::tungstenite::Message;

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
    /// The socket accepted by the current event, not yet in the hub.
    fn accepting(&mut self, socket: SocketId) -> Option<&mut Accepted> {
        self.socket_effects.accepted.as_mut().filter(|a| a.id == socket)
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
        if tags.len() > MAX_TAGS {
            return limit(format!("{} tags; the limit is {MAX_TAGS}", tags.len()));
        }
        if let Some(tag) = tags.iter().find(|t| t.chars().count() > MAX_TAG_LENGTH) {
            return limit(format!("a tag of {} characters; the limit is {MAX_TAG_LENGTH}", tag.chars().count()));
        }
        if let Err(e) = check_attachment(&attachment) {
            return Ok(Err(e));
        }
        let (held, most) = (self.sockets.count(&self.object.key()), self.sockets.limits.max_sockets_per_object);
        if held >= most {
            return limit(format!("accept: this object holds {held} WebSockets; the limit is {most}"));
        }
        let id = self.sockets.new_id();
        self.socket_effects.accepted = Some(Accepted { id, tags, attachment });
        Ok(Ok(id))
    }

    fn get_websockets(&mut self, tag: Option<String>) -> Call<Vec<u64>> {
        let mut ids = self.sockets.list(&self.object.key(), tag.as_deref());
        if let Some(accepted) = &self.socket_effects.accepted
            && tag.as_ref().is_none_or(|t| accepted.tags.contains(t))
        {
            ids.push(accepted.id);
        }
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
        if !(code == 1000 || (3000..=4999).contains(&code)) {
            return invalid(format!("close code {code}: use 1000 or 3000-4999"));
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
}
