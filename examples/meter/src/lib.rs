//! The "poll periodically" pattern: an alarm that re-arms itself every N ms and keeps a rolling
//! aggregate. Readings arrive with `POST /meter/<name>?value=V`; each tick rolls the readings
//! since the last tick into a window (count, average, min, max); the last 10 windows are kept.
//! `POST /meter/<name>/start?every_ms=N` starts ticking, `POST /meter/<name>/stop` stops, and
//! `GET /meter/<name>` answers the windows, the readings not yet rolled up, and the period.

use serde::{Deserialize, Serialize};
use wdo_sdk::prelude::*;

struct Meter;

#[derive(Serialize, Deserialize, Default)]
struct State {
    /// The tick period in ms; 0 when stopped.
    every_ms: u64,
    readings: Vec<f64>,
    windows: Vec<Window>,
    ticks: u64,
}

#[derive(Serialize, Deserialize)]
struct Window {
    at_ms: u64,
    count: usize,
    average: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

const KEEP: usize = 10;

fn state() -> Result<State> {
    Ok(storage::get("state")?.unwrap_or_default())
}

impl DurableObject for Meter {
    fn new() -> Self {
        Meter
    }

    fn fetch(&mut self, request: Request) -> Result<Response> {
        let mut state = state()?;
        match (request.method(), request.path()) {
            ("POST", "/") => {
                let value: f64 = request
                    .query_param("value")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Error::bad_request("give a reading as ?value=V"))?;
                state.readings.push(value);
            }
            ("POST", "/start") => {
                state.every_ms = request
                    .query_param("every_ms")
                    .and_then(|v| v.parse().ok())
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| Error::bad_request("give the period as ?every_ms=N (N > 0)"))?;
                alarms::set_in(state.every_ms)?;
            }
            ("POST", "/stop") => {
                state.every_ms = 0;
                alarms::delete()?;
            }
            ("GET", "/") => {}
            _ => return Ok(Response::not_found()),
        }
        storage::put("state", &state)?;
        Response::json(&state)
    }

    fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        let mut state = state()?;
        if state.every_ms == 0 {
            return Ok(());
        }
        let readings = std::mem::take(&mut state.readings);
        let fold = |f: fn(f64, f64) -> f64| readings.iter().copied().reduce(f);
        state.windows.push(Window {
            at_ms: context::now_ms(),
            count: readings.len(),
            average: (!readings.is_empty()).then(|| readings.iter().sum::<f64>() / readings.len() as f64),
            min: fold(f64::min),
            max: fold(f64::max),
        });
        if state.windows.len() > KEEP {
            state.windows.remove(0);
        }
        state.ticks += 1;
        storage::put("state", &state)?;
        alarms::set_in(state.every_ms) // the next tick
    }
}

export!(Meter);
