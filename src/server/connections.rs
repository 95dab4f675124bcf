//! The open connections, and what each one's task and the accept loop know of it: whose it
//! is, whether a request is in progress, and since when it has been idle or sending.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ServerSettings;

/// The open connections.
#[derive(Default)]
pub(super) struct Connections {
    open: Mutex<Open>,
    next_id: AtomicU64,
}

#[derive(Default)]
pub(super) struct Open {
    by_id: HashMap<u64, Arc<Connection>>,
    /// How many each client holds (a trusted proxy's connections are no one's).
    per_client: HashMap<IpAddr, usize>,
}

impl Open {
    pub(super) fn remove(&mut self, id: u64) -> Option<Arc<Connection>> {
        let connection = self.by_id.remove(&id)?;
        if let Some(client) = connection.client
            && let Some(count) = self.per_client.get_mut(&client)
        {
            *count -= 1;
            if *count == 0 {
                self.per_client.remove(&client);
            }
        }
        Some(connection)
    }

    /// Asks the connection that has been idle the longest, of those `among` picks, to
    /// close, and takes it off the count at once. Returns whether there was one.
    pub(super) fn close_longest_idle(&mut self, among: impl Fn(&Connection) -> bool) -> bool {
        let longest_idle = self
            .by_id
            .values()
            .filter(|c| c.is_idle() && among(c))
            .min_by_key(|c| c.idle_since())
            .map(|c| c.id);
        let Some(closing) = longest_idle.and_then(|id| self.remove(id)) else {
            return false;
        };
        // notify_one stores the permit, should the connection not be waiting right now.
        closing.make_room.notify_one();
        true
    }
}

impl Connections {
    /// Registers a connection of `client`, making room at its share or at the cap.
    pub(super) fn admit(
        &self,
        client: Option<IpAddr>,
        cap: usize,
        share: usize,
    ) -> Result<Arc<Connection>, &'static str> {
        let mut open = self.lock();
        if let Some(client) = client
            && open.per_client.get(&client).copied().unwrap_or(0) >= share
            && !open.close_longest_idle(|c| c.client == Some(client))
        {
            return Err("client_share");
        }
        if open.by_id.len() >= cap && !open.close_longest_idle(|_| true) {
            return Err("full");
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            client,
            opened: Instant::now(),
            in_progress: AtomicUsize::new(0),
            answering: AtomicUsize::new(0),
            last_sent: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NOT_YET),
            http2: AtomicBool::new(false),
            make_room: Notify::new(),
        });
        open.by_id.insert(id, Arc::clone(&connection));
        if let Some(client) = client {
            *open.per_client.entry(client).or_default() += 1;
        }
        Ok(connection)
    }

    /// Closes the longest-idle connection, whoever's: to free a file descriptor.
    pub(super) fn close_longest_idle(&self) -> bool {
        self.lock().close_longest_idle(|_| true)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        lock(&self.open)
    }
}

/// Takes a connection off the list when its task ends.
pub(super) struct Registered<'a>(pub(super) &'a Connections, pub(super) u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(self.1);
    }
}

/// `head_since` when no header has begun to arrive.
const NOT_YET: u64 = u64::MAX;

/// What the accept loop and the connection's own task know of one connection. Requests
/// write it without waking anyone; the connection's timer reads it.
pub(super) struct Connection {
    pub(super) id: u64,
    /// Whose it is; `None` for a trusted proxy's, which carries many clients.
    pub(super) client: Option<IpAddr>,
    /// The instant the times below count from, in nanoseconds.
    opened: Instant,
    /// Requests read and not yet fully answered.
    in_progress: AtomicUsize,
    /// Of those, the ones whose answer is still being made (the others' are being sent).
    answering: AtomicUsize,
    /// When bytes last went out, or an answer was ready to go.
    last_sent: AtomicU64,
    /// When the last request was answered (or the connection opened).
    idle_since: AtomicU64,
    /// When the first byte of the next request's header arrived, if one has since the
    /// connection went idle (else [`NOT_YET`]). Not kept for HTTP/2, whose frames (pings,
    /// window updates) arrive whether or not a request is coming.
    head_since: AtomicU64,
    http2: AtomicBool,
    /// Told to close, to make room for a new connection.
    pub(super) make_room: Notify,
}

impl Connection {
    pub(super) fn request_started(self: &Arc<Self>, http2: bool) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        self.answering.fetch_add(1, Ordering::SeqCst);
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.head_since.store(NOT_YET, Ordering::Relaxed);
        InProgress {
            connection: Arc::clone(self),
            answering: true,
        }
    }

    pub(super) fn bytes_sent(&self) {
        let now = self.since_opened(Instant::now());
        self.last_sent.store(now, Ordering::Relaxed);
    }

    pub(super) fn is_idle(&self) -> bool {
        self.in_progress.load(Ordering::SeqCst) == 0
    }

    pub(super) fn since_opened(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.opened).as_nanos()).unwrap_or(NOT_YET - 1)
    }

    pub(super) fn at(&self, nanos: u64) -> Instant {
        self.opened + Duration::from_nanos(nanos)
    }

    pub(super) fn idle_since(&self) -> Instant {
        self.at(self.idle_since.load(Ordering::Relaxed))
    }

    /// Bytes arrived: while idle, they are the start of a request's header.
    pub(super) fn bytes_arrived(&self) {
        if self.is_idle()
            && !self.http2.load(Ordering::Relaxed)
            && self.head_since.load(Ordering::Relaxed) == NOT_YET
        {
            let now = self.since_opened(Instant::now());
            let _ = self.head_since.compare_exchange(
                NOT_YET,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// When the connection's timer is to look again, or `None` if a deadline has passed
    /// and the connection is to be closed. While an answer is being made there is no
    /// deadline; while every answer in progress is only waiting to be sent, the idle
    /// deadline from the last bytes sent (a peer that reads nothing, or an HTTP/2 peer that
    /// never opens its window, must not hold a connection for ever); while idle, the header
    /// deadline once a header begins to arrive, else the idle deadline. The timer looks at
    /// least once per the shorter of the two windows, so that a header that began since its
    /// last look, or a request answered since, is held to its deadline to the moment.
    pub(super) fn next_check(&self, settings: &ServerSettings, now: Instant) -> Option<Instant> {
        let window = settings.header_read_timeout.min(settings.idle_timeout);
        let soon = now + window;
        if !self.is_idle() {
            if self.answering.load(Ordering::SeqCst) > 0 {
                return Some(soon);
            }
            let deadline = self.at(self.last_sent.load(Ordering::Relaxed)) + settings.idle_timeout;
            return (deadline > now).then(|| deadline.min(soon));
        }
        let deadline = match self.head_since.load(Ordering::Relaxed) {
            NOT_YET => self.idle_since() + settings.idle_timeout,
            head_since => self.at(head_since) + settings.header_read_timeout,
        };
        (deadline > now).then(|| deadline.min(soon))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request in progress on a connection; dropping it marks the request answered.
pub(super) struct InProgress {
    connection: Arc<Connection>,
    /// Its answer is still being made.
    answering: bool,
}

impl InProgress {
    /// The request's answer is made: what is left is sending it.
    pub(super) fn answer_ready(&mut self) {
        if std::mem::take(&mut self.answering) {
            self.connection.bytes_sent();
            self.connection.answering.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        // A request dropped before its answer was made (its client went away) is done too.
        self.answer_ready();
        let connection = &self.connection;
        let now = connection.since_opened(Instant::now());
        connection.idle_since.store(now, Ordering::Relaxed);
        connection.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}
