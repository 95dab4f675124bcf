//! The composition root: the one place that picks concrete backends, wires the app and
//! starts its background tasks; and the process's entry points ([`serve`],
//! [`serve_emulator`]) that `main` calls.

mod banner;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use std::process::ExitCode;

use crate::clock::Clock;
use crate::config::{LogFormat, Mode, Settings, StoreSettings};
use crate::domain::Credentials;
use crate::http::{AppState, AuthCookie, ClientLimiter, PRUNE_EVERY, router};
use crate::login::LoginService;
use crate::redis_conn::{Redis, StoreError};
use crate::session::{RedisStore, SessionStore};
use crate::telemetry;
use crate::telemetry::metrics::Metrics;
use crate::wechat::emulator::Emulator;
use crate::wechat::{AccessTokens, WeChatClient};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the WeChat emulator: {0}")]
    Emulator(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("cannot set up the Redis client: {0}")]
    Redis(#[from] StoreError),
}

/// A bound, ready-to-run wxlogin.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    shutdown_timeout: Duration,
    /// Present in development mode; the emulator lives as long as the app.
    emulator: Option<Emulator>,
}

impl Application {
    /// Binds the listener and builds the app against the WeChat in `settings`.
    pub async fn build(settings: Settings, clock: Clock) -> Result<Self, StartupError> {
        let metrics = Metrics::new();
        let wechat = WeChatClient::new(&settings.wechat, metrics.clone())?;
        // A refresh is at most two stable_token calls (normal, then forced), each bounded
        // by the WeChat timeout.
        let token_wait_limit = settings.wechat.timeout * 2;
        let (sessions, access_tokens) = match &settings.sessions.store {
            StoreSettings::Memory => (
                SessionStore::memory(&settings.sessions, clock.clone(), metrics.clone()),
                AccessTokens::local(wechat.clone(), clock, token_wait_limit),
            ),
            StoreSettings::Redis(redis_settings) => {
                let redis = Redis::connect(redis_settings)?;
                if let Err(err) = redis.ping().await {
                    // Not fatal: Redis may still be starting. /readyz says when it answers.
                    tracing::warn!(error = %err, "Redis does not answer yet; requests that need it get 503 until it does");
                }
                let store = RedisStore::new(redis.clone(), settings.sessions.ttl, clock);
                (
                    SessionStore::Redis(store),
                    AccessTokens::shared(wechat.clone(), redis, token_wait_limit),
                )
            }
        };
        let limiter = ClientLimiter::new(&settings.limits);
        if let Some(buckets) = limiter.buckets() {
            crate::periodic::spawn_every(PRUNE_EVERY, buckets, |buckets| buckets.prune());
        }
        let state = AppState {
            logins: Arc::new(LoginService::new(
                wechat.clone(),
                sessions.clone(),
                metrics.clone(),
            )),
            sessions,
            access_tokens,
            wechat,
            metrics,
            limiter,
            auth_cookie: AuthCookie(settings.auth_cookie.as_deref().map(Into::into)),
        };
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            router: router(state),
            shutdown_timeout: settings.shutdown_timeout,
            emulator: None,
        })
    }

    /// Starts the built-in WeChat emulator on a free loopback port and builds the app
    /// against it. `settings` must have been loaded in development mode.
    pub async fn build_with_emulator(
        mut settings: Settings,
        clock: Clock,
    ) -> Result<Self, StartupError> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let emulator = Emulator::start(loopback, settings.wechat.credentials.clone())
            .await
            .map_err(StartupError::Emulator)?;
        settings.wechat.base_url = emulator.base_url().to_owned();
        let mut app = Self::build(settings, clock).await?;
        app.emulator = Some(emulator);
        Ok(app)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The emulator's base URL, in development mode.
    pub fn emulator_url(&self) -> Option<&str> {
        self.emulator.as_ref().map(Emulator::base_url)
    }

    /// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish for at most the
    /// configured shutdown timeout.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, then drains as `run_until_stopped` does.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        // The peer address feeds the per-client rate limit.
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(self.listener, app).with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("shutting down: no new connections; finishing the requests in flight");
            let _ = stopping_tx.send(true);
        });
        let drain_deadline = async {
            // Resolves only once the signal has come: then the drain gets its time limit.
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(self.shutdown_timeout).await;
        };
        tokio::select! {
            served = serve => served,
            () = drain_deadline => {
                tracing::warn!(timeout_secs = self.shutdown_timeout.as_secs(), "requests still in flight at the shutdown timeout; exiting anyway");
                Ok(())
            }
        }
    }
}

/// Runs wxlogin as the process: settings from the environment (and `WXLOGIN_CONFIG`), logs
/// to stderr, WeChat the real one or, in development mode, the built-in emulator. Returns
/// when it has stopped.
pub async fn serve(mode: Mode) -> ExitCode {
    let settings = match Settings::load(std::env::vars_os(), mode) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("wxlogin: {err}");
            return ExitCode::FAILURE;
        }
    };
    let flush_logs = telemetry::init(settings.log_format);
    for setting in &settings.unknown {
        tracing::warn!(
            setting,
            "ignoring a setting wxlogin does not know; is it misspelt?"
        );
    }
    let app = match mode {
        Mode::Production => Application::build(settings, Clock::System).await,
        Mode::Development => Application::build_with_emulator(settings, Clock::System).await,
    };
    let app = match app {
        Ok(app) => app,
        Err(err) => {
            // The lines logged so far (an unknown setting, say) go out first, so that the
            // error reads last, where people look.
            drop(flush_logs);
            eprintln!("wxlogin: {err}");
            return ExitCode::FAILURE;
        }
    };
    banner::announce(&app);
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the server failed");
            ExitCode::FAILURE
        }
    }
}

/// Runs only the WeChat emulator on `listen`, accepting `credentials`, until SIGTERM or
/// Ctrl-C: a stand-in for `api.weixin.qq.com` for front-end set-ups and benchmarks.
pub async fn serve_emulator(listen: SocketAddr, credentials: Credentials) -> ExitCode {
    let _flush_logs = telemetry::init(LogFormat::Pretty);
    let appid = credentials.appid.clone();
    let emulator = match Emulator::start(listen, credentials).await {
        Ok(emulator) => emulator,
        Err(err) => {
            eprintln!("wxlogin emulator: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    banner::announce_emulator(emulator.base_url(), &appid);
    shutdown_signal().await;
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
