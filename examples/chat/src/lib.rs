//! Chat rooms with names and presence: `GET /chat/<room>` serves the page;
//! `GET /chat/<room>/ws?name=NAME` joins over a WebSocket. Joining replays the last 50 messages
//! (kept in SQL) and tells everyone; leaving tells everyone too. Names live in each socket's
//! attachment, so presence survives hibernation.

use serde::{Deserialize, Serialize};
use serde_json::json;
use wdo_sdk::prelude::*;

struct Chat;

const PAGE: &str = include_str!("page.html");
const HISTORY: u32 = 50;
const SCHEMA: &[&str] = &["CREATE TABLE messages (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, text TEXT NOT NULL, at_ms INTEGER NOT NULL)"];

#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Said {
    name: String,
    text: String,
    at_ms: i64,
}

fn send_json(socket: SocketId, value: &serde_json::Value) -> Result<()> {
    websockets::send_text(socket, &value.to_string())
}

fn broadcast_json(value: &serde_json::Value) -> Result<()> {
    websockets::broadcast(None, &Message::Text(value.to_string()))
}

/// Names of everyone in the room, from the sockets' attachments.
fn present(except: Option<SocketId>) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for socket in websockets::sockets(None)? {
        if Some(socket) != except
            && let Some(member) = websockets::attachment::<Member>(socket)?
        {
            names.push(member.name);
        }
    }
    Ok(names)
}

impl DurableObject for Chat {
    fn new() -> Self {
        Chat
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        sql::migrate(SCHEMA)?;
        match request.path() {
            "/" => Ok(Response::new(200, PAGE).header("content-type", "text/html; charset=utf-8")),
            "/ws" => {
                let name = request.query_param("name").map(|n| n.trim().to_string()).unwrap_or_default();
                if name.is_empty() || name.chars().count() > 32 {
                    return Err(Error::bad_request("join with ?name=NAME (1 to 32 characters)"));
                }
                let member = serde_json::to_vec(&Member { name: name.clone() })?;
                let socket = websockets::accept(&request, &[], Some(&member))?;
                let mut history: Vec<Said> =
                    sql::query("SELECT name, text, at_ms FROM messages ORDER BY id DESC LIMIT ?1", &params![HISTORY])?;
                history.reverse();
                send_json(socket, &json!({"type": "history", "messages": history, "present": present(None)?}))?;
                broadcast_json(&json!({"type": "join", "name": name}))?;
                Ok(Response::upgraded())
            }
            _ => Ok(Response::not_found()),
        }
    }

    fn websocket_message(&mut self, from: SocketId, message: Message) -> Result<()> {
        let Message::Text(text) = message else { return Ok(()) };
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let Some(member) = websockets::attachment::<Member>(from)? else { return Ok(()) };
        let at_ms = context::now_ms() as i64;
        sql::execute(
            "INSERT INTO messages (name, text, at_ms) VALUES (?1, ?2, ?3)",
            &params![member.name.as_str(), text, at_ms],
        )?;
        broadcast_json(&json!({"type": "message", "name": member.name, "text": text, "at_ms": at_ms}))
    }

    fn websocket_close(&mut self, socket: SocketId, _code: u16, _reason: &str, _clean: bool) -> Result<()> {
        if let Some(member) = websockets::attachment::<Member>(socket)? {
            broadcast_json(&json!({"type": "leave", "name": member.name, "present": present(Some(socket))?}))?;
        }
        Ok(())
    }
}

export!(Chat);
