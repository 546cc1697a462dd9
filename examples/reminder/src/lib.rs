//! Reminders: `POST /reminder/<name>?in_ms=N` with a text body schedules one; several may be
//! pending. The object keeps them in a queue (SQL) and arms its one alarm for the earliest.
//! `GET /reminder/<name>` answers `{"fired": [texts in firing order], "pending": count}`.

use serde::Deserialize;
use wdo_sdk::prelude::*;

struct Reminders;

const SCHEMA: &[&str] = &[
    "CREATE TABLE pending (id INTEGER PRIMARY KEY, due_ms INTEGER NOT NULL, text TEXT NOT NULL)",
    "CREATE INDEX pending_due ON pending (due_ms, id)",
    "CREATE TABLE fired (id INTEGER PRIMARY KEY, text TEXT NOT NULL, fired_ms INTEGER NOT NULL)",
];

#[derive(Deserialize)]
struct Due {
    due_ms: i64,
}

#[derive(Deserialize)]
struct Text {
    text: String,
}

/// Arms the alarm for the earliest pending reminder, or clears it when none is left.
fn arm() -> Result<()> {
    match sql::query_one::<Due>("SELECT due_ms FROM pending ORDER BY due_ms, id LIMIT 1", &[])? {
        Some(next) => alarms::set(next.due_ms),
        None => alarms::delete(),
    }
}

impl DurableObject for Reminders {
    fn new() -> Self {
        Reminders
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        sql::migrate(SCHEMA)?;
        match (request.method(), request.path()) {
            ("POST", "/") => {
                let in_ms: u64 = request
                    .query_param("in_ms")
                    .ok_or_else(|| Error::bad_request("give the delay as ?in_ms=N"))?
                    .parse()
                    .map_err(|_| Error::bad_request("in_ms must be a whole number of milliseconds"))?;
                let due = context::now_ms() as i64 + in_ms as i64;
                sql::execute("INSERT INTO pending (due_ms, text) VALUES (?1, ?2)", &params![due, request.text()?])?;
                arm()?;
                Ok(Response::text(format!("{due}\n")).with_status(201))
            }
            ("GET", "/") => {
                let fired: Vec<Text> = sql::query("SELECT text FROM fired ORDER BY id", &[])?;
                let pending: Vec<Due> = sql::query("SELECT due_ms FROM pending", &[])?;
                let fired: Vec<String> = fired.into_iter().map(|t| t.text).collect();
                Response::json(&serde_json::json!({ "fired": fired, "pending": pending.len() }))
            }
            _ => Ok(Response::not_found()),
        }
    }

    fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        sql::migrate(SCHEMA)?;
        let now = context::now_ms() as i64;
        // Every reminder now due fires, earliest first; then the alarm moves to the next one.
        sql::execute(
            "INSERT INTO fired (text, fired_ms) SELECT text, ?1 FROM pending WHERE due_ms <= ?1 ORDER BY due_ms, id",
            &params![now],
        )?;
        sql::execute("DELETE FROM pending WHERE due_ms <= ?1", &params![now])?;
        arm()
    }
}

export!(Reminders);
