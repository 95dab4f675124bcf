//! The `pretty` format's fields without styling, for when colour is off.
//!
//! tracing-subscriber's default field formatter wraps every field name in a style even
//! with colour off, and formatting an empty style still costs two trips through
//! `fmt::write`: a tenth of a session lookup's instructions in the benchmark. The text is
//! the same: `message name="text" other=1`.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Formats fields as `name=value`, separated by spaces, the message first and bare.
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        super::write_at_once(&mut writer, |writer| {
            let mut visitor = PlainVisitor {
                writer,
                first: true,
                result: Ok(()),
            };
            fields.record(&mut visitor);
            visitor.result
        })
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Writes the separator and `name=`, then the value.
    fn field(&mut self, name: &str, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        self.result = self.result.and_then(|()| {
            self.writer
                .write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.writer.write_char('=')?;
            value(&mut self.writer)
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
            "message" => {
                if self.result.is_err() {
                    return;
                }
                if !std::mem::take(&mut self.first) {
                    self.result = self.writer.write_char(' ');
                }
                self.result = self
                    .result
                    .and_then(|()| write!(NoControl(&mut self.writer), "{value:?}"));
            }
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

    #[test]
    fn a_message_cannot_break_the_line_or_carry_escapes() {
        let line = logged(PlainFields, || {
            tracing::warn!(detail = "a\nb", "one\ntwo\u{1b}[31m")
        });
        assert_eq!(line, " WARN one\\ntwo\\u{1b}[31m detail=\"a\\nb\"\n");
    }
}
