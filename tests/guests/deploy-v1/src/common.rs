// Shared by deploy-v1 and deploy-v2, which differ only in `VERSION`: a counter (the same
// storage key as examples/counter) that says which version answered, over HTTP and WebSocket.

use wdo_sdk::prelude::*;

struct Versioned;

impl DurableObject for Versioned {
    fn new() -> Self {
        Versioned
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        match (request.method(), request.path()) {
            ("POST", "/increment") => {
                let value = storage::get::<i64>("value")?.unwrap_or(0) + 1;
                storage::put("value", &value)?;
                Ok(Response::text(value.to_string()))
            }
            ("GET", "/") => Ok(Response::text(storage::get::<i64>("value")?.unwrap_or(0).to_string())),
            ("GET", "/version") => Ok(Response::text(VERSION)),
            ("GET", "/slow") => {
                // An event still running while a deploy switches the class.
                std::thread::sleep(std::time::Duration::from_millis(800));
                Ok(Response::text(VERSION))
            }
            ("GET", "/ws") => {
                websockets::accept(&request, &[], None)?;
                Ok(Response::upgraded())
            }
            _ => Ok(Response::not_found()),
        }
    }

    fn websocket_message(&mut self, socket: SocketId, message: Message) -> Result<()> {
        if let Message::Text(text) = message {
            websockets::send_text(socket, &format!("v{VERSION}:{text}"))?;
        }
        Ok(())
    }
}

export!(Versioned);
