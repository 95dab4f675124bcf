//! Structured logs: readable for people, one JSON object per line for machines.

mod batched;
mod json;
pub mod metrics;
mod plain;
mod time;

use std::cell::RefCell;
use std::fmt;
use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::layer::SubscriberExt;

use crate::config::LogFormat;

pub use batched::{Batched, FlushOnDrop};

/// `RUST_LOG` overrides this.
pub const DEFAULT_FILTER: &str = "info";

/// A subscriber writing to `writer` in `format`, filtered by `RUST_LOG` or `default_filter`.
/// `colour` is for a terminal only: escape codes in a log file are noise, and writing them
/// cost a fifth of a login's CPU time in the benchmark.
pub fn subscriber<W>(
    format: LogFormat,
    default_filter: &str,
    writer: W,
    colour: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty if colour => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_timer(time::Timestamp)
                    .with_ansi(true)
                    .with_writer(writer),
            ),
        ),
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(plain::PlainFields)
                    .event_format(plain::PlainLines {
                        timer: time::Timestamp,
                    })
                    .with_ansi(false)
                    .with_writer(writer),
            ),
        ),
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(json::JsonFields)
                    .event_format(json::JsonLines)
                    .with_ansi(false)
                    .with_writer(writer),
            ),
        ),
    }
}

/// Installs the process-wide subscriber, logging to stderr in batches (see [`Batched`]).
/// Keep the returned guard until the process ends: dropping it writes out the last lines.
/// Safe to call once; a second call is ignored.
pub fn init(format: LogFormat) -> FlushOnDrop {
    let (writer, flush) = Batched::new(std::io::stderr());
    let _ = tracing::subscriber::set_global_default(subscriber(
        format,
        DEFAULT_FILTER,
        writer,
        std::io::stderr().is_terminal(),
    ));
    flush
}

/// Runs `format` into a per-thread buffer, then writes what it wrote to `writer` at once.
/// A new span's fields go into a `String` of their own: written a piece at a time it grew,
/// and was copied, five times for every request; written at once, it is allocated once.
fn write_at_once(
    writer: &mut Writer<'_>,
    mut format: impl FnMut(Writer<'_>) -> fmt::Result,
) -> fmt::Result {
    thread_local! {
        static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
    }
    SCRATCH
        .try_with(|scratch| {
            // Never taken already in practice (tracing drops events logged while one is being
            // formatted), but if it were, writing straight through is still right.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return format(writer.by_ref());
            };
            scratch.clear();
            let written =
                format(Writer::new(&mut *scratch)).and_then(|()| writer.write_str(&scratch));
            // An odd huge line is not worth keeping a buffer that size for.
            if scratch.capacity() > 4096 {
                *scratch = String::new();
            }
            written
        })
        .unwrap_or_else(|_| format(writer.by_ref()))
}

/// Fields written one after another with `separator` between them. Writing stops at the
/// first error, which `result` keeps: `Visit` methods cannot return one.
struct Separated<'w> {
    writer: Writer<'w>,
    separator: char,
    first: bool,
    result: fmt::Result,
}

impl<'w> Separated<'w> {
    /// `first`: nothing has been written yet, so no separator goes before the next item.
    fn new(writer: Writer<'w>, separator: char, first: bool) -> Self {
        Self {
            writer,
            separator,
            first,
            result: Ok(()),
        }
    }

    /// Writes the separator (unless this is the first item), then whatever `write` writes.
    fn item(&mut self, write: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(self.separator);
        }
        self.result = self.result.and_then(|()| write(&mut self.writer));
    }
}

/// The error and its sources on one line, for the log ("error sending request" says
/// little; its causes say "Connection refused").
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// An in-memory log sink that tests read while a writer owns a clone of it.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct TestSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl TestSink {
    pub(crate) fn text(&self) -> String {
        let bytes = self.0.lock().expect("sink lock").clone();
        String::from_utf8(bytes).expect("UTF-8")
    }
}

#[cfg(test)]
impl std::io::Write for TestSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("sink lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl<'a> MakeWriter<'a> for TestSink {
    type Writer = TestSink;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_chain_joins_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&err), "outer: inner");
    }
}
