//! Implements the durable-object world but imports `test:stray/gadget` too (see wit/world.wit).

wit_bindgen::generate!({ path: ["../../../wit", "wit"], world: "test:stray/stray", generate_all });

use exports::wdo::object::handler::{AlarmInfo, Guest, Message, Request, Response, SocketId};

struct Stray;

impl Guest for Stray {
    fn fetch(_request: Request) -> Response {
        let body = test::stray::gadget::poke().to_string().into_bytes();
        Response { status: 200, headers: Vec::new(), body }
    }
    fn call(_method: String, _args: Vec<u8>) -> Result<Vec<u8>, String> {
        Err("no methods".into())
    }
    fn alarm(_info: AlarmInfo) -> Result<(), String> {
        Ok(())
    }
    fn websocket_message(_socket: SocketId, _message: Message) {}
    fn websocket_close(_socket: SocketId, _code: u16, _reason: String, _was_clean: bool) {}
    fn websocket_error(_socket: SocketId, _error: String) {}
}

export!(Stray);
