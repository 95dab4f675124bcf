//! Log timestamps: the text tracing-subscriber's `SystemTime` writes
//! (`2026-11-21T10:00:00.123456Z`), with the date and time of day formatted once a second
//! per thread instead of for every line. Formatting them field by field was a twentieth of
//! a session lookup's instructions in the benchmark.

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{self, FormatTime};

/// UTC, RFC 3339, to the microsecond.
#[derive(Clone, Copy, Default)]
pub struct Timestamp;

thread_local! {
    /// The epoch second last written on this thread, and its text up to the fraction.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let Some(now) = since_epoch() else {
            return time::SystemTime.format_time(w);
        };
        let written = SECOND.try_with(|cached| {
            let Ok(mut cached) = cached.try_borrow_mut() else {
                return time::SystemTime.format_time(w);
            };
            if cached.0 != now.as_secs() {
                match second_text(now.as_secs()) {
                    Some(text) => *cached = (now.as_secs(), text),
                    None => return time::SystemTime.format_time(w),
                }
            }
            w.write_str(&cached.1)?;
            write_fraction(w, now.subsec_micros())
        });
        // Only while the thread is being torn down.
        written.unwrap_or_else(|_| time::SystemTime.format_time(w))
    }
}

fn since_epoch() -> Option<Duration> {
    SystemTime::now().duration_since(UNIX_EPOCH).ok()
}

/// tracing-subscriber's text for epoch second `second`, without the fraction; `None` when
/// the clock has moved on to another second meanwhile, since the text is then for that one.
fn second_text(second: u64) -> Option<String> {
    let mut text = String::new();
    time::SystemTime
        .format_time(&mut Writer::new(&mut text))
        .ok()?;
    if since_epoch()?.as_secs() != second {
        return None;
    }
    text.truncate(text.rfind('.')?);
    Some(text)
}

/// `.123456Z`
fn write_fraction(w: &mut Writer<'_>, mut micros: u32) -> fmt::Result {
    let mut fraction = *b".000000Z";
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(timer: impl FormatTime) -> String {
        let mut text = String::new();
        timer
            .format_time(&mut Writer::new(&mut text))
            .expect("formatted");
        text
    }

    #[test]
    fn the_text_is_tracing_subscribers_own() {
        // Two of ours (the second from the cache) between two of tracing-subscriber's:
        // when those agree on the second, ours must too. A run that straddles a second
        // boundary is retried.
        for _ in 0..100 {
            let before = text(time::SystemTime);
            let ours = [text(Timestamp), text(Timestamp)];
            let after = text(time::SystemTime);
            if before[..20] != after[..20] {
                continue;
            }
            for stamp in ours {
                assert_eq!(stamp.len(), before.len(), "{stamp} against {before}");
                assert_eq!(stamp[..20], before[..20], "{stamp} against {before}");
                assert!(stamp.ends_with('Z'), "{stamp}");
                assert!(stamp[20..26].bytes().all(|b| b.is_ascii_digit()), "{stamp}");
            }
            return;
        }
        panic!("every try straddled a second boundary");
    }

    #[test]
    fn the_fraction_is_six_digits_padded_with_zeros() {
        let mut text = String::new();
        write_fraction(&mut Writer::new(&mut text), 4_200).expect("formatted");
        assert_eq!(text, ".004200Z");
        text.clear();
        write_fraction(&mut Writer::new(&mut text), 999_999).expect("formatted");
        assert_eq!(text, ".999999Z");
    }
}
