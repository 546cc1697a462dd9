//! WebSockets held by the host: they outlive the instance, so an object whose only activity is
//! its sockets costs no memory while they are quiet.
//!
//! ```ignore
//! fn fetch(&mut self, request: Request) -> Result<Response> {
//!     websockets::accept(&request, &["lobby"], None)?;   // 426 if the request is no upgrade
//!     Ok(Response::upgraded())
//! }
//! fn websocket_message(&mut self, _from: SocketId, message: Message) -> Result<()> {
//!     websockets::broadcast(None, &message)
//! }
//! ```
//!
//! Sends are held until the event's storage commits, like HTTP responses.

use crate::bindings::wdo::object::websockets as wit;
use crate::{Error, Message, Request, Result, SocketId};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Whether the request asks for a WebSocket upgrade.
pub fn is_upgrade(request: &Request) -> bool {
    request.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Accepts the upgrade of the request being handled (answer with [`crate::Response::upgraded`]).
/// A request that is no upgrade gets a 426 error. Up to 10 tags of 256 characters; the attachment
/// (up to 2 KiB) stays with the socket across hibernation.
pub fn accept(request: &Request, tags: &[&str], attachment: Option<&[u8]>) -> Result<SocketId> {
    if !is_upgrade(request) {
        return Err(Error::new(426, "this route expects a WebSocket upgrade (send `Upgrade: websocket`)"));
    }
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    wit::accept(&tags, attachment).map_err(Error::from_host)
}

/// Opens a WebSocket to `url` (`ws://` or `wss://`) as this object's client, offering
/// `protocols`. The host keeps the connection across hibernation; what the remote end sends
/// arrives in [`DurableObject::websocket_message`](crate::DurableObject::websocket_message) with
/// the returned id, and `send`, `close`, tags and attachments work as for accepted sockets. The
/// host must be in the class's `outbound` list; a refusal or failure is an `Err` (502). The
/// socket joins the object when the event commits (the event's writes before it commit first).
pub fn connect(url: &str, protocols: &[&str], tags: &[&str], attachment: Option<&[u8]>) -> Result<SocketId> {
    let protocols: Vec<String> = protocols.iter().map(|p| p.to_string()).collect();
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    wit::connect(url, &protocols, &tags, attachment).map_err(|reason| Error::new(502, reason))
}

/// Open sockets of this object, optionally only those with `tag`.
pub fn sockets(tag: Option<&str>) -> Result<Vec<SocketId>> {
    wit::get_websockets(tag).map_err(Error::from_host)
}

pub fn send(socket: SocketId, message: &Message) -> Result<()> {
    wit::send(socket, message).map_err(Error::from_host)
}

pub fn send_text(socket: SocketId, text: &str) -> Result<()> {
    send(socket, &Message::Text(text.to_string()))
}

/// Sends `message` to every open socket (with `tag`, if given).
pub fn broadcast(tag: Option<&str>, message: &Message) -> Result<()> {
    for socket in sockets(tag)? {
        send(socket, message)?;
    }
    Ok(())
}

/// Closes a socket with a code (1000-1003, 1007-1014 or 3000-4999) and a reason.
pub fn close(socket: SocketId, code: u16, reason: &str) -> Result<()> {
    wit::close(socket, code, reason).map_err(Error::from_host)
}

pub fn tags(socket: SocketId) -> Result<Vec<String>> {
    wit::get_tags(socket).map_err(Error::from_host)
}

/// The socket's attachment, decoded from JSON.
pub fn attachment<T: DeserializeOwned>(socket: SocketId) -> Result<Option<T>> {
    match wit::get_attachment(socket).map_err(Error::from_host)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// Stores a value (as JSON, up to 2 KiB) with the socket.
pub fn set_attachment<T: Serialize + ?Sized>(socket: SocketId, value: &T) -> Result<()> {
    wit::set_attachment(socket, Some(&serde_json::to_vec(value)?)).map_err(Error::from_host)
}

/// The host answers `request` with `response` itself, without waking the object.
pub fn set_auto_response(request: &str, response: &str) -> Result<()> {
    wit::set_auto_response(Some((request, response))).map_err(Error::from_host)
}

pub fn clear_auto_response() -> Result<()> {
    wit::set_auto_response(None).map_err(Error::from_host)
}
