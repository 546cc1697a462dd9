//! What `export!` expands to: the one live object value of this instance, and the glue from
//! the generated exports to the [`DurableObject`] methods.

use crate::bindings::wdo::object::types;
use crate::{AlarmInfo, DurableObject, Message, Request};
pub use serde_json;
use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static OBJECT: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with_object<T: DurableObject, R>(f: impl FnOnce(&mut T) -> R) -> R {
    OBJECT.with(|cell| {
        let mut slot = cell.borrow_mut();
        let object = slot.get_or_insert_with(|| Box::new(T::new()));
        f(object.downcast_mut::<T>().expect("one object type per component"))
    })
}

pub fn fetch<T: DurableObject>(request: types::Request) -> types::Response {
    match with_object::<T, _>(|o| o.fetch(Request::from_wit(request))) {
        Ok(response) => response.into_wit(),
        Err(error) => error.into_response().into_wit(),
    }
}

pub fn call<T: DurableObject>(method: String, args: Vec<u8>) -> Result<Vec<u8>, String> {
    with_object::<T, _>(|o| o.call(&method, &args)).map_err(|e| e.message().to_string())
}

pub fn alarm<T: DurableObject>(info: AlarmInfo) -> Result<(), String> {
    with_object::<T, _>(|o| o.alarm(info)).map_err(|e| e.message().to_string())
}

// A WebSocket handler's error cannot go anywhere but the log: the event still commits.
fn log_error(what: &str, result: crate::Result<()>) {
    if let Err(e) = result {
        crate::context::log_error(&format!("{what}: {}", e.message()));
    }
}

pub fn websocket_message<T: DurableObject>(socket: u64, message: Message) {
    log_error("websocket-message", with_object::<T, _>(|o| o.websocket_message(socket, message)));
}

pub fn websocket_close<T: DurableObject>(socket: u64, code: u16, reason: String, was_clean: bool) {
    log_error("websocket-close", with_object::<T, _>(|o| o.websocket_close(socket, code, &reason, was_clean)));
}

pub fn websocket_error<T: DurableObject>(socket: u64, error: String) {
    log_error("websocket-error", with_object::<T, _>(|o| o.websocket_error(socket, &error)));
}
