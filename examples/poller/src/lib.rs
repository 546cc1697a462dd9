//! Polls a URL on a timer: an alarm fetches `URL` every `PERIOD` seconds (both from the class's
//! `vars` in `wdo.toml`), keeps the last 100 results in SQL, and re-arms itself.
//! `GET /poller/<name>` starts polling (if it is not already) and answers the results, newest
//! first, as JSON; `POST /poller/<name>/stop` stops it.
//!
//! The host reaches only what the class's `outbound` list allows, so a URL whose host is not
//! listed shows up as a result with the host's reason in `error`.

use serde::{Deserialize, Serialize};
use wdo_sdk::prelude::*;
use wdo_sdk::{http, sql};

struct Poller;

/// One poll: when, what came back (or why nothing did), and how long it took.
#[derive(Serialize, Deserialize)]
struct Poll {
    at_ms: i64,
    status: Option<i64>,
    bytes: Option<i64>,
    millis: i64,
    error: Option<String>,
}

const KEEP: i64 = 100;

fn setup() -> Result<()> {
    sql::migrate(&[
        "CREATE TABLE polls (at_ms INTEGER NOT NULL, status INTEGER, bytes INTEGER, millis INTEGER NOT NULL, error TEXT)",
    ])
    .map(drop)
}

/// The period from `vars`: seconds, fractions allowed (`PERIOD = 0.5`); 60 when unset.
fn period_ms() -> Result<u64> {
    match context::env("PERIOD") {
        None => Ok(60_000),
        Some(text) => match text.parse::<f64>() {
            Ok(seconds) if seconds > 0.0 => Ok((seconds * 1000.0).round().max(1.0) as u64),
            _ => Err(Error::new(500, format!("PERIOD in vars is `{text}`: give seconds, e.g. 30"))),
        },
    }
}

fn results() -> Result<Response> {
    let polls: Vec<Poll> =
        sql::query("SELECT at_ms, status, bytes, millis, error FROM polls ORDER BY at_ms DESC, rowid DESC", &[])?;
    Response::json(&serde_json::json!({
        "url": context::env("URL"),
        "period_ms": period_ms()?,
        "polling": alarms::get()?.is_some(),
        "polls": polls,
    }))
}

impl DurableObject for Poller {
    fn new() -> Self {
        Poller
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        setup()?;
        match (request.method(), request.path()) {
            ("GET", "/") => {
                if alarms::get()?.is_none() && !storage::get::<bool>("stopped")?.unwrap_or(false) {
                    alarms::set_in(0)?; // the first poll right away
                }
                results()
            }
            ("POST", "/start") => {
                storage::put("stopped", &false)?;
                alarms::set_in(0)?;
                results()
            }
            ("POST", "/stop") => {
                storage::put("stopped", &true)?;
                alarms::delete()?;
                results()
            }
            _ => Ok(Response::not_found()),
        }
    }

    fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        setup()?;
        if storage::get::<bool>("stopped")?.unwrap_or(false) {
            return Ok(());
        }
        // Re-armed first: the request below commits what came before it (the output gate), so a
        // crash while it waits still leaves the next poll scheduled.
        alarms::set_in(period_ms()?)?;
        let url = context::env("URL").ok_or_else(|| Error::new(500, "set URL in the class's vars"))?;
        let started = context::now_ms();
        let poll = match http::fetch(http::get(&url)) {
            Ok(answer) => Poll {
                at_ms: started as i64,
                status: Some(answer.status.into()),
                bytes: Some(answer.body.len() as i64),
                millis: (context::now_ms() - started) as i64,
                error: None,
            },
            Err(e) => Poll {
                at_ms: started as i64,
                status: None,
                bytes: None,
                millis: (context::now_ms() - started) as i64,
                error: Some(e.message().to_string()),
            },
        };
        sql::execute(
            "INSERT INTO polls (at_ms, status, bytes, millis, error) VALUES (?1, ?2, ?3, ?4, ?5)",
            &wdo_sdk::params![poll.at_ms, poll.status, poll.bytes, poll.millis, poll.error],
        )?;
        sql::execute(
            "DELETE FROM polls WHERE rowid NOT IN (SELECT rowid FROM polls ORDER BY at_ms DESC, rowid DESC LIMIT ?1)",
            &wdo_sdk::params![KEEP],
        )?;
        Ok(())
    }
}

export!(Poller);
