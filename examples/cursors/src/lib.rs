//! The live cursor room of the product page: `GET /cursors/<room>` serves a page where every open
//! tab sees the others' cursors move and clicks ripple. Each connection gets an identity (a number
//! and a colour) when it joins, kept in the socket's attachment.

use serde::{Deserialize, Serialize};
use serde_json::json;
use wdo_sdk::prelude::*;

struct Cursors;

const PAGE: &str = include_str!("page.html");
const COLOURS: &[&str] = &["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];

#[derive(Serialize, Deserialize)]
struct Identity {
    id: u64,
    colour: String,
}

/// What a page sends: where its pointer is, and whether it clicked.
#[derive(Deserialize)]
struct Pointer {
    x: f64,
    y: f64,
    #[serde(default)]
    click: bool,
}

fn send_to_others(from: SocketId, value: &serde_json::Value) -> Result<()> {
    let text = Message::Text(value.to_string());
    for socket in websockets::sockets(None)? {
        if socket != from {
            websockets::send(socket, &text)?;
        }
    }
    Ok(())
}

impl DurableObject for Cursors {
    fn new() -> Self {
        Cursors
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        match request.path() {
            "/" => Ok(Response::new(200, PAGE).header("content-type", "text/html; charset=utf-8")),
            "/ws" => {
                let id: u64 = storage::get("next-id")?.unwrap_or(1);
                storage::put("next-id", &(id + 1))?;
                let identity = Identity { id, colour: COLOURS[(id as usize - 1) % COLOURS.len()].to_string() };
                let socket = websockets::accept(&request, &[], Some(&serde_json::to_vec(&identity)?))?;
                websockets::send_text(
                    socket,
                    &json!({"type": "welcome", "id": id, "colour": identity.colour}).to_string(),
                )?;
                Ok(Response::upgraded())
            }
            _ => Ok(Response::not_found()),
        }
    }

    fn websocket_message(&mut self, from: SocketId, message: Message) -> Result<()> {
        let Message::Text(text) = message else { return Ok(()) };
        let Ok(pointer) = serde_json::from_str::<Pointer>(&text) else { return Ok(()) };
        let Some(me) = websockets::attachment::<Identity>(from)? else { return Ok(()) };
        let kind = if pointer.click { "click" } else { "move" };
        send_to_others(from, &json!({"type": kind, "id": me.id, "colour": me.colour, "x": pointer.x, "y": pointer.y}))
    }

    fn websocket_close(&mut self, socket: SocketId, _code: u16, _reason: &str, _clean: bool) -> Result<()> {
        if let Some(me) = websockets::attachment::<Identity>(socket)? {
            send_to_others(socket, &json!({"type": "leave", "id": me.id}))?;
        }
        Ok(())
    }
}

export!(Cursors);
