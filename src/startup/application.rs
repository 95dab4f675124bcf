//! The application: the app built from its settings and bound to its listeners, ready to
//! serve. Tests build it exactly as the process does.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::StartupError;
use super::backends::backends;
use crate::apps::Apps;
use crate::clock::Clock;
use crate::config::{Settings, describe_apps};
use crate::domain::AppName;
use crate::http::web_login::WebLogin;
use crate::http::{
    AdminToken, AppState, AuthCookie, BackendTokens, ClientLimiter, PRUNE_EVERY, PrivateApis,
    Shared, register_known_series, routers,
};
use crate::jwt::JwtIssuer;
use crate::login::LoginService;
use crate::server::{ServeOptions, reloading_acceptor, serve};
use crate::tasks::Tasks;
use crate::telemetry::metrics::Metrics;
use crate::wechat::emulator::Emulator;

/// A bound, ready-to-run wxlogin.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// The private listener and its routes (the admin API, the backends', `/metrics`),
    /// when it has one.
    private: Option<(TcpListener, axum::Router)>,
    options: ServeOptions,
    /// The background tasks; they stop when the application is dropped.
    tasks: Tasks,
    /// Present in development mode; the emulator lives as long as the app.
    emulator: Option<Emulator>,
    /// Each app's name and appid, and whether it is the one the unprefixed routes serve.
    apps: Vec<(AppName, String, bool)>,
}

impl Application {
    /// Binds the listeners and builds the app against the WeChat in `settings`.
    pub async fn build(settings: Settings, clock: Clock) -> Result<Self, StartupError> {
        let metrics = Metrics::new();
        let mut tasks = Tasks::default();
        let (sessions, apps) = backends(&settings, &clock, &metrics, &mut tasks).await?;
        tracing::info!(apps = %describe_apps(&settings.wechat.apps), "serving these mini-programs");
        let limiter = ClientLimiter::new(&settings.limits);
        if let Some(buckets) = limiter.buckets() {
            tasks.every(PRUNE_EVERY, Arc::clone(buckets), |buckets| buckets.prune());
        }
        let apps = Apps::new(apps);
        let app_list = app_list(&apps);
        let listener = bind(settings.listen).await?;
        // Without a public URL (development mode), the address bound stands in.
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => {
                let addr = listener.local_addr().map_err(|source| StartupError::Bind {
                    addr: settings.listen,
                    source,
                })?;
                format!("http://{addr}")
            }
        };
        let web_login = Arc::new(WebLogin {
            public_url,
            open_base_url: settings.wechat.open_base_url.clone(),
        });
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
            web_login,
        });
        let private_listener = match settings.private_listen {
            None => None,
            Some(addr) => Some(bind(addr).await?),
        };
        let tls = match &settings.server.tls {
            None => None,
            Some(tls) => Some(reloading_acceptor(tls, &mut tasks)?),
        };
        let mut server = settings.server;
        server.max_connections = super::limits::connection_cap(server.max_connections);
        let private = PrivateApis {
            admin: settings
                .admin
                .as_ref()
                .map(|admin| AdminToken::new(&admin.token)),
            backends: settings.backends.as_ref().map(BackendTokens::new),
            own_listener: settings.private_listen.is_some(),
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
        let jwt = match &settings.jwt {
            None => None,
            Some(jwt) => Some(JwtIssuer::new(jwt)?),
        };
        let routers = routers(state, &server, private, jwt);
        Ok(Self {
            listener,
            router: routers.public,
            private: private_listener.zip(routers.admin),
            options: ServeOptions {
                settings: server,
                tls,
                metrics,
                drain_timeout: settings.shutdown_timeout,
            },
            tasks,
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
        // Its consent pages too: a browser on this machine reaches them.
        settings.wechat.open_base_url = emulator.base_url().to_owned();
        let mut app = Self::build(settings, clock).await?;
        app.emulator = Some(emulator);
        Ok(app)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the admin API and `/metrics` are served, when they have a listener of their own.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.private
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
        self.run_until(super::signals::shutdown_signal()).await
    }

    /// Serves until `stop` completes, then drains as `run_until_stopped` does.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let _tasks = self.tasks;
        let _emulator = self.emulator;
        // One signal stops both listeners.
        let (stop_all, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            let _ = stop_all.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let Some((listener, router)) = self.private else {
            return serve(
                self.listener,
                self.router,
                self.options,
                until_stopped(stopped),
            )
            .await;
        };
        // Operators reach it from inside the network: plain HTTP, whatever the public side.
        let private_options = ServeOptions {
            tls: None,
            ..self.options.clone()
        };
        let public = serve(
            self.listener,
            self.router,
            self.options,
            until_stopped(stopped.clone()),
        );
        let private = serve(listener, router, private_options, until_stopped(stopped));
        let (public, private) = tokio::join!(public, private);
        public.and(private)
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
        self.options.tls.is_some()
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

fn app_list(apps: &Apps) -> Vec<(AppName, String, bool)> {
    let default = apps.default_app().map(|app| app.name().clone());
    apps.iter()
        .map(|app| {
            let is_default = Some(app.name()) == default.as_ref();
            (app.name().clone(), app.appid().to_owned(), is_default)
        })
        .collect()
}
