//! A durable object that exports `warm-up` (world `warmable-durable-object`) and reports what
//! its warm-up did. How it warms up depends on its class name, so one component serves every
//! case the tests register it under:
//! - `…-storage`: writes to storage (the host traps it, and stops warming the class up);
//! - `…-identity`: asks for the object's id (traps too);
//! - `…-call`: calls another object (the call fails; the message is kept for `GET /`);
//! - anything else: only counts.
//!
//! `GET /` answers `{"warm_ups", "call_error", "class", "name"}`: how many warm-ups this
//! instance ran before the event (1 in a spare, 0 in an instance made for the event).

wit_bindgen::generate!({ path: "../../../wit", world: "wdo:object/warmable-durable-object", generate_all });

use exports::wdo::object::handler::{AlarmInfo, Guest as Handler, Message, Request, Response, SocketId};
use exports::wdo::object::warm_up::Guest as WarmUp;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use wdo::object::{context, objects, storage};

static WARM_UPS: AtomicU32 = AtomicU32::new(0);
static CALL_ERROR: Mutex<Option<String>> = Mutex::new(None);

struct Object;

impl WarmUp for Object {
    fn warm_up() {
        WARM_UPS.fetch_add(1, Ordering::SeqCst);
        let class = context::class_name();
        if class.ends_with("-storage") {
            let _ = storage::put("warm", b"up");
        } else if class.ends_with("-identity") {
            let _ = context::object_id();
        } else if class.ends_with("-call") {
            let error = match objects::id_from_name(&class, "other") {
                Ok(id) => objects::call(&class, &id, "anything", &[]).err().map(|e| e.message),
                Err(e) => Some(format!("{e:?}")),
            };
            *CALL_ERROR.lock().unwrap() = error;
        }
    }
}

impl Handler for Object {
    fn fetch(_request: Request) -> Response {
        let call_error = match CALL_ERROR.lock().unwrap().as_deref() {
            Some(message) => format!("\"{}\"", message.replace('\\', "\\\\").replace('"', "\\\"")),
            None => "null".into(),
        };
        let name = context::object_name().map_or("null".into(), |n| format!("\"{n}\""));
        let body = format!(
            "{{\"warm_ups\":{},\"call_error\":{call_error},\"class\":\"{}\",\"name\":{name}}}",
            WARM_UPS.load(Ordering::SeqCst),
            context::class_name(),
        );
        Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into_bytes(),
        }
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

export!(Object);
