//! The live tail: every finished event as one JSON line, to whoever watches
//! (`GET /_wdo/admin/tail`, `wdo tail`, the dashboard).
//!
//! One bounded broadcast channel per host. Publishing never waits: a watcher that reads too
//! slowly (a slow client, a slow terminal) misses the oldest records and gets a line saying how
//! many it missed, and the host's events run on as fast as before. While nobody watches, events
//! build no record at all (`watched` is one atomic load).

use super::{Kind, Outcome};
use bytes::Bytes;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

/// Records a watcher may fall behind by before it misses some.
const BACKLOG: usize = 1024;
/// Tails one host serves at once (each holds a connection and a backlog's worth of records).
pub const MAX_TAILS: usize = 16;
/// Guest log lines kept per record, and their bytes in all: a full backlog holds at most
/// ~8 MiB of them.
const LINES: usize = 64;
const LOG_BYTES: usize = 8192;

/// Watchers in this process: guest output is kept for records only while there are some.
static WATCHING: AtomicUsize = AtomicUsize::new(0);

/// Whether any tail in this process is open.
pub fn anyone_watching() -> bool {
    WATCHING.load(Ordering::Relaxed) > 0
}

/// One finished event, as a tail shows it.
#[derive(Serialize, Debug)]
pub struct TailRecord {
    /// When it ended (RFC 3339, UTC).
    pub time: String,
    pub request_id: Option<String>,
    pub class: String,
    /// The object's id (64 hex digits); empty for the worker.
    pub id: String,
    pub name: Option<String>,
    pub kind: &'static str,
    pub outcome: &'static str,
    /// The HTTP status answered, for a fetch.
    pub status: Option<u16>,
    pub duration_ms: f64,
    /// What the guest printed during the event (stdout, stderr, `console`).
    pub logs: Vec<String>,
    /// What went wrong, for an outcome other than `ok`: the exception, the limit, the status.
    pub error: Option<String>,
}

impl TailRecord {
    pub fn new(kind: Kind, outcome: Outcome, took: std::time::Duration) -> Self {
        TailRecord {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            request_id: None,
            class: String::new(),
            id: String::new(),
            name: None,
            kind: kind.as_str(),
            outcome: outcome.as_str(),
            status: None,
            duration_ms: took.as_secs_f64() * 1000.0,
            logs: Vec::new(),
            error: None,
        }
    }
}

/// Where a watched event's guest output goes while it runs (see `Context::lines`).
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Kept>>);

#[derive(Default)]
struct Kept {
    lines: Vec<String>,
    bytes: usize,
    /// Lines not kept (over [`LINES`] or [`LOG_BYTES`]).
    more: usize,
}

impl Lines {
    pub fn push(&self, line: &str) {
        let mut kept = self.0.lock().unwrap();
        let room = LOG_BYTES.saturating_sub(kept.bytes);
        if kept.lines.len() >= LINES || room == 0 {
            kept.more += 1;
            return;
        }
        let mut end = line.len().min(room);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        kept.bytes += end;
        kept.lines.push(line[..end].to_string());
    }

    pub fn take(&self) -> Vec<String> {
        let mut kept = std::mem::take(&mut *self.0.lock().unwrap());
        if kept.more > 0 {
            kept.lines.push(format!("({} more lines not kept)", kept.more));
        }
        kept.lines
    }
}

/// Which records a watcher wants.
#[derive(Default, Clone, Debug)]
pub struct Filter {
    pub class: Option<String>,
    /// An object's name, or its id.
    pub object: Option<String>,
    /// Only failures (`error`) or only successes (`ok`).
    pub status: Option<StatusFilter>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Ok,
    Error,
}

impl Filter {
    fn wants(&self, record: &TailRecord) -> bool {
        self.class.as_ref().is_none_or(|class| *class == record.class)
            && self.object.as_ref().is_none_or(|object| *object == record.id || Some(object) == record.name.as_ref())
            && self.status.is_none_or(|status| (status == StatusFilter::Error) == (record.outcome != "ok"))
    }
}

pub struct Tail {
    sender: broadcast::Sender<Arc<TailRecord>>,
    watchers: Arc<AtomicUsize>,
}

impl Default for Tail {
    fn default() -> Self {
        Self::new()
    }
}

impl Tail {
    pub fn new() -> Self {
        Tail { sender: broadcast::channel(BACKLOG).0, watchers: Arc::new(AtomicUsize::new(0)) }
    }

    /// Whether anyone watches this host's events.
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    pub fn publish(&self, record: TailRecord) {
        let _ = self.sender.send(Arc::new(record));
    }

    /// A new watcher: newline-delimited JSON records as they come, ending when the receiver is
    /// dropped. `None` past [`MAX_TAILS`]. `dropped` counts what slow watchers missed.
    pub fn watch(
        &self,
        filter: Filter,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> Option<mpsc::Receiver<Bytes>> {
        let count = self.watchers.fetch_add(1, Ordering::Relaxed);
        if count >= MAX_TAILS {
            self.watchers.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        WATCHING.fetch_add(1, Ordering::Relaxed);
        let guard = Watcher(self.watchers.clone());
        let mut records = self.sender.subscribe();
        // A few lines of slack for the connection: past them the broadcast backlog fills and
        // the oldest records are dropped.
        let (lines, receiver) = mpsc::channel::<Bytes>(16);
        tokio::spawn(async move {
            let _guard = guard;
            let hello = serde_json::json!({ "tail": "started", "filter": format!("{filter:?}") });
            if lines.send(Bytes::from(format!("{hello}\n"))).await.is_err() {
                return;
            }
            loop {
                let line = tokio::select! {
                    () = lines.closed() => return,
                    next = records.recv() => match next {
                        Ok(record) if filter.wants(&record) => {
                            let mut line = serde_json::to_vec(&*record).expect("serializable");
                            line.push(b'\n');
                            Bytes::from(line)
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            dropped.inc_by(missed);
                            Bytes::from(format!("{}\n", serde_json::json!({ "dropped": missed })))
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                if lines.send(line).await.is_err() {
                    return;
                }
            }
        });
        Some(receiver)
    }
}

/// Counts a watcher for as long as its task runs.
struct Watcher(Arc<AtomicUsize>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        WATCHING.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(class: &str, outcome: Outcome) -> TailRecord {
        let mut record = TailRecord::new(Kind::Fetch, outcome, std::time::Duration::from_millis(1));
        record.class = class.into();
        record.name = Some("a".into());
        record
    }

    #[tokio::test]
    async fn a_watcher_gets_what_its_filter_wants_and_a_slow_one_is_told_what_it_missed() {
        let tail = Tail::new();
        assert!(!tail.watched());
        let filter = Filter { class: Some("counter".into()), status: Some(StatusFilter::Error), ..Filter::default() };
        let dropped = prometheus_client::metrics::counter::Counter::default();
        let mut lines = tail.watch(filter, dropped.clone()).unwrap();
        assert!(tail.watched());
        assert!(String::from_utf8_lossy(&lines.recv().await.unwrap()).contains("started"));
        tail.publish(record("counter", Outcome::Ok));
        tail.publish(record("other", Outcome::Trap));
        tail.publish(record("counter", Outcome::Trap));
        let line = lines.recv().await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!((value["class"].as_str(), value["outcome"].as_str()), (Some("counter"), Some("trap")));
        // Nobody reads: far more than the backlog is published, none of it waits.
        for _ in 0..BACKLOG * 4 {
            tail.publish(record("counter", Outcome::Trap));
        }
        let mut missed = 0;
        while let Ok(Some(line)) = tokio::time::timeout(std::time::Duration::from_millis(200), lines.recv()).await {
            let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
            missed += value["dropped"].as_u64().unwrap_or(0);
        }
        assert!(missed > 0 && missed == dropped.get(), "missed {missed}, counted {}", dropped.get());
        drop(lines);
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while tail.watched() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the watcher leaves once its receiver is gone");
    }
}
