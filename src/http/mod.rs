//! Everything axum: routes, extractors, and the mapping from errors to responses. The
//! connections the routes are served on are `server`'s.

pub mod admin;
pub mod backend;
pub mod client_ip;
mod edge;
mod error;
mod extract;
pub mod forward_auth;
mod health;
mod login;
pub mod oauth;
mod open_data;
pub mod openapi;
mod rate_limit;
mod session;
pub mod web_login;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath};
use axum::http::{HeaderName, HeaderValue, Request, Response, header};
use axum::response::IntoResponse;
use openapi::Listener;
use tower::layer::util::Stack;
use tower_http::ServiceBuilderExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyDeadlineLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

pub use admin::AdminToken;
pub use backend::BackendTokens;
pub use error::{ApiError, ErrorReport};
pub use forward_auth::AuthCookie;
pub use rate_limit::{ClientLimiter, PRUNE_EVERY};

use crate::apps::Apps;
use crate::config::ServerSettings;
use crate::jwt::JwtIssuer;
use crate::login::LoginService;
use crate::session::SessionStore;
use crate::telemetry::metrics::Metrics;

/// Login codes and tokens are tiny; nothing a client sends us needs more.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What handlers share, behind one `Arc`: axum clones the state for every request, and
/// each handler takes only the part it uses (a cheap handle).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub apps: Apps,
    pub logins: Arc<LoginService>,
    pub sessions: SessionStore,
    pub metrics: Metrics,
    pub limiter: ClientLimiter,
    pub auth_cookie: AuthCookie,
    /// The links the web-login helper makes.
    pub web_login: Arc<web_login::WebLogin>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Each part a handler may take as `State<Part>`.
macro_rules! state_parts {
    ($($part:ident: $type:ty),* $(,)?) => {
        $(impl FromRef<AppState> for $type {
            fn from_ref(state: &AppState) -> Self {
                state.0.$part.clone()
            }
        })*
    };
}

state_parts!(
    apps: Apps,
    logins: Arc<LoginService>,
    sessions: SessionStore,
    metrics: Metrics,
    limiter: ClientLimiter,
    auth_cookie: AuthCookie,
);

/// What is served beside the public API, for operators and the team's other backends, and
/// where.
pub struct PrivateApis {
    /// The admin API, when an admin token is configured (else every `/admin` route is 404).
    pub admin: Option<AdminToken>,
    /// The backend routes, when backend tokens are configured (else 404).
    pub backends: Option<BackendTokens>,
    /// On a listener of their own, with `/metrics` (`WXLOGIN_ADMIN_LISTEN`), and none of
    /// them on the public listener.
    pub own_listener: bool,
}

/// What each listener serves.
pub struct Routers {
    pub public: Router,
    /// For the private listener, when there is one.
    pub admin: Option<Router>,
}

/// The whole HTTP surface, with its middleware: the public listener's routes and, if the
/// admin API has a listener of its own, that one's. Tests drive exactly these.
pub fn routers(
    state: AppState,
    server: &ServerSettings,
    private: PrivateApis,
    jwt: Option<JwtIssuer>,
) -> Routers {
    let mut public = Router::new()
        .merge(login::router().route_layer(reads_body(server)))
        .merge(session::router())
        .merge(open_data::router().route_layer(reads_body(server)))
        .merge(health::router())
        .merge(forward_auth::router())
        .merge(web_login::router());
    let mut apis = health::metrics_router();
    let authority = jwt.map(|issuer| {
        Arc::new(oauth::Authority {
            sessions: state.sessions.clone(),
            apps: state.apps.clone(),
            issuer,
        })
    });
    if let Some(authority) = &authority {
        let exchange = oauth::router(Arc::clone(authority));
        public = public.merge(exchange.route_layer(reads_body(server)));
    }
    if let Some(token) = private.admin {
        apis = apis.merge(admin::router(token).route_layer(reads_body(server)));
    }
    if let Some(tokens) = private.backends {
        if let Some(authority) = authority {
            let introspection = oauth::introspection_router(authority, tokens.clone());
            apis = apis.merge(introspection.route_layer(reads_body(server)));
        }
        apis = apis.merge(backend::router(tokens).route_layer(reads_body(server)));
    }
    let public = public.merge(openapi::router(Listener::Public {
        private_elsewhere: private.own_listener,
    }));
    let (public, admin) = if private.own_listener {
        (public, Some(apis.merge(openapi::router(Listener::Private))))
    } else {
        (public.merge(apis), None)
    };
    Routers {
        admin: admin.map(|routes| layered(routes, state.clone())),
        public: layered(public, state),
    }
}

/// The limits on a request body, for the routers whose routes read one (the others leave
/// it unread, and pay nothing for them): its size, and a deadline, so that a body trickled
/// in a byte at a time does not hold a request open for long.
fn reads_body(server: &ServerSettings) -> Stack<DefaultBodyLimit, RequestBodyDeadlineLayer> {
    Stack::new(
        DefaultBodyLimit::max(MAX_BODY_BYTES),
        RequestBodyDeadlineLayer::new(server.body_read_timeout),
    )
}

/// `routes` with the middleware every listener has, and JSON answers for what none of
/// them matches.
fn layered(routes: Router<AppState>, state: AppState) -> Router {
    let middleware = tower::ServiceBuilder::new()
        .map_request(drop_unusable_request_id)
        .set_x_request_id(RandomRequestId)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response)
                // `log_response` already reports 5xx, with the cause the error left behind.
                .on_failure(()),
        )
        .propagate_x_request_id()
        .layer(edge::EdgeLayer(state.metrics.clone()))
        // The one conversion of the answer's body: axum's own finds it already done.
        .map_response(|response: Response<_>| response.map(axum::body::Body::new))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            ApiError::Internal.into_response()
        }));

    routes
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware)
        .with_state(state)
}

/// Registers at 0 every series of the request metrics whose labels are known before the
/// first request: the login routes of each app, and each app's WeChat APIs.
pub fn register_known_series(metrics: &Metrics, apps: &Apps) {
    let default = apps.default_app().map(|app| app.name().clone());
    let mut logins: Vec<(String, &str)> = Vec::new();
    for app in apps.iter() {
        let name = app.name().as_ref();
        for route in login::ROUTES {
            if Some(app.name()) == default.as_ref() {
                logins.push((route.to_owned(), name));
            }
            logins.push((format!("/apps/{{app}}{route}"), name));
        }
    }
    let rate_limited: Vec<String> = login::ROUTES
        .iter()
        .flat_map(|route| [(*route).to_owned(), format!("/apps/{{app}}{route}")])
        .chain([open_data::PHONE_NUMBER_ROUTE.to_owned()])
        .collect();
    let names: Vec<&str> = apps.iter().map(|app| app.name().as_ref()).collect();
    let apis = crate::wechat::WeChatApi::ALL.map(crate::wechat::WeChatApi::label);
    metrics.register_known_series(&names, &apis, &logins, &rate_limited);
}

/// Headers that mark an answer no cache may keep.
type NoStore = Stack<SetResponseHeaderLayer<HeaderValue>, SetResponseHeaderLayer<HeaderValue>>;

/// Marks an answer that carries a token or personal data as one no cache may keep (RFC 6749
/// §5.1, ASVS V8.2.1), error or not: `no-store`, and `Pragma` for HTTP/1.0 caches. The
/// routers of such routes apply it to every answer.
fn no_store() -> NoStore {
    Stack::new(
        SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ),
        SetResponseHeaderLayer::overriding(header::PRAGMA, HeaderValue::from_static("no-cache")),
    )
}

/// [`no_store`], for answers that depend on the request's token: a cache that keeps one
/// anyway must keep it apart per `Authorization`.
fn no_store_per_token() -> Stack<SetResponseHeaderLayer<HeaderValue>, NoStore> {
    Stack::new(
        SetResponseHeaderLayer::appending(header::VARY, HeaderValue::from_static("authorization")),
        no_store(),
    )
}

/// The request id's header, as a name that need not be parsed on each use.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `X-Request-Id` a client may bring; it goes into every log line.
const MAX_REQUEST_ID: usize = 64;

/// Drops an incoming `X-Request-Id` unless it is one short token of `[A-Za-z0-9._-]`, so
/// that a fresh one replaces it: whatever a client puts there lands in every log line.
fn drop_unusable_request_id<B>(mut request: Request<B>) -> Request<B> {
    let ids = request.headers().get_all(&REQUEST_ID);
    let mut values = ids.iter();
    let usable = match (values.next(), values.next()) {
        (Some(id), None) => {
            (1..=MAX_REQUEST_ID).contains(&id.len())
                && id
                    .as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !usable {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// A UUID v4 request id drawn from the thread's CSPRNG. tower-http's `MakeRequestUuid`
/// asks the kernel for each one: a system call on every request, session lookups included.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = uuid::Uuid::encode_buffer();
        let text = id.hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

/// The span every log line of a request is written in. It names the route pattern, never
/// the URI: a query string can carry a login code.
fn request_span<B>(request: &Request<B>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = request.method().as_str(),
        route,
        request_id
    )
}

fn log_response<B>(response: &Response<B>, latency: Duration, _: &Span) {
    let status = response.status().as_u16();
    // Rounded to the microsecond, so log lines read 2.676 rather than 2.6759980000000003.
    let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
    let Some(report) = response.extensions().get::<ErrorReport>() else {
        tracing::info!(status, latency_ms, "request finished");
        return;
    };
    // tracing needs the level as a constant, hence one expansion per level.
    macro_rules! log_error {
        ($level:expr, $message:literal) => {
            tracing::event!(
                $level,
                status,
                latency_ms,
                error = report.kind,
                detail = report.detail.as_deref(),
                wechat_errcode = report.wechat_errcode,
                wechat_rid = report.wechat_rid.as_deref(),
                $message
            )
        };
    }
    if response.status().is_server_error() {
        log_error!(tracing::Level::ERROR, "request failed");
    } else {
        log_error!(tracing::Level::INFO, "request rejected");
    }
}
