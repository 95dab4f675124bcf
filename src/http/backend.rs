//! The team's other backends fetch the apps' access_token from wxlogin, as WeChat asks:
//! one central holder of the token, with a passive refresh for a token an API refused.
//! Mounted only when backend credentials are configured; every route needs one as a bearer
//! token, compared in constant time, and names its backend in audit lines and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Request, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use super::error::responses::{AccessTokenErrors, BodyErrors, RefreshErrors};
use super::extract::{JsonBody, JsonShape, NamedApp};
use crate::apps::App;
use crate::config::BackendSettings;
use crate::telemetry::metrics::Metrics;
use crate::wechat::access_token::{AccessToken, HandedOut};

/// The backends' credentials, as SHA-256 digests beside their names.
#[derive(Clone)]
pub struct BackendTokens(Arc<[(Arc<str>, [u8; 32])]>);

impl BackendTokens {
    pub fn new(settings: &BackendSettings) -> Self {
        Self(
            settings
                .credentials
                .iter()
                .map(|credential| {
                    let digest = Sha256::digest(credential.token.expose_secret().as_bytes());
                    (Arc::from(credential.name.as_str()), digest.into())
                })
                .collect(),
        )
    }

    /// The backend whose token `headers` carry as a bearer token.
    pub(super) fn identify(&self, headers: &HeaderMap) -> Option<Backend> {
        self.admit(super::extract::bearer(headers).ok()?, None)
    }

    /// As [`BackendTokens::identify`], or from `client_secret_basic` (RFC 6749 §2.3.1): the
    /// backend's name as client id and its token as secret, as OAuth clients send them
    /// (APISIX's `openid-connect`).
    pub(super) fn identify_client(&self, headers: &HeaderMap) -> Option<Backend> {
        if let Some(backend) = self.identify(headers) {
            return Some(backend);
        }
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        let (id, secret) = (&decoded[..colon], &decoded[colon + 1..]);
        let text = |bytes: &[u8]| {
            form_urlencoded::parse(&[b"x=", bytes].concat())
                .next()
                .map(|(_, value)| value.into_owned())
        };
        self.admit(&text(secret)?, Some(&text(id)?))
    }

    /// The backend whose token is `presented` (and whose name is `named`, if given). Every
    /// credential is compared, whichever matches, so the time taken tells nothing.
    fn admit(&self, presented: &str, named: Option<&str>) -> Option<Backend> {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, digest) in self.0.iter() {
            if bool::from(presented.ct_eq(digest)) {
                found = Some(Backend(Arc::clone(name)));
            }
        }
        found.filter(|backend| named.is_none_or(|named| *backend.0 == *named))
    }
}

/// The backend a request comes from, once its credential is checked.
#[derive(Clone)]
pub struct Backend(Arc<str>);

pub fn router(tokens: BackendTokens) -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/access_token", get(access_token))
        .route("/apps/{app}/access_token/refresh", post(refresh))
        .route_layer(super::no_store())
        // Set here, so that the guard below wraps it too, as on the admin routes.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            require_backend,
        ))
}

async fn require_backend(
    State(tokens): State<BackendTokens>,
    mut request: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let Some(backend) = tokens.identify(request.headers()) else {
        return ApiError::BackendUnauthorized.into_response();
    };
    request.extensions_mut().insert(backend);
    next.run(request).await
}

/// The app's access_token as handed to a backend.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccessTokenAnswer {
    access_token: String,
    /// Seconds wxlogin will still hand it out: a little less than WeChat gives it.
    expires_in: u64,
}

/// Whether a reported token was replaced.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RefreshAnswer {
    access_token: String,
    expires_in: u64,
    /// True when this report made wxlogin fetch a new token from WeChat; false when the
    /// reported one was already replaced (by another report, or at its expiry).
    refreshed: bool,
}

/// The token an API refused.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    /// The access_token a WeChat API answered with errcode 40001 or 42001.
    rejected: String,
}

impl JsonShape for RefreshRequest {
    const EXPECTED: &'static str = r#"{"rejected": "<the access_token an API refused>"}"#;
}

/// The path of a backend route, as the document states it; `NamedApp` reads it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct AppPath {
    /// The app's name in wxlogin's configuration, or its appid.
    app: String,
}

/// The app's access_token: the one wxlogin uses itself, shared by its replicas.
#[utoipa::path(get, path = "/apps/{app}/access_token",
    params(AppPath),
    responses((status = 200, description = "The token, and how long it will be handed out. Never cached (`Cache-Control: no-store`).", body = AccessTokenAnswer), AccessTokenErrors)
)]
pub(super) async fn access_token(
    State(metrics): State<Metrics>,
    Extension(backend): Extension<Backend>,
    named: NamedApp,
) -> Result<Json<AccessTokenAnswer>, ApiError> {
    let app = with_access_token(named)?;
    let handed = app.access_tokens.hand_out(None).await;
    count(&metrics, &backend, &app, "access_token", &handed);
    let handed = handed.map_err(|err| ApiError::NoTokenForBackend(Arc::new(err)))?;
    Ok(Json(AccessTokenAnswer {
        access_token: handed.token.expose().to_owned(),
        expires_in: handed.expires_in,
    }))
}

/// Reports a token an API refused (40001, 42001): if it is still the current one, wxlogin
/// gets a new one (once, however many backends on however many replicas report it); if
/// not, the current one comes back at once.
#[utoipa::path(post, path = "/apps/{app}/access_token/refresh",
    params(AppPath),
    request_body = RefreshRequest,
    responses((status = 200, description = "The token to use now.", body = RefreshAnswer), RefreshErrors, BodyErrors)
)]
pub(super) async fn refresh(
    State(metrics): State<Metrics>,
    Extension(backend): Extension<Backend>,
    named: NamedApp,
    JsonBody(request): JsonBody<RefreshRequest>,
) -> Result<Json<RefreshAnswer>, ApiError> {
    let app = with_access_token(named)?;
    let rejected = AccessToken::from(request.rejected);
    let handed = app.access_tokens.hand_out(Some(&rejected)).await;
    count(&metrics, &backend, &app, "refresh", &handed);
    let handed = handed.map_err(|err| ApiError::NoTokenForBackend(Arc::new(err)))?;
    tracing::info!(
        action = "access_token_refresh",
        backend = &*backend.0,
        app = app.name().as_ref(),
        refreshed = handed.refreshed,
        "backend action"
    );
    Ok(Json(RefreshAnswer {
        access_token: handed.token.expose().to_owned(),
        expires_in: handed.expires_in,
        refreshed: handed.refreshed,
    }))
}

/// The route's app, if WeChat gives it an access_token: a website or a mobile app has none.
fn with_access_token(named: NamedApp) -> Result<Arc<App>, ApiError> {
    let app = named.required()?;
    match app.kind().has_access_token() {
        true => Ok(app),
        false => Err(ApiError::needs_access_token(app.name(), app.kind())),
    }
}

fn count<E>(
    metrics: &Metrics,
    backend: &Backend,
    app: &App,
    route: &'static str,
    handed: &Result<HandedOut, E>,
) {
    let outcome = match handed {
        Ok(handed) if handed.refreshed => "refreshed",
        Ok(_) => "ok",
        Err(_) => "error",
    };
    metrics.backend_request(&backend.0, app.name().as_ref(), route, outcome);
}
