//! A broadcast room: `GET /room/<name>` upgrades to a WebSocket; every message a client sends
//! goes to every socket of the room, the sender included.

use wdo_sdk::prelude::*;

struct Room;

impl DurableObject for Room {
    fn new() -> Self {
        Room
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        websockets::accept(&request, &[], None)?;
        Ok(Response::upgraded())
    }

    fn websocket_message(&mut self, _from: SocketId, message: Message) -> Result<()> {
        websockets::broadcast(None, &message)
    }
}

export!(Room);
