//! What an actor tells about each event it ran, once its outcome is known (after the commit):
//! the class's metrics, the event's log line, and a record for the tails watching
//! (`observe/`).

use super::Actor;
use crate::error::Error;
use crate::object::Reply;
use crate::observe::{Context, Kind, Outcome};

/// An event that ran, waiting for its outcome to be known (after the commit).
pub(super) struct Finished {
    pub kind: Kind,
    pub took: std::time::Duration,
    pub request_id: Option<crate::observe::RequestId>,
    pub lines: Option<crate::observe::tail::Lines>,
    pub alarm_failed: Option<(Outcome, String)>,
}

impl Actor {
    /// Counts an event that ran, and shows it to the tails watching.
    pub(super) fn observe(&self, finished: Finished, result: &Result<Reply, Error>) {
        let Finished { kind, took, request_id, lines, alarm_failed } = finished;
        let (outcome, status, error) = match (result, alarm_failed) {
            (Ok(_), Some((outcome, reason))) => (outcome, None, Some(reason)),
            (Ok(Reply::Response(response)), None) => {
                let outcome = Outcome::of_status(response.status);
                let error = outcome.is_error().then(|| format!("answered {}", response.status));
                (outcome, Some(response.status), error)
            }
            (Ok(Reply::Upgrade(_)), None) => (Outcome::Ok, Some(101), None),
            (Ok(Reply::Called(Err(message))), None) => (Outcome::ErrorResponse, None, Some(message.clone())),
            (Ok(_), None) => (Outcome::Ok, None, None),
            (Err(e), _) => (Outcome::of_error(e), Some(e.status()), Some(e.to_string())),
        };
        self.metrics.event(kind, outcome, took);
        // One line per event: failures the host caused or stopped always, the rest for debugging.
        let level = match outcome {
            Outcome::Ok | Outcome::ErrorResponse => tracing::Level::DEBUG,
            _ => tracing::Level::WARN,
        };
        let logged = match level {
            tracing::Level::DEBUG => tracing::enabled!(target: "wdo::event", tracing::Level::DEBUG),
            _ => true,
        };
        if logged {
            let context = Context {
                request_id: request_id.clone(),
                object: Some(self.info.clone()),
                kind: Some(kind),
                lines: None,
            };
            let (label, duration_ms) = (&self.info.label, took.as_secs_f64() * 1000.0);
            let message = error.as_deref().unwrap_or("done");
            let outcome = outcome.as_str();
            context.sync_scope(|| match level {
                tracing::Level::DEBUG => {
                    tracing::debug!(target: "wdo::event", object = %label, outcome, status, duration_ms, "{message}")
                }
                _ => tracing::warn!(target: "wdo::event", object = %label, outcome, status, duration_ms, "{message}"),
            });
        }
        let tail = &self.directory.limits.observe.tail;
        if tail.watched() {
            let mut record = crate::observe::TailRecord::new(kind, outcome, took);
            record.request_id = request_id.as_deref().map(str::to_string);
            record.class = self.key.class.to_string();
            record.id = self.key.id.to_hex();
            record.name = self.info.name.clone();
            record.status = status;
            record.logs = lines.map(|lines| lines.take()).unwrap_or_default();
            record.error = error;
            tail.publish(record);
        }
    }
}
