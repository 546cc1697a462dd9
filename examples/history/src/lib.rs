//! The chat history of the product page, in SQL: `POST /history/<room>` stores the text body
//! as a message (201); `GET /history/<room>?limit=N` answers the latest N messages (default 50),
//! oldest first, as `[{"id", "message", "timestamp"}]`.

use serde::{Deserialize, Serialize};
use wdo_sdk::prelude::*;

struct History;

#[derive(Serialize, Deserialize)]
struct Message {
    id: i64,
    message: String,
    /// Milliseconds since the Unix epoch.
    timestamp: i64,
}

const SCHEMA: &[&str] = &["CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message TEXT NOT NULL,
    timestamp INTEGER NOT NULL
)"];

impl DurableObject for History {
    fn new() -> Self {
        History
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        sql::migrate(SCHEMA)?;
        match (request.method(), request.path()) {
            ("POST", "/") => {
                let text = request.text()?;
                if text.is_empty() {
                    return Err(Error::bad_request("send the message as the request body"));
                }
                sql::execute(
                    "INSERT INTO messages (message, timestamp) VALUES (?1, ?2)",
                    &params![text, context::now_ms() as i64],
                )?;
                Ok(Response::text("stored\n").with_status(201))
            }
            ("GET", "/") => {
                let limit = match request.query_param("limit") {
                    None => 50,
                    Some(n) => n.parse::<u32>().map_err(|_| Error::bad_request("limit must be a whole number"))?,
                };
                let messages: Vec<Message> = sql::query(
                    "SELECT id, message, timestamp FROM
                       (SELECT id, message, timestamp FROM messages ORDER BY id DESC LIMIT ?1)
                     ORDER BY id",
                    &params![limit],
                )?;
                Response::json(&messages)
            }
            _ => Ok(Response::not_found()),
        }
    }
}

export!(History);
