//! The host's metrics, in the Prometheus text format (`prometheus-client`): counters kept as
//! things happen, gauges read from the host when scraped. Every metric's name starts `wdo_`.

use super::{Kind, Outcome};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// A class name as a label value (the worker's is `_worker`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ClassLabel(Arc<str>);

impl EncodeLabelValue for ClassLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(&self.0)
    }
}

impl EncodeLabelValue for Kind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug, EncodeLabelSet)]
struct ByClass {
    class: ClassLabel,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug, EncodeLabelSet)]
struct ByOutcome {
    class: ClassLabel,
    outcome: Outcome,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug, EncodeLabelSet)]
struct ByKind {
    class: ClassLabel,
    kind: Kind,
    outcome: Outcome,
}

type HistogramFamily = Family<ByClass, Histogram, fn() -> Histogram>;

/// Event durations from 100 µs to ~100 s, doubling.
fn durations() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// The label for the worker's requests and events.
pub const WORKER: &str = "_worker";

pub struct Metrics {
    on: bool,
    registry: Registry,
    requests: Family<ByOutcome, Counter>,
    events: Family<ByKind, Counter>,
    durations: HistogramFamily,
    written: Family<ByClass, Counter>,
    rpc_calls: Family<ByClass, Counter>,
    outbound: Family<ByOutcome, Counter>,
    pub alarms_fired: Counter,
    pub alarms_retried: Counter,
    pub alarms_dropped: Counter,
    pub socket_messages_in: Counter,
    pub socket_messages_out: Counter,
    pub deploys: Counter,
    pub tail_dropped: Counter,
    gauges: Vec<(&'static str, Gauge)>,
    classes: RwLock<HashMap<Arc<str>, Arc<ClassMetrics>>>,
    /// The worker's, kept at hand: every request with a worker counts there twice.
    worker: OnceLock<Arc<ClassMetrics>>,
}

/// What the host is holding now, read when the metrics are scraped.
#[derive(Default)]
pub struct Gauges {
    pub values: Vec<(&'static str, i64)>,
}

impl Gauges {
    pub fn set(&mut self, name: &'static str, value: impl TryInto<i64>) {
        self.values.push((name, value.try_into().unwrap_or(i64::MAX)));
    }
}

/// The gauges, with their help text; [`Gauges::set`] names them.
const GAUGES: &[(&str, &str)] = &[
    ("wdo_queued_events", "Events waiting in objects' mailboxes"),
    ("wdo_open_objects", "Objects with an actor (their database open or opening)"),
    ("wdo_max_open_objects", "The bound on open objects (--max-open-objects)"),
    ("wdo_live_instances", "Object instances alive"),
    ("wdo_instance_places", "Places under --max-instances that live instances take (one per linear memory)"),
    ("wdo_instance_limit", "The places for live instances now (lowered past --max-resident)"),
    ("wdo_spare_instances", "Instances made ahead of need, not yet adopted"),
    ("wdo_worker_instances_idle", "Worker instances waiting for their next request (reuse_instances)"),
    ("wdo_database_files_open", "Object database files open"),
    ("wdo_resident_bytes", "The host process's resident memory"),
    ("wdo_alarms_pending", "Alarms set and not yet fired"),
    ("wdo_websockets_open", "WebSockets open"),
    ("wdo_connections_open", "Client connections open"),
    ("wdo_buffered_input_bytes", "Client input held (request bodies, WebSocket messages)"),
    ("wdo_tails", "Live tails watching events (wdo tail, the dashboard)"),
    ("wdo_backup_commits_waiting", "Commits not yet in the backup store"),
    ("wdo_backup_batches", "Batches shipped to the backup store since start"),
    ("wdo_backup_bytes", "Bytes shipped to the backup store since start"),
    ("wdo_backup_failing", "1 while the backup store does not answer"),
];

impl Metrics {
    /// `on: false` keeps nothing and answers no scrape (`--metrics off`).
    pub fn new(on: bool) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<ByOutcome, Counter>::default();
        registry.register(
            "wdo_requests",
            "Client requests by the class they addressed and how they ended",
            requests.clone(),
        );
        let events = Family::<ByKind, Counter>::default();
        registry.register("wdo_events", "Events run by objects (and the worker), by kind and outcome", events.clone());
        let durations = HistogramFamily::new_with_constructor(durations as fn() -> Histogram);
        registry.register_with_unit(
            "wdo_event_duration",
            "How long events took to run (commit not included)",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let written = Family::<ByClass, Counter>::default();
        registry.register_with_unit(
            "wdo_storage_written",
            "Bytes objects' commits wrote to their databases",
            prometheus_client::registry::Unit::Bytes,
            written.clone(),
        );
        let rpc_calls = Family::<ByClass, Counter>::default();
        registry.register(
            "wdo_rpc_calls",
            "Calls objects and the worker made to objects of a class",
            rpc_calls.clone(),
        );
        let outbound = Family::<ByOutcome, Counter>::default();
        registry.register("wdo_outbound_requests", "Requests objects made to the outside world", outbound.clone());
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let alarms_fired = counter(&mut registry, "wdo_alarms_fired", "Alarm handlers that ran to the end");
        let alarms_retried =
            counter(&mut registry, "wdo_alarms_retried", "Alarm handlers that failed and will be retried");
        let alarms_dropped =
            counter(&mut registry, "wdo_alarms_dropped", "Alarms given up on after their last retry failed");
        let socket_messages_in = counter(&mut registry, "wdo_websocket_messages_in", "WebSocket messages from clients");
        let socket_messages_out = counter(&mut registry, "wdo_websocket_messages_out", "WebSocket messages to clients");
        let deploys = counter(&mut registry, "wdo_deploys", "Deploys and rollbacks applied");
        let tail_dropped =
            counter(&mut registry, "wdo_tail_dropped", "Tail records dropped because a tail read too slowly");
        let gauges = GAUGES
            .iter()
            .map(|(name, help)| {
                let gauge = Gauge::default();
                registry.register(*name, *help, gauge.clone());
                (*name, gauge)
            })
            .collect();
        Metrics {
            on,
            registry,
            requests,
            events,
            durations,
            written,
            rpc_calls,
            outbound,
            alarms_fired,
            alarms_retried,
            alarms_dropped,
            socket_messages_in,
            socket_messages_out,
            deploys,
            tail_dropped,
            gauges,
            classes: RwLock::new(HashMap::new()),
            worker: OnceLock::new(),
        }
    }

    /// The worker's handles (class label `_worker`).
    pub fn worker(&self) -> &Arc<ClassMetrics> {
        self.worker.get_or_init(|| self.class(WORKER))
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The handles of one class's metrics (made at its first use, then shared).
    pub fn class(&self, class: &str) -> Arc<ClassMetrics> {
        if let Some(found) = self.classes.read().unwrap().get(class) {
            return found.clone();
        }
        let class: Arc<str> = Arc::from(class);
        let made = Arc::new(ClassMetrics {
            on: self.on,
            label: ClassLabel(class.clone()),
            events: self.events.clone(),
            requests: self.requests.clone(),
            counters: (0..Kind::ALL.len() * Outcome::ALL.len()).map(|_| OnceLock::new()).collect(),
            request_counters: (0..Outcome::ALL.len()).map(|_| OnceLock::new()).collect(),
            duration: self.durations.get_or_create_owned(&ByClass { class: ClassLabel(class.clone()) }),
            written: self.written.get_or_create_owned(&ByClass { class: ClassLabel(class.clone()) }),
        });
        self.classes.write().unwrap().entry(class).or_insert(made).clone()
    }

    /// A call made to an object of `class`.
    pub fn rpc_call(&self, class: &Arc<str>) {
        if self.on {
            self.rpc_calls.get_or_create(&ByClass { class: ClassLabel(class.clone()) }).inc();
        }
    }

    /// An outbound request an object of `class` made, and how it ended.
    pub fn outbound(&self, class: &Arc<str>, outcome: Outcome) {
        if self.on {
            self.outbound.get_or_create(&ByOutcome { class: ClassLabel(class.clone()), outcome }).inc();
        }
    }

    pub fn count(&self, counter: &Counter) {
        if self.on {
            counter.inc();
        }
    }

    /// The Prometheus text exposition, with the gauges as `now` says.
    pub fn encode(&self, now: &Gauges) -> String {
        for (name, value) in &now.values {
            if let Some((_, gauge)) = self.gauges.iter().find(|(known, _)| known == name) {
                gauge.set(*value);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

/// One class's counters and histogram, resolved once (an actor keeps them): recording an event
/// is an atomic add and a histogram's lock.
pub struct ClassMetrics {
    on: bool,
    label: ClassLabel,
    events: Family<ByKind, Counter>,
    requests: Family<ByOutcome, Counter>,
    /// Made at first use, so a class shows only the kinds and outcomes it had.
    counters: Box<[OnceLock<Counter>]>,
    request_counters: Box<[OnceLock<Counter>]>,
    duration: Histogram,
    written: Counter,
}

impl ClassMetrics {
    /// An event of this class ran (`took`: its run, the commit aside).
    pub fn event(&self, kind: Kind, outcome: Outcome, took: Duration) {
        if !self.on {
            return;
        }
        let index = kind as usize * Outcome::ALL.len() + outcome as usize;
        self.counters[index]
            .get_or_init(|| self.events.get_or_create_owned(&ByKind { class: self.label.clone(), kind, outcome }))
            .inc();
        if !matches!(outcome, Outcome::Overloaded) {
            self.duration.observe(took.as_secs_f64());
        }
    }

    /// A client request addressed to this class ended so.
    pub fn request(&self, outcome: Outcome) {
        if self.on {
            self.request_counters[outcome as usize]
                .get_or_init(|| self.requests.get_or_create_owned(&ByOutcome { class: self.label.clone(), outcome }))
                .inc();
        }
    }

    /// A commit of this class wrote `bytes` to its database.
    pub fn written(&self, bytes: u64) {
        if self.on && bytes > 0 {
            self.written.inc_by(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_per_class_kind_and_outcome_and_gauges_as_given() {
        let metrics = Metrics::new(true);
        let counter = metrics.class("counter");
        counter.event(Kind::Fetch, Outcome::Ok, Duration::from_millis(2));
        counter.event(Kind::Fetch, Outcome::Ok, Duration::from_millis(3));
        counter.event(Kind::Fetch, Outcome::Trap, Duration::from_millis(1));
        counter.request(Outcome::Ok);
        metrics.class("counter").written(4096);
        let mut gauges = Gauges::default();
        gauges.set("wdo_live_instances", 7);
        let text = metrics.encode(&gauges);
        assert!(text.contains(r#"wdo_events_total{class="counter",kind="fetch",outcome="ok"} 2"#), "{text}");
        assert!(text.contains(r#"wdo_events_total{class="counter",kind="fetch",outcome="trap"} 1"#), "{text}");
        assert!(text.contains(r#"wdo_requests_total{class="counter",outcome="ok"} 1"#), "{text}");
        assert!(text.contains(r#"wdo_event_duration_seconds_count{class="counter"} 3"#), "{text}");
        assert!(text.contains(r#"wdo_storage_written_bytes_total{class="counter"} 4096"#), "{text}");
        assert!(text.contains("wdo_live_instances 7"), "{text}");
        // Only what happened is listed.
        assert!(!text.contains(r#"outcome="cpu_limit""#), "{text}");
    }

    #[test]
    fn off_keeps_nothing() {
        let metrics = Metrics::new(false);
        metrics.class("counter").event(Kind::Fetch, Outcome::Ok, Duration::from_millis(2));
        assert!(!metrics.encode(&Gauges::default()).contains("wdo_events_total{"));
    }
}
