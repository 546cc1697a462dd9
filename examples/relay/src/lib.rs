//! A relay: the object keeps one outbound WebSocket to an upstream feed (`FEED` in the class's
//! `vars`) and rebroadcasts what the feed sends to its own clients; what a client sends goes up
//! to the feed. The host owns both kinds of socket, so the object hibernates between messages
//! and the feed's connection stays open.
//!
//! `GET /relay/<name>` with `Upgrade: websocket` joins as a client (and opens the feed if it is
//! not open); without it, answers `{feed_open, clients, relayed}`. If the feed closes, an alarm
//! reopens it a second later while clients remain.

use wdo_sdk::prelude::*;

struct Relay;

const UPSTREAM: &str = "upstream";
const CLIENT: &str = "client";

/// Opens the feed unless it is open.
fn ensure_feed() -> Result<()> {
    if !websockets::sockets(Some(UPSTREAM))?.is_empty() {
        return Ok(());
    }
    let feed = context::env("FEED").ok_or_else(|| Error::new(500, "set FEED (a ws:// URL) in the class's vars"))?;
    websockets::connect(&feed, &[], &[UPSTREAM], None)?;
    Ok(())
}

impl DurableObject for Relay {
    fn new() -> Self {
        Relay
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        if websockets::is_upgrade(&request) {
            websockets::accept(&request, &[CLIENT], None)?;
            if let Err(e) = ensure_feed() {
                // The client stays; the alarm tries the feed again.
                context::log_warn(&format!("cannot open the feed: {}", e.message()));
                alarms::set_in(1_000)?;
            }
            return Ok(Response::upgraded());
        }
        Response::json(&serde_json::json!({
            "feed_open": !websockets::sockets(Some(UPSTREAM))?.is_empty(),
            "clients": websockets::sockets(Some(CLIENT))?.len(),
            "relayed": storage::get::<u64>("relayed")?.unwrap_or(0),
        }))
    }

    fn websocket_message(&mut self, from: SocketId, message: Message) -> Result<()> {
        if websockets::tags(from)?.iter().any(|t| t == UPSTREAM) {
            websockets::broadcast(Some(CLIENT), &message)?;
            let relayed = storage::get::<u64>("relayed")?.unwrap_or(0) + 1;
            return storage::put("relayed", &relayed);
        }
        for feed in websockets::sockets(Some(UPSTREAM))? {
            websockets::send(feed, &message)?;
        }
        Ok(())
    }

    fn websocket_close(&mut self, socket: SocketId, _code: u16, _reason: &str, _was_clean: bool) -> Result<()> {
        let feed_closed = websockets::tags(socket).is_ok_and(|tags| tags.iter().any(|t| t == UPSTREAM));
        if feed_closed && !websockets::sockets(Some(CLIENT))?.is_empty() {
            alarms::set_in(1_000)?;
        }
        Ok(())
    }

    fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        if !websockets::sockets(Some(CLIENT))?.is_empty() {
            ensure_feed()?;
        }
        Ok(())
    }
}

export!(Relay);
