//! The shared room of the landing page: `GET /cursors/<room>` serves a page where every open tab
//! sees every visitor's cursor move, with a name ("amber-otter") and a colour given on connect,
//! and clicks ripple for everyone. Each connection's identity is kept in its socket's attachment,
//! so the room keeps knowing who is who while it hibernates between moves.

use serde::{Deserialize, Serialize};
use serde_json::json;
use wdo_sdk::prelude::*;

struct Cursors;

const PAGE: &str = include_str!("page.html");
const COLOURS: &[&str] =
    &["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#0fa3b1", "#f032e6", "#9a6324", "#2a9d8f", "#d62828"];
const ADJECTIVES: &[&str] = &[
    "amber", "brisk", "calm", "dusky", "eager", "fuzzy", "gentle", "hazel", "icy", "jolly", "keen", "lucky", "merry",
    "nimble", "olive", "plucky", "quiet", "rosy", "sunny", "tawny", "upbeat", "vivid", "witty", "zesty",
];
const ANIMALS: &[&str] = &[
    "otter", "badger", "crane", "dingo", "egret", "ferret", "gecko", "heron", "ibis", "jackal", "koala", "lemur",
    "marten", "newt", "ocelot", "puffin", "quokka", "robin", "stoat", "tapir", "urchin", "vole", "wombat", "yak",
];

const _: () = assert!(ADJECTIVES.len() == 24 && ANIMALS.len() == 24, "names are made from 24 of each");

#[derive(Serialize, Deserialize)]
struct Identity {
    id: u64,
    name: String,
    colour: String,
}

impl Identity {
    /// The `id`-th visitor of the room: a name and a colour that neighbours do not share.
    fn new(id: u64) -> Identity {
        // Steps prime to 24 change both words from one visitor to the next; the animal also
        // moves on by one each round of 24, so the first 576 visitors get 576 different names.
        let (n, round) = (id % 24, id / 24);
        let adjective = ADJECTIVES[(n * 7 % 24) as usize];
        let animal = ANIMALS[((id.wrapping_mul(5) + round) % 24) as usize];
        let colour = COLOURS[(id % COLOURS.len() as u64) as usize];
        Identity { id, name: format!("{adjective}-{animal}"), colour: colour.to_string() }
    }
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

/// Everyone in the room but `except`, from the sockets' attachments.
fn visitors(except: SocketId) -> Result<Vec<Identity>> {
    let mut all = Vec::new();
    for socket in websockets::sockets(None)? {
        if socket != except
            && let Some(identity) = websockets::attachment::<Identity>(socket)?
        {
            all.push(identity);
        }
    }
    Ok(all)
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
                let me = Identity::new(id);
                let socket = websockets::accept(&request, &[], Some(&serde_json::to_vec(&me)?))?;
                let others = visitors(socket)?;
                let count = others.len() + 1;
                websockets::send_text(
                    socket,
                    &json!({"type": "welcome", "id": id, "name": me.name, "colour": me.colour,
                            "visitors": others, "count": count})
                    .to_string(),
                )?;
                send_to_others(
                    socket,
                    &json!({"type": "join", "id": id, "name": me.name, "colour": me.colour, "count": count}),
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
        send_to_others(
            from,
            &json!({"type": kind, "id": me.id, "name": me.name, "colour": me.colour, "x": pointer.x, "y": pointer.y}),
        )
    }

    fn websocket_close(&mut self, socket: SocketId, _code: u16, _reason: &str, _clean: bool) -> Result<()> {
        if let Some(me) = websockets::attachment::<Identity>(socket)? {
            let count = visitors(socket)?.len();
            send_to_others(socket, &json!({"type": "leave", "id": me.id, "count": count}))?;
        }
        Ok(())
    }
}

export!(Cursors);

#[cfg(test)]
mod tests {
    #[test]
    fn neighbours_get_different_names_and_colours() {
        let names: std::collections::HashSet<String> = (1..=576).map(|id| super::Identity::new(id).name).collect();
        assert_eq!(names.len(), 576);
        let (one, two) = (super::Identity::new(1).name, super::Identity::new(2).name);
        assert!(one.split('-').zip(two.split('-')).all(|(a, b)| a != b), "{one} {two}");
        assert_ne!(super::Identity::new(1).colour, super::Identity::new(2).colour);
    }
}
