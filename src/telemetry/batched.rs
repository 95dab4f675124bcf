//! Log lines gathered in memory and written out in batches.
//!
//! Writing each line to stderr as it is logged costs a system call per request, which was
//! about a tenth of a session lookup's CPU time in the benchmark. Here a line is copied
//! into a buffer; the buffer goes out when it fills, every `FLUSH_EVERY` from a thread of
//! its own (never a runtime worker), and when the [`FlushOnDrop`] guard is dropped at exit.
//! A line reaches stderr at most `FLUSH_EVERY` late; a process killed with SIGKILL loses at
//! most that much.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How late a log line may reach stderr.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Past this many buffered bytes, the line that crosses it writes the batch out at once.
pub const BATCH_BYTES: usize = 64 * 1024;

/// The writer handed to the log formatter. Cheap to clone; every clone shares one buffer.
pub struct Batched<W>(Arc<Shared<W>>);

impl<W> Clone for Batched<W> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

struct Shared<W> {
    batch: Mutex<Batch<W>>,
    stopped: AtomicBool,
}

struct Batch<W> {
    lines: Vec<u8>,
    sink: W,
}

impl<W: Write> Batch<W> {
    /// Errors are dropped: there is nowhere left to report that logging failed.
    fn write_out(&mut self) {
        if !self.lines.is_empty() {
            let _ = self.sink.write_all(&self.lines);
            let _ = self.sink.flush();
            self.lines.clear();
        }
    }
}

impl<W: Write + Send + 'static> Batched<W> {
    /// A batching writer in front of `sink`, and the guard whose drop writes out what is
    /// left. The timed flushes run on a thread the guard stops.
    pub fn new(sink: W) -> (Self, FlushOnDrop) {
        let writer = Self::without_timer(sink);
        let flusher = writer.clone();
        let thread = std::thread::Builder::new()
            .name("wxlogin-log-flush".into())
            .spawn(move || {
                while !flusher.0.stopped.load(Ordering::Acquire) {
                    std::thread::park_timeout(FLUSH_EVERY);
                    flusher.flush_now();
                }
            })
            .ok();
        let flush = writer.clone();
        let guard = FlushOnDrop {
            flush: Box::new(move || {
                flush.0.stopped.store(true, Ordering::Release);
                flush.flush_now();
            }),
            thread,
        };
        (writer, guard)
    }
}

impl<W: Write> Batched<W> {
    fn without_timer(sink: W) -> Self {
        Self(Arc::new(Shared {
            batch: Mutex::new(Batch {
                lines: Vec::with_capacity(BATCH_BYTES),
                sink,
            }),
            stopped: AtomicBool::new(false),
        }))
    }

    /// Writes out every buffered line.
    pub fn flush_now(&self) {
        self.lock().write_out();
    }

    fn lock(&self) -> MutexGuard<'_, Batch<W>> {
        // A panic while holding the lock leaves at worst a partial line: keep logging.
        self.0.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W: Write> Write for &Batched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut batch = self.lock();
        batch.lines.extend_from_slice(buf);
        if batch.lines.len() >= BATCH_BYTES {
            batch.write_out();
        }
        Ok(buf.len())
    }

    /// The formatter flushes after each line; batching is the point, so this waits for
    /// the batch to fill or the timer.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for Batched<W> {
    type Writer = &'a Batched<W>;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Writes out the buffered log lines and stops the flushing thread when dropped. Keep it
/// alive in `main` for as long as the process logs.
#[must_use = "dropping the guard stops the timed flushes"]
pub struct FlushOnDrop {
    flush: Box<dyn Fn() + Send>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        (self.flush)();
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::TestSink as Sink;

    #[test]
    fn lines_wait_in_the_batch_until_it_is_written_out() {
        let sink = Sink::default();
        let writer = Batched::without_timer(sink.clone());
        (&writer).write_all(b"one\n").expect("written");
        // The formatter flushes after each line: that must not write the batch out.
        (&writer).flush().expect("written");
        (&writer).write_all(b"two\n").expect("written");
        assert_eq!(sink.text(), "");
        writer.flush_now();
        assert_eq!(sink.text(), "one\ntwo\n");
    }

    #[test]
    fn a_full_batch_is_written_out_by_the_line_that_fills_it() {
        let sink = Sink::default();
        let writer = Batched::without_timer(sink.clone());
        let line = vec![b'x'; BATCH_BYTES / 2 + 1];
        (&writer).write_all(&line).expect("written");
        assert_eq!(sink.text(), "");
        (&writer).write_all(&line).expect("written");
        assert_eq!(sink.text().len(), 2 * line.len());
    }

    #[test]
    fn dropping_the_guard_writes_out_what_is_left_and_stops_the_thread() {
        let sink = Sink::default();
        let (writer, guard) = Batched::new(sink.clone());
        (&writer).write_all(b"last words\n").expect("written");
        drop(guard);
        assert_eq!(sink.text(), "last words\n");
        assert!(writer.0.stopped.load(Ordering::Acquire));
    }
}
