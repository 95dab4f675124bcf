//! Serving connections: the accept loop over hyper's own HTTP/1 and HTTP/2 connections,
//! with what axum's `serve` has no settings for. A request's header must arrive within a
//! deadline from its first byte, so must its body (tower-http's `DeadlineBody`, applied in
//! the router), and a connection idle for too long is closed. (hyper's own
//! `header_read_timeout` starts as soon as a response is sent, so it would also cut every
//! idle keep-alive connection at the header deadline.) Open connections are capped:
//! at the cap the longest-idle one makes room, as nginx does, and a new one is refused only
//! when all are busy. At shutdown, idle connections close at once and busy ones finish
//! their request. No client takes more than its share (see [`ClientShare`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::Version;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::ServerSettings;
use crate::http::ApiError;
use crate::telemetry::metrics::Metrics;
use client_share::ClientShare;
use connections::{Connection, Connections, Registered};
pub use tls::{TlsAcceptor, TlsError, reloading_acceptor};
use watched::{AnswerBody, Watched};

mod client_share;
mod connections;
mod tls;
mod watched;

/// What one connection may buffer of a request's head, and so what a header may weigh:
/// hyper answers a larger one `431`. The smallest hyper allows is 8 KiB.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// HTTP/2 streams open at once on one connection. Each answer a peer will not read holds
/// about 4 KiB until the idle deadline closes its connection (BENCHMARKS.md), so this and
/// the connection cap bound what such peers can hold.
const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// Header lines per request at most.
const MAX_HEADERS: usize = 64;
/// The longest pause of an accept loop that has run out of file descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How a listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    pub settings: ServerSettings,
    /// HTTPS, or plain HTTP when `None`.
    pub tls: Option<TlsAcceptor>,
    pub metrics: Metrics,
    /// How long requests in progress at a stop may take to finish.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` completes, then drains: connections with no
/// request in progress close at once, the others finish theirs within the drain timeout.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let ServeOptions {
        settings,
        tls,
        metrics,
        drain_timeout,
    } = options;
    let server = Arc::new(Server {
        app,
        http: http_builder(),
        shares: Arc::new(ClientShare::new(
            settings.max_connections_per_client,
            settings.trusted_proxies.clone(),
        )),
        settings,
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
                    match server.admit(peer) {
                        Ok(connection) => {
                            let server = Arc::clone(&server);
                            let stopping = stopping.clone();
                            tasks.spawn(async move {
                                server.connection(stream, peer, connection, stopping).await;
                            });
                        }
                        Err(reason) => {
                            server.metrics.connection_refused(reason);
                            drop(stream);
                        }
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
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
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
    shares: Arc<ClientShare>,
    metrics: Metrics,
}

impl Server {
    /// A place for one more connection from `peer`: free, or made by closing the
    /// longest-idle one (the client's own, at its share). Refused, with the reason, when
    /// every one that could make room is busy.
    fn admit(&self, peer: SocketAddr) -> Result<Arc<Connection>, &'static str> {
        self.connections.admit(
            self.shares.client_of(peer),
            self.settings.max_connections,
            self.shares.share,
        )
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
        // A proxy's requests count for the clients it forwards them for.
        let forwarded = connection
            .client
            .is_none()
            .then(|| Arc::clone(&self.shares));
        let metrics = self.metrics.clone();
        let service = tower::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut in_progress = tracked.request_started(request.version() == Version::HTTP_2);
            let claim = forwarded
                .as_ref()
                .map(|shares| shares.claim(peer, request.headers()));
            let response = match claim {
                Some(None) => Err(metrics.clone()),
                _ => Ok(app.clone().oneshot(request.map(Body::new))),
            };
            async move {
                let response = match response {
                    Ok(response) => response.await?,
                    Err(metrics) => {
                        metrics.connection_refused("client_requests");
                        ApiError::TooManyInProgress.into_response()
                    }
                };
                in_progress.answer_ready();
                // The request is in progress until its answer has been written: the body
                // holds the mark, and hyper drops the body once it is sent.
                Ok::<_, std::convert::Infallible>(response.map(|body| AnswerBody {
                    body,
                    in_progress,
                    claim: claim.flatten(),
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
