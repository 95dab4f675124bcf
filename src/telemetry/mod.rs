//! Structured logs: readable for people, one JSON object per line for machines, both from
//! tracing-subscriber's own formatter, written to stderr off the request path by
//! tracing-appender.

pub mod metrics;

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::Subscriber;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use crate::config::LogFormat;

/// `RUST_LOG` overrides this.
pub const DEFAULT_FILTER: &str = "info";

/// Lines the writer queues before it drops new ones (see [`init`]).
const QUEUED_LINES: usize = 128_000;

/// A subscriber writing to `writer` in `format`, filtered by `RUST_LOG` or `default_filter`.
/// `colour` is for a terminal only: escape codes in a log file are noise.
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
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Pretty => Box::new(registry.with(layer.with_ansi(colour))),
        // Event fields at the top level, the request span's fields under "span".
        LogFormat::Json => Box::new(
            registry.with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            ),
        ),
    }
}

/// Installs the process-wide subscriber, writing to stderr from a thread of its own.
/// Keep the returned guard until the process ends: dropping it writes out the last lines.
/// Safe to call once; a second call is ignored.
///
/// The writer is lossy on purpose: when stderr does not keep up (a stalled log collector),
/// lines past [`QUEUED_LINES`] are dropped and counted (`wxlogin_log_lines_dropped_total`)
/// rather than blocking every request behind the log.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("wxlogin-log")
        // The writer thread flushes whenever its queue runs dry: under load, one write of
        // many lines instead of a system call per line.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let _ = DROPPED_LINES.set(writer.error_counter());
    let _ = tracing::subscriber::set_global_default(subscriber(
        format,
        DEFAULT_FILTER,
        writer,
        std::io::stderr().is_terminal(),
    ));
    guard
}

static DROPPED_LINES: OnceLock<ErrorCounter> = OnceLock::new();

/// How many log lines the writer [`init`] installed has dropped; `None` without one.
pub fn dropped_log_lines() -> Option<u64> {
    DROPPED_LINES.get().map(|c| c.dropped_lines() as u64)
}

/// The error and its sources on one line, for the log ("error sending request" says
/// little; its causes say "Connection refused").
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // Many errors repeat their cause in their own text; it is said once here.
        let cause_text = cause.to_string();
        if !line.contains(&cause_text) {
            line.push_str(": ");
            line.push_str(&cause_text);
        }
        source = cause.source();
    }
    line
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

    #[test]
    fn the_error_chain_says_a_cause_once_when_an_error_repeats_it() {
        #[derive(Debug, thiserror::Error)]
        #[error("the store is unreachable")]
        struct Store(#[source] Client);
        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        struct Client(#[source] std::io::Error);
        let io = || std::io::Error::other("timed out");
        let err = Store(Client(io()));
        assert_eq!(error_chain(&err), "the store is unreachable: timed out");
    }
}
