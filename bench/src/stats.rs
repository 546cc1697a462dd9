//! Latency summaries and the table rows the benchmark prints.

use std::fmt;
use std::time::Duration;

pub struct Row {
    pub name: String,
    pub count: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    pub errors: usize,
}

impl Row {
    pub fn header() -> String {
        format!(
            "{:<48} {:>10} {:>12} {:>10} {:>10} {:>7}",
            "scenario", "requests", "per second", "p50", "p99", "errors"
        )
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<48} {:>10} {:>12.0} {:>10} {:>10} {:>7}",
            self.name,
            self.count,
            self.count as f64 / self.elapsed.as_secs_f64(),
            format_duration(self.percentile(0.50)),
            format_duration(self.percentile(0.99)),
            self.errors
        )
    }
}

fn format_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// CPU model and core count, for the figures' provenance.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{} ({cores} cores)", model.unwrap_or("unknown CPU"))
}
