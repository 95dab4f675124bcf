//! The composition root: the one place that picks concrete backends, wires the app and
//! starts its background tasks; and the process's entry points ([`serve`],
//! [`serve_emulator`]) that `main` calls.

mod banner;

use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpListener;

use std::process::ExitCode;

use crate::apps::{App, Apps};
use crate::clock::Clock;
use crate::config::{
    LogFormat, Mode, ServerSettings, Settings, StoreSettings, TlsSettings, describe_apps,
};
use crate::domain::{AppName, Credentials};
use crate::http::tls::{Certificates, TlsAcceptor, TlsError};
use crate::http::{
    AdminToken, AppState, AuthCookie, BackendTokens, ClientLimiter, PRUNE_EVERY, PrivateApis,
    Shared, register_known_series, routers,
};
use crate::login::LoginService;
use crate::redis_conn::{PROBE_EVERY, Redis, StoreError};
use crate::session::{
    BlocksFile, BlocksFileError, Lifetime, MemoryStore, RedisStore, Sealer, SessionStore,
};
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
    #[error(transparent)]
    Blocks(#[from] BlocksFileError),
    #[error("cannot serve HTTPS: {0}")]
    Tls(#[from] TlsError),
}

/// How often the memory store's user index lets go of users who have no session left
/// that it has not yet seen go (see `MemoryStore::sweep_users`).
const USER_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A bound, ready-to-run wxlogin.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// The admin API's own listener and routes, when it has one.
    admin: Option<(TcpListener, axum::Router)>,
    server: ServerSettings,
    tls: Option<TlsAcceptor>,
    metrics: Metrics,
    shutdown_timeout: Duration,
    /// What the background tasks tend (they hold it weakly): it lives, and they run, as long
    /// as the app.
    tended: Vec<Arc<dyn Any + Send + Sync>>,
    /// Present in development mode; the emulator lives as long as the app.
    emulator: Option<Emulator>,
    /// Each app's name and appid, and whether it is the one the unprefixed routes serve.
    apps: Vec<(AppName, String, bool)>,
}

impl Application {
    /// Binds the listener and builds the app against the WeChat in `settings`.
    pub async fn build(settings: Settings, clock: Clock) -> Result<Self, StartupError> {
        let metrics = Metrics::new();
        let clients = WeChatClient::for_apps(&settings.wechat, metrics.clone())?;
        // A refresh is at most two stable_token calls (normal, then forced), each bounded
        // by the WeChat timeout.
        let token_wait_limit = settings.wechat.timeout * 2;
        let mut tended: Vec<Arc<dyn Any + Send + Sync>> = Vec::new();
        let (sessions, apps) = match &settings.sessions.store {
            StoreSettings::Memory => {
                let apps = clients
                    .into_iter()
                    .map(|wechat| App {
                        access_tokens: AccessTokens::local(
                            wechat.clone(),
                            clock.clone(),
                            token_wait_limit,
                        ),
                        wechat,
                    })
                    .collect();
                let store = match &settings.sessions.blocks_file {
                    Some(path) => {
                        let (file, blocks) = BlocksFile::open(path.clone(), clock.now()).await?;
                        tracing::info!(path = %path.display(), blocks = blocks.len(), "operators' blocks are kept in WXLOGIN_BLOCKS_FILE");
                        MemoryStore::with_blocks_file(
                            &settings.sessions,
                            clock,
                            metrics.clone(),
                            file,
                            blocks,
                        )
                    }
                    None => {
                        if settings.admin.is_some() {
                            tracing::warn!(
                                "the admin API refuses blocks (409 blocks_not_durable): the memory store would forget them at a restart; set WXLOGIN_BLOCKS_FILE to keep them"
                            );
                        }
                        MemoryStore::new(&settings.sessions, clock, metrics.clone())
                    }
                };
                let swept = Arc::new(store.clone());
                crate::periodic::spawn_every(USER_SWEEP_EVERY, &swept, |store| {
                    store.sweep_users();
                });
                tended.push(swept);
                (SessionStore::Memory(store), apps)
            }
            StoreSettings::Redis(redis_settings) => {
                let redis = Redis::connect(redis_settings)?;
                if let Err(err) = redis.probe().await {
                    // Not fatal: Redis may still be starting. /readyz says when it answers.
                    tracing::warn!(error = %err, "Redis does not take writes yet; requests that need it get 503 until it does");
                }
                // Logins check this verdict before they spend a code at WeChat.
                let probed = Arc::new(redis.clone());
                crate::periodic::spawn_every(PROBE_EVERY, &probed, |redis| {
                    tokio::spawn(async move { redis.probe().await });
                });
                tended.push(probed);
                let apps = clients
                    .into_iter()
                    .map(|wechat| App {
                        access_tokens: AccessTokens::shared(
                            wechat.clone(),
                            redis.clone(),
                            token_wait_limit,
                        ),
                        wechat,
                    })
                    .collect();
                let lifetime = Lifetime::new(settings.sessions.ttl, settings.sessions.idle);
                let keys = &redis_settings.store_keys;
                let sealer = Sealer::new(keys);
                match sealer.current_key_id() {
                    Some(key_id) => tracing::info!(
                        key_id,
                        old_keys = keys.old.len(),
                        "session_keys are sealed at rest with the store key"
                    ),
                    None => tracing::warn!(
                        "session_keys are stored in Redis in the clear: set WXLOGIN_STORE_KEY_FILE to seal them (see the README's Operating wxlogin)"
                    ),
                }
                let store = RedisStore::new(redis, lifetime, sealer, clock);
                let upgraded = Arc::new(store.clone());
                tokio::spawn(index_pre_upgrade_sessions(Arc::downgrade(&upgraded)));
                tended.push(upgraded);
                (SessionStore::Redis(store), apps)
            }
        };
        tracing::info!(apps = %describe_apps(&settings.wechat.apps), "serving these mini-programs");
        let limiter = ClientLimiter::new(&settings.limits);
        if let Some(buckets) = limiter.buckets() {
            crate::periodic::spawn_every(PRUNE_EVERY, buckets, |buckets| buckets.prune());
        }
        let apps = Apps::new(apps);
        let default = apps.default_app().map(|app| app.name().clone());
        let app_list = apps
            .iter()
            .map(|app| {
                let is_default = Some(app.name()) == default.as_ref();
                (app.name().clone(), app.appid().to_owned(), is_default)
            })
            .collect();
        let state = AppState::new(Shared {
            apps,
            logins: Arc::new(LoginService::new(
                sessions.clone(),
                metrics.clone(),
                &settings.blocked_message,
            )),
            sessions,
            metrics: metrics.clone(),
            limiter,
            auth_cookie: AuthCookie(settings.auth_cookie.as_deref().map(Into::into)),
        });
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let tls = match &settings.server.tls {
            None => None,
            Some(tls) => {
                let (acceptor, certificates) = https(tls)?;
                tended.push(certificates);
                Some(acceptor)
            }
        };
        let mut server = settings.server;
        server.max_connections = connection_cap(server.max_connections);
        let private = PrivateApis {
            admin: settings
                .admin
                .as_ref()
                .map(|admin| AdminToken::new(&admin.token)),
            backends: settings.backends.as_ref().map(BackendTokens::new),
            own_listener: settings.private_listen.is_some(),
        };
        let admin_listener = match settings.private_listen {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?,
            ),
        };
        register_known_series(&metrics, &state.apps);
        if let Some(backends) = &settings.backends {
            let names: Vec<&str> = backends
                .credentials
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            let apps: Vec<&str> = state.apps.iter().map(|app| app.name().as_ref()).collect();
            metrics.register_backend_series(&names, &apps);
        }
        let routers = routers(state, &server, private);
        Ok(Self {
            listener,
            router: routers.public,
            admin: admin_listener.zip(routers.admin),
            server,
            tls,
            metrics,
            shutdown_timeout: settings.shutdown_timeout,
            tended,
            emulator: None,
            apps: app_list,
        })
    }

    /// Starts the built-in WeChat emulator on a free loopback port and builds the app
    /// against it. `settings` must have been loaded in development mode.
    pub async fn build_with_emulator(
        mut settings: Settings,
        clock: Clock,
    ) -> Result<Self, StartupError> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let credentials = settings
            .wechat
            .apps
            .iter()
            .map(|app| app.credentials.clone());
        let emulator = Emulator::start(loopback, credentials.collect())
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

    /// Where the admin API and `/metrics` are served, when they have a listener of their own.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
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
        let _tended = self.tended;
        // One signal stops both listeners.
        let (stop_all, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            let _ = stop_all.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let public = crate::http::serve(
            self.listener,
            self.router,
            &self.server,
            self.tls,
            self.metrics.clone(),
            until_stopped(stopped.clone()),
            self.shutdown_timeout,
        );
        let Some((listener, router)) = self.admin else {
            return public.await;
        };
        // Operators reach it from inside the network: plain HTTP, whatever the public side.
        let admin = crate::http::serve(
            listener,
            router,
            &self.server,
            None,
            self.metrics,
            until_stopped(stopped),
            self.shutdown_timeout,
        );
        let (public, admin) = tokio::join!(public, admin);
        public.and(admin)
    }

    /// The login route prefix of each app (empty for the default app), with its name and
    /// appid.
    pub fn app_routes(&self) -> impl Iterator<Item = (String, &AppName, &str)> {
        self.apps.iter().map(|(name, appid, is_default)| {
            let prefix = if *is_default {
                String::new()
            } else {
                format!("/apps/{name}")
            };
            (prefix, name, appid.as_str())
        })
    }

    /// Whether it serves HTTPS.
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }
}

/// The certificate, loaded, with the tasks that reload it on SIGHUP and when its files
/// change.
/// The reload tasks hold the certificates weakly: they end with the app that holds them.
/// How often the passes over sessions of the previous layout run, while they find any: a
/// rolling upgrade's old replicas go on writing them until they are replaced.
const UPGRADE_PASS_EVERY: Duration = Duration::from_secs(600);

/// Indexes the sessions the release before per-user records wrote (see
/// `session::redis::upgrade`) at start-up, then again each [`UPGRADE_PASS_EVERY`] until a
/// pass finds none, or the app is gone.
async fn index_pre_upgrade_sessions(store: Weak<RedisStore>) {
    loop {
        let Some(pass) = store.upgrade() else {
            return;
        };
        match pass.index_pre_upgrade_sessions().await {
            Ok(found) if found.indexes == 0 => return,
            Ok(found) => tracing::info!(
                users = found.indexes,
                sessions = found.sessions,
                "indexed sessions of the previous layout, so that operators' revocations find them"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "could not index sessions of the previous layout; trying again later")
            }
        }
        drop(pass);
        tokio::time::sleep(UPGRADE_PASS_EVERY).await;
    }
}

fn https(settings: &TlsSettings) -> Result<(TlsAcceptor, Arc<Certificates>), TlsError> {
    let certificates = Arc::new(Certificates::load(settings)?);
    let acceptor = certificates.acceptor()?;
    crate::periodic::spawn_every(settings.reload_check, &certificates, |certificates| {
        certificates.reload_if_changed();
    });
    #[cfg(unix)]
    {
        let certificates = Arc::downgrade(&certificates);
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        let Some(certificates) = certificates.upgrade() else {
                            return;
                        };
                        certificates.reload();
                    }
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP; the certificate reloads only when its files change")
            }
        }
    }
    Ok((acceptor, certificates))
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
    raise_open_file_limit();
    for setting in &settings.unknown {
        tracing::warn!(
            setting,
            "ignoring a setting wxlogin does not know; is it misspelt?"
        );
    }
    for why in &settings.ineffective {
        tracing::warn!(why, "a setting that does nothing here");
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

/// Raises the soft limit on open files to the hard one: each connection is a descriptor,
/// and the usual soft limit (1024) is far below what the kernel would allow.
fn raise_open_file_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE);
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok((soft, hard)), Ok(raised)) => {
            tracing::info!(
                soft_before = soft,
                soft_now = raised,
                hard,
                "open-file limit"
            );
        }
        (_, Err(err)) | (Err(err), _) => {
            tracing::warn!(error = %err, "cannot raise the open-file limit");
        }
    }
}

/// Descriptors kept for what is not a client connection: the listener, Redis, WeChat's
/// pool, the emulator in development mode, log and standard streams.
const RESERVED_DESCRIPTORS: u64 = 64;

/// `max_connections`, or fewer if the open-file limit would be reached first: at the cap,
/// idle connections make room, which an exhausted descriptor table cannot.
fn connection_cap(max_connections: usize) -> usize {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return max_connections;
    };
    let room = soft.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    match usize::try_from(room) {
        Ok(room) if room < max_connections => {
            tracing::warn!(
                max_connections,
                open_file_limit = soft,
                cap = room,
                "WXLOGIN_MAX_CONNECTIONS is above what the open-file limit allows; capping connections lower"
            );
            room
        }
        _ => max_connections,
    }
}

/// Runs only the WeChat emulator on `listen`, accepting `credentials`, until SIGTERM or
/// Ctrl-C: a stand-in for `api.weixin.qq.com` for front-end set-ups and benchmarks.
pub async fn serve_emulator(listen: SocketAddr, apps: Vec<(AppName, Credentials)>) -> ExitCode {
    let _flush_logs = telemetry::init(LogFormat::Pretty);
    let credentials = apps.iter().map(|(_, c)| c.clone()).collect();
    let emulator = match Emulator::start(listen, credentials).await {
        Ok(emulator) => emulator,
        Err(err) => {
            eprintln!("wxlogin emulator: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    banner::announce_emulator(emulator.base_url(), &apps);
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
