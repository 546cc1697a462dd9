//! A durable object in Rust: one counter per object name, kept in storage.
//!
//! `POST /{{class}}/<name>/increment` answers the new value; `GET /{{class}}/<name>` the current one.

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
            _ => return Ok(Response::not_found()),
        }
        storage::put("value", &value)?;
        Ok(Response::text(value.to_string()))
    }
}

export!(Counter);
