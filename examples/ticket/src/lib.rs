//! The race-free ticket counter of the product page: every `POST /ticket/<name>` gets the next
//! ticket number of that counter, `{"ticket": N}`, with no number given twice or skipped.
//!
//! `GET /ticket/<name>/race` serves the race of the landing page: the same claims against this
//! counter and against a deliberately naive one, a plain value read (`GET .../plain`) and written
//! back (`PUT .../plain`) by the page in two requests, with nothing holding the two together.

use serde::Deserialize;
use wdo_sdk::prelude::*;

struct Tickets;

#[derive(Deserialize)]
struct Last {
    last: i64,
}

const RACE: &str = include_str!("race.html");

const SCHEMA: &[&str] = &[
    "CREATE TABLE tickets (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)",
    "INSERT INTO tickets (id, last) VALUES (1, 0)",
];

impl DurableObject for Tickets {
    fn new() -> Self {
        Tickets
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        match (request.method(), request.path()) {
            ("POST", "/") => {}
            ("GET", "/race") => return Ok(Response::new(200, RACE).header("content-type", "text/html; charset=utf-8")),
            // The naive side: a value anyone may read and overwrite.
            ("GET", "/plain") => {
                let value: i64 = storage::get("plain")?.unwrap_or(0);
                return Response::json(&serde_json::json!({ "value": value }));
            }
            ("PUT", "/plain") => {
                let value: i64 = String::from_utf8_lossy(request.body())
                    .trim()
                    .parse()
                    .map_err(|_| Error::bad_request("PUT a whole number"))?;
                storage::put("plain", &value)?;
                return Response::json(&serde_json::json!({ "value": value }));
            }
            _ => return Ok(Response::not_found()),
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
