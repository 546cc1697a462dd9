//! Log lines: tracing-subscriber's usual text, or one JSON object per line (`--log-format
//! json`). Either way a line logged while the task works for a request or an object carries
//! that work's [`Context`](super::Context): its request id, and in JSON its class, object id,
//! object name and event kind too.

use super::Context;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-03T10:52:36.123456Z  INFO target: message field=value request_id=...`
    #[default]
    Text,
    /// `{"time": ..., "level": ..., "target": ..., "message": ..., "class": ..., ...}`
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}` (use text or json)")),
        }
    }
}

/// Installs the process's logger: lines to stderr in `format`, filtered by `filter` (an
/// `EnvFilter` directive such as `info` or `wdo_host=debug`).
pub fn install(format: LogFormat, filter: tracing_subscriber::EnvFilter) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .event_format(TextLines(Format::default()))
            .init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).init(),
    }
}

/// The usual text line, with the request id after the fields.
struct TextLines(Format<Full>);

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let Some(request_id) = super::current_request_id() else {
            return self.0.format_event(ctx, writer, event);
        };
        // Written apart, so the id can follow the fields (without colours: a terminal's only).
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        writeln!(writer, "{line} request_id={request_id}")
    }
}

/// One JSON object per line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Line::default();
        line.put("time", humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string().into());
        line.put("level", metadata.level().as_str().into());
        line.put("target", metadata.target().into());
        Context::with(|context| {
            if let Some(object) = &context.object {
                line.put("class", object.class.as_ref().into());
                line.put("object", object.label.as_ref().into());
                line.put("object_id", object.id.to_hex().into());
            }
            if let Some(kind) = context.kind {
                line.put("kind", kind.as_str().into());
            }
            if let Some(request_id) = &context.request_id {
                line.put("request_id", request_id.as_ref().into());
            }
        });
        event.record(&mut line);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// A line's members in the order they were put (time and level first, to read by eye).
#[derive(Default)]
struct Line(Vec<(String, serde_json::Value)>);

impl Line {
    fn put(&mut self, name: &str, value: serde_json::Value) {
        match self.0.iter().find(|(known, _)| known == name) {
            // The context said it already (a field naming the object the same way).
            Some((_, known)) if *known == value => {}
            Some(_) => self.0.push((format!("field.{name}"), value)),
            None => self.0.push((name.to_string(), value)),
        }
    }
}

impl serde::Serialize for Line {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Line {
    fn put_field(&mut self, field: &Field, value: serde_json::Value) {
        self.put(field.name(), value);
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put_field(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put_field(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put_field(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put_field(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put_field(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put_field(field, value.into());
    }
}
