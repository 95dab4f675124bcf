//! The `pretty` format without styling, for when colour is off.
//!
//! tracing-subscriber's default formatters wrap the timestamp, span names, braces, colons,
//! the target and every field name in a style even with colour off, and formatting an empty
//! style still costs two trips through `fmt::write`: together an eighth of a session
//! lookup's instructions in the benchmark. The text is the same:
//! `2026-11-21T10:00:00.123456Z  INFO request{route="/session"}: wxlogin::http: message name="text" other=1`.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::Separated;

/// Formats an event as one line: time, level, the spans it is in with their fields, its
/// target, then its own fields.
pub struct PlainLines<T> {
    pub timer: T,
}

impl<S, N, T> FormatEvent<S, N> for PlainLines<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str(match *metadata.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(metadata.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// Formats fields as `name=value`, separated by spaces, the message first and bare.
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        super::write_at_once(&mut writer, |writer| {
            let mut visitor = PlainVisitor(Separated::new(writer, ' ', true));
            fields.record(&mut visitor);
            visitor.0.result
        })
    }
}

struct PlainVisitor<'w>(Separated<'w>);

impl PlainVisitor<'_> {
    /// Writes `name=`, then the value.
    fn field(&mut self, name: &str, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        self.0.item(|w| {
            w.write_str(name.strip_prefix("r#").unwrap_or(name))?;
            w.write_char('=')?;
            value(w)
        });
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.record_debug(field, &format_args!("{value}")),
            // Printable ASCII without quotes or backslashes reads the same through `Debug`,
            // which escapes character by character.
            name if value
                .bytes()
                .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\') =>
            {
                self.field(name, |w| {
                    w.write_char('"')?;
                    w.write_str(value)?;
                    w.write_char('"')
                })
            }
            _ => self.record_debug(field, &value),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            // A message is shown bare, so it must not carry a line break or a terminal
            // escape of its own.
            "message" => self.0.item(|w| write!(NoControl(w), "{value:?}")),
            name => self.field(name, |w| write!(w, "{value:?}")),
        }
    }
}

/// Writes control characters escaped (`\n`, `\u{1b}`), everything else as it is.
struct NoControl<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for NoControl<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if !text.chars().any(char::is_control) {
            return self.0.write_str(text);
        }
        for ch in text.chars() {
            match ch.is_control() {
                true => write!(self.0, "{}", ch.escape_default())?,
                false => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn logged<F>(fields: F, body: impl FnOnce()) -> String
    where
        F: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let sink = crate::telemetry::TestSink::default();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(fields)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(sink.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
        sink.text()
    }

    #[test]
    fn fields_read_as_the_default_formats_without_colour() {
        // Plain strings take a short cut; these must still read as `Debug` writes them.
        let odd = "tab\t \"quoted\" back\\slash ü \u{301}";
        let request = || {
            let span = tracing::info_span!("request", method = "GET", route = "/session", odd);
            let _entered = span.enter();
            span.record("route", "/openid");
            tracing::info!(
                status = 200u16,
                latency_ms = 0.015,
                r#type = "x",
                odd,
                "finished"
            );
        };
        let line = logged(PlainFields, request);
        assert_eq!(
            line,
            format!(
                " INFO request{{method=\"GET\" route=\"/session\" odd={odd:?} route=\"/openid\"}}: finished status=200 latency_ms=0.015 type=\"x\" odd={odd:?}\n"
            )
        );
        let default = tracing_subscriber::fmt::format::DefaultFields::new();
        assert_eq!(line, logged(default, request));
    }

    fn noon(w: &mut Writer<'_>) -> fmt::Result {
        w.write_str("2026-11-21T12:00:00.000001Z")
    }

    fn lines_with<E>(format: E) -> String
    where
        E: FormatEvent<tracing_subscriber::Registry, PlainFields> + Send + Sync + 'static,
    {
        let sink = crate::telemetry::TestSink::default();
        let layer = tracing_subscriber::fmt::layer()
            .fmt_fields(PlainFields)
            .event_format(format)
            .with_writer(sink.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::warn!(outside = 1, "no span");
            let outer = tracing::info_span!("request", route = "/session");
            let _outer = outer.enter();
            let inner = tracing::debug_span!("bare");
            let _inner = inner.enter();
            tracing::error!(status = 500u16, "failed");
            tracing::debug!("quiet");
        });
        sink.text()
    }

    #[test]
    fn lines_read_as_the_default_formats_without_colour() {
        let noon = noon as fn(&mut Writer<'_>) -> fmt::Result;
        let ours = lines_with(PlainLines { timer: noon });
        let target = module_path!();
        assert_eq!(
            ours.lines().collect::<Vec<_>>(),
            [
                format!("2026-11-21T12:00:00.000001Z  WARN {target}: no span outside=1"),
                format!(
                    "2026-11-21T12:00:00.000001Z ERROR request{{route=\"/session\"}}:bare: {target}: failed status=500"
                ),
                format!(
                    "2026-11-21T12:00:00.000001Z DEBUG request{{route=\"/session\"}}:bare: {target}: quiet"
                ),
            ]
        );
        let default = tracing_subscriber::fmt::format()
            .with_ansi(false)
            .with_timer(noon);
        assert_eq!(ours, lines_with(default));
    }

    #[test]
    fn a_message_cannot_break_the_line_or_carry_escapes() {
        let line = logged(PlainFields, || {
            tracing::warn!(detail = "a\nb", "one\ntwo\u{1b}[31m")
        });
        assert_eq!(line, " WARN one\\ntwo\\u{1b}[31m detail=\"a\\nb\"\n");
    }
}
