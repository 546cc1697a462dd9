//! The counter of the product page: one number per object name, kept in storage.
//!
//! `POST /counter/<name>/increment` and `/decrement` answer the new value;
//! `GET /counter/<name>` answers the current value ("0" if never set).

use wdo_sdk::prelude::*;

struct Counter;

impl DurableObject for Counter {
    fn new() -> Self {
        Counter
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        let mut value: i64 = storage::get("value")?.unwrap_or(0);
        match (request.method(), request.path()) {
            ("GET", "/") => return Ok(Response::text(value.to_string())),
            ("POST", "/increment") => value += 1,
            ("POST", "/decrement") => value -= 1,
            _ => return Ok(Response::not_found()),
        }
        storage::put("value", &value)?;
        Ok(Response::text(value.to_string()))
    }
}

export!(Counter);
