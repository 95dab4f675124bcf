//! Serving connections: the accept loop over hyper's own HTTP/1 and HTTP/2 connections,
//! with what axum's `serve` has no settings for. A request's header must arrive within a
//! deadline from its first byte, so must its body (tower-http's `DeadlineBody`, applied in
//! the router), and a connection idle for too long is closed. (hyper's own
//! `header_read_timeout` starts as soon as a response is sent, so it would also cut every
//! idle keep-alive connection at the header deadline.) Open connections are capped:
//! at the cap the longest-idle one makes room, as nginx does, and a new one is refused only
//! when all are busy. At shutdown, idle connections close at once and busy ones finish
//! their request.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::Version;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::tls::TlsAcceptor;
use crate::config::ServerSettings;
use crate::telemetry::metrics::Metrics;

/// What one connection may buffer of a request's head, and so what a header may weigh:
/// hyper answers a larger one `431`. The smallest hyper allows is 8 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Header lines per request at most.
const MAX_HEADERS: usize = 64;
/// The longest pause of an accept loop that has run out of file descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `stop` completes, then drains: connections with no
/// request in progress close at once, the others finish theirs within `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &ServerSettings,
    tls: Option<TlsAcceptor>,
    metrics: Metrics,
    stop: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> io::Result<()> {
    let server = Arc::new(Server {
        app,
        http: http_builder(),
        settings: settings.clone(),
        tls,
        connections: Connections::default(),
        metrics,
    });
    let (stopping_tx, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            // Reap finished connections, so the set holds only live ones.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    if let Some(connection) = server.admit() {
                        let server = Arc::clone(&server);
                        let stopping = stopping.clone();
                        tasks.spawn(async move {
                            server.connection(stream, peer, connection, stopping).await;
                        });
                    } else {
                        server.metrics.connection_refused();
                        drop(stream);
                    }
                }
                Err(err) if out_of_descriptors(&err) => {
                    // Closing an idle connection frees a descriptor for the next accept;
                    // with none idle, wait instead of spinning on the same error.
                    if !server.connections.close_longest_idle() {
                        tracing::warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "out of file descriptors, and no idle connection to close; pausing accepts");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    }
                }
                // A connection reset before it was accepted, and the like: the next one is fine.
                Err(err) => tracing::debug!(error = %err, "accept failed"),
            },
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections; finishing the requests in flight");
    let _ = stopping_tx.send(true);
    let drained = tokio::time::timeout(drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout_secs = drain_timeout.as_secs(),
            "requests still in flight at the shutdown timeout; exiting anyway"
        );
    }
    Ok(())
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(64);
    builder
}

fn out_of_descriptors(err: &io::Error) -> bool {
    // EMFILE (this process) and ENFILE (the whole system), by their Linux numbers.
    matches!(err.raw_os_error(), Some(24 | 23))
}

struct Server {
    app: Router,
    http: auto::Builder<TokioExecutor>,
    settings: ServerSettings,
    tls: Option<TlsAcceptor>,
    connections: Connections,
    metrics: Metrics,
}

impl Server {
    /// A place for one more connection: free, or made by closing the longest-idle one.
    /// `None` when every connection is busy.
    fn admit(&self) -> Option<Arc<Connection>> {
        if self.connections.len() >= self.settings.max_connections
            && !self.connections.close_longest_idle()
        {
            return None;
        }
        Some(self.connections.open())
    }

    async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        connection: Arc<Connection>,
        stopping: watch::Receiver<bool>,
    ) {
        let _open = Registered(&self.connections, connection.id);
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => self.http(stream, peer, connection, stopping).await,
            Some(tls) => {
                // The handshake counts as reading the header: a peer that stalls in it is
                // dropped at the same deadline.
                let handshake = tls.accept(stream);
                match tokio::time::timeout(self.settings.header_read_timeout, handshake).await {
                    Ok(Ok(stream)) => self.http(stream, peer, connection, stopping).await,
                    Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    }

    /// Serves HTTP on one connection until it ends, it has been idle too long, it is asked
    /// to make room, or the server stops.
    async fn http<IO>(
        &self,
        io: IO,
        peer: SocketAddr,
        connection: Arc<Connection>,
        mut stopping: watch::Receiver<bool>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let tracked = Arc::clone(&connection);
        let service = tower::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut in_progress = tracked.request_started(request.version() == Version::HTTP_2);
            let response = app.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await?;
                in_progress.answer_ready();
                // The request is in progress until its answer has been written: the body
                // holds the mark, and hyper drops the body once it is sent.
                Ok::<_, std::convert::Infallible>(response.map(|body| AnswerBody {
                    body,
                    _in_progress: in_progress,
                }))
            }
        });
        let io = Watched {
            io,
            connection: Arc::clone(&connection),
        };
        let served = self
            .http
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        tokio::pin!(served);
        let mut draining = false;
        // Requests come and go without waking this loop: the timer reads the connection's
        // state again at its next check, which is never later than a deadline that may
        // have begun since the last one.
        let check = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(check);
        loop {
            tokio::select! {
                _ = served.as_mut() => return,
                () = connection.make_room.notified() => return,
                Ok(()) = stopping.changed(), if !draining => {
                    if connection.is_idle() {
                        return;
                    }
                    // Finishes the request in progress, then closes.
                    served.as_mut().graceful_shutdown();
                    draining = true;
                }
                () = check.as_mut() => {
                    let now = Instant::now();
                    match connection.next_check(&self.settings, now) {
                        Some(next) => check.as_mut().reset(next),
                        None => return,
                    }
                }
            }
        }
    }
}

/// The open connections.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
}

impl Connections {
    fn open(&self) -> Arc<Connection> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            opened: Instant::now(),
            in_progress: AtomicUsize::new(0),
            answering: AtomicUsize::new(0),
            last_sent: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NOT_YET),
            http2: AtomicBool::new(false),
            make_room: Notify::new(),
        });
        self.lock().insert(id, Arc::clone(&connection));
        connection
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Asks the connection that has been idle the longest to close, and takes it off the
    /// count at once. Returns whether there was one.
    fn close_longest_idle(&self) -> bool {
        let mut open = self.lock();
        let longest_idle = open
            .values()
            .filter(|c| c.is_idle())
            .min_by_key(|c| c.idle_since())
            .map(|c| c.id);
        let Some(id) = longest_idle.and_then(|id| open.remove(&id)) else {
            return false;
        };
        // notify_one stores the permit, should the connection not be waiting right now.
        id.make_room.notify_one();
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        lock(&self.open)
    }
}

/// Takes a connection off the list when its task ends.
struct Registered<'a>(&'a Connections, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

/// `head_since` when no header has begun to arrive.
const NOT_YET: u64 = u64::MAX;

/// What the accept loop and the connection's own task know of one connection. Requests
/// write it without waking anyone; the connection's timer reads it.
struct Connection {
    id: u64,
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
    make_room: Notify,
}

impl Connection {
    fn request_started(self: &Arc<Self>, http2: bool) -> InProgress {
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

    fn bytes_sent(&self) {
        let now = self.since_opened(Instant::now());
        self.last_sent.store(now, Ordering::Relaxed);
    }

    fn is_idle(&self) -> bool {
        self.in_progress.load(Ordering::SeqCst) == 0
    }

    fn since_opened(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.opened).as_nanos()).unwrap_or(NOT_YET - 1)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.opened + Duration::from_nanos(nanos)
    }

    fn idle_since(&self) -> Instant {
        self.at(self.idle_since.load(Ordering::Relaxed))
    }

    /// Bytes arrived: while idle, they are the start of a request's header.
    fn bytes_arrived(&self) {
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
    fn next_check(&self, settings: &ServerSettings, now: Instant) -> Option<Instant> {
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

/// The connection's transport, reporting the bytes that arrive.
struct Watched<IO> {
    io: IO,
    connection: Arc<Connection>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.connection.bytes_arrived();
        }
        read
    }
}

impl<IO> Watched<IO> {
    /// Bytes went out: while answers wait to be sent, they are moving.
    fn report_sent(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) && !self.connection.is_idle() {
            self.connection.bytes_sent();
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.report_sent(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.report_sent(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, which marks its request in progress until hyper has sent it all
    /// and dropped it.
    struct AnswerBody {
        #[pin]
        body: Body,
        _in_progress: InProgress,
    }
}

impl hyper::body::Body for AnswerBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A request in progress on a connection; dropping it marks the request answered.
struct InProgress {
    connection: Arc<Connection>,
    /// Its answer is still being made.
    answering: bool,
}

impl InProgress {
    /// The request's answer is made: what is left is sending it.
    fn answer_ready(&mut self) {
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
