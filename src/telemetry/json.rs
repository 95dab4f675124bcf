//! JSON log lines: one object per line, with the event's fields at the top level and the
//! current span's fields and name under `span`.
//!
//! This is the shape tracing-subscriber's own JSON format writes, written straight into
//! the line. That one stores each span's fields as JSON text and parses it back into a map
//! for every event, and writes every string through several layers of adaptors: in the
//! benchmark it took half of a session lookup's instructions. Here a span's fields are
//! kept as a ready-made JSON fragment and copied into each line.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::Separated;

/// Formats an event as one JSON object.
pub struct JsonLines;

/// Formats fields as the members of a JSON object, without the braces: `"a":1,"b":"x"`.
pub struct JsonFields;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        super::time::Timestamp.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", metadata.level())?;
        let mut fields = JsonVisitor::new(writer.by_ref(), false);
        event.record(&mut fields);
        fields.0.result?;
        writer.write_str(",\"target\":")?;
        write_json_str(&mut writer, metadata.target())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            writer.write_str(",\"span\":{")?;
            if let Some(fields) = span.extensions().get::<FormattedFields<JsonFields>>()
                && !fields.is_empty()
            {
                writer.write_str(fields)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            write_json_str(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        super::write_at_once(&mut writer, |writer| {
            let mut visitor = JsonVisitor::new(writer, true);
            fields.record(&mut visitor);
            visitor.0.result
        })
    }

    /// Fields recorded on a span after it was created join its fragment.
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut visitor = JsonVisitor::new(current.as_writer(), first);
        fields.record(&mut visitor);
        visitor.0.result
    }
}

/// Writes each field as `,"name":value` (no comma before the first when `first`).
struct JsonVisitor<'w>(Separated<'w>);

impl<'w> JsonVisitor<'w> {
    fn new(writer: Writer<'w>, first: bool) -> Self {
        Self(Separated::new(writer, ',', first))
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        self.0.item(|w| {
            write_json_str(w, field.name())?;
            w.write_char(':')?;
            value(w)
        });
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| write_json_str(w, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }

    /// JSON has no NaN or infinity; like serde_json, they become null.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, |w| match value.is_finite() {
            true => write!(w, "{value}"),
            false => w.write_str("null"),
        });
    }

    /// Everything else (messages, `%` and `?` values, errors) as a string.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(JsonEscaped(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `text` as a JSON string, quotes included. Control characters are escaped, so a value
/// cannot end the line or smuggle terminal escapes into it.
fn write_json_str(writer: &mut impl fmt::Write, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    JsonEscaped(&mut *writer).write_str(text)?;
    writer.write_char('"')
}

/// Writes text escaped for the inside of a JSON string, as serde_json escapes it: quotes,
/// backslashes and control characters. Text with none of those, nearly all of it, is
/// written as it is, without a copy.
struct JsonEscaped<W>(W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            return self.0.write_str(text);
        }
        // Each character escapes on its own, so escaping piece by piece is exact.
        let quoted = serde_json::to_string(text).map_err(|_| fmt::Error)?;
        self.0.write_str(&quoted[1..quoted.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// The lines logged while `body` runs, parsed.
    fn lines(body: impl FnOnce()) -> Vec<Value> {
        let sink = crate::telemetry::TestSink::default();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_writer(sink.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, body);
        sink.text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn an_event_in_a_span_carries_its_fields_and_the_spans() {
        let logged = lines(|| {
            let span =
                tracing::info_span!("request", method = "GET", route = tracing::field::Empty);
            let _entered = span.enter();
            span.record("route", "/session");
            tracing::info!(
                status = 200u16,
                latency_ms = 0.015,
                ok = true,
                "request finished"
            );
        });
        let [line] = logged.as_slice() else {
            panic!("{logged:?}")
        };
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request finished");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 0.015);
        assert_eq!(line["ok"], true);
        assert_eq!(line["target"], module_path!());
        assert_eq!(
            line["span"],
            json!({"method": "GET", "route": "/session", "name": "request"})
        );
    }

    #[test]
    fn strings_are_escaped_and_odd_values_stay_valid_json() {
        let hostile = "a \"quoted\"\nline\u{1b}[31m\\";
        let logged = lines(|| {
            let span = tracing::info_span!("empty");
            let _entered = span.enter();
            tracing::warn!(
                hostile,
                debugged = ?hostile,
                negative = -3i64,
                not_a_number = f64::NAN,
                "{hostile}"
            );
        });
        let [line] = logged.as_slice() else {
            panic!("{logged:?}")
        };
        assert_eq!(line["hostile"], hostile);
        assert_eq!(line["message"], hostile);
        assert_eq!(line["debugged"], format!("{hostile:?}"));
        assert_eq!(line["negative"], -3);
        assert_eq!(line["not_a_number"], Value::Null);
        assert_eq!(line["span"], json!({"name": "empty"}));
    }

    #[test]
    fn an_event_outside_any_span_has_no_span_member() {
        let logged = lines(|| tracing::error!("outside"));
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0]["message"], "outside");
        assert_eq!(logged[0]["level"], "ERROR");
        assert!(logged[0].get("span").is_none());
    }
}
