//! The race-free ticket counter of the product page: every `POST /ticket/<name>` gets the next
//! ticket number of that counter, `{"ticket": N}`, with no number given twice or skipped.

use serde::Deserialize;
use wdo_sdk::prelude::*;

struct Tickets;

#[derive(Deserialize)]
struct Last {
    last: i64,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE tickets (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)",
    "INSERT INTO tickets (id, last) VALUES (1, 0)",
];

impl DurableObject for Tickets {
    fn new() -> Self {
        Tickets
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        if (request.method(), request.path()) != ("POST", "/") {
            return Ok(Response::not_found());
        }
        sql::migrate(SCHEMA)?;
        // Take the next number and read it back as one unit.
        let ticket = sql::transaction(|tx| {
            tx.execute("UPDATE tickets SET last = last + 1 WHERE id = 1", &[])?;
            let row: Option<Last> = tx.query_one("SELECT last FROM tickets WHERE id = 1", &[])?;
            row.map(|r| r.last).ok_or_else(|| Error::new(500, "the tickets row is missing"))
        })?;
        Response::json(&serde_json::json!({ "ticket": ticket }))
    }
}

export!(Tickets);
