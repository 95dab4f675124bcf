//! OAuth for gateways that only trust JWTs: the RFC 8693 exchange of a session token for a
//! short-lived JWT (`exchange`), RFC 7662 introspection for the team's gateways and
//! backends (`introspect`), and what a verifier discovers: the JWKS and the RFC 8414
//! metadata. Mounted only when `WXLOGIN_JWT_ISSUER` is set; every error on these routes is
//! in RFC 6749 §5.2's shape.

pub(super) mod exchange;
pub(super) mod introspect;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Form, FromRequest, Request};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::AppState;
use super::backend::BackendTokens;
use super::error::ApiError;
use super::error::responses::OffErrors;
use crate::apps::Apps;
use crate::jwt::{ALGORITHM, JwtIssuer};
use crate::redis_conn::StoreError;
use crate::session::SessionStore;

pub use exchange::{TOKEN_EXCHANGE, TokenAnswer, TokenRequest};
pub use introspect::{Introspection, IntrospectionRequest};

/// How long a verifier may keep the JWKS and the metadata: a rotation publishes the new
/// key beside the old one for longer than this.
const DISCOVERY_MAX_AGE: &str = "public, max-age=300";

/// What the exchange and introspection work with: the sessions, the apps, and the JWTs'
/// issuer.
pub struct Authority {
    pub sessions: SessionStore,
    pub apps: Apps,
    pub issuer: JwtIssuer,
}

/// The exchange and the discovery documents, for anyone.
pub fn router(authority: Arc<Authority>) -> Router<AppState> {
    let issuer = &authority.issuer;
    let documents = Discovery {
        jwks: document(&serde_json::to_value(issuer.jwks()).unwrap_or_default()),
        oauth: document(&metadata(issuer, false)),
        openid: document(&metadata(issuer, true)),
    };
    Router::new()
        .route(
            "/oauth/token",
            post(exchange::exchange).route_layer(super::no_store()),
        )
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(authorization_server_metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .method_not_allowed_fallback(|| async { OAuthError(ApiError::MethodNotAllowed) })
        .layer(Extension(documents))
        .layer(Extension(authority))
}

/// The discovery documents, built once: each answer shares their bytes.
#[derive(Clone)]
pub(in crate::http) struct Discovery {
    jwks: Bytes,
    oauth: Bytes,
    openid: Bytes,
}

/// The public keys JWTs are signed with (RFC 7517): the current one, then those of
/// before a rotation.
#[utoipa::path(get, path = "/.well-known/jwks.json",
    responses((status = 200, description = "A JWK Set: ES256 keys on P-256, each with its RFC 7638 thumbprint as `kid`. Cacheable for five minutes.", content_type = "application/json", body = Object), OffErrors)
)]
pub(in crate::http) async fn jwks(Extension(documents): Extension<Discovery>) -> Response {
    discovery(documents.jwks)
}

/// RFC 8414 metadata: the issuer, its JWKS and its endpoints.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server",
    responses((status = 200, description = "The metadata. Cacheable for five minutes.", content_type = "application/json", body = Object), OffErrors)
)]
pub(in crate::http) async fn authorization_server_metadata(
    Extension(documents): Extension<Discovery>,
) -> Response {
    discovery(documents.oauth)
}

/// The OpenID Connect Discovery fields that apply, for verifiers that discover there
/// (Istio, APISIX).
#[utoipa::path(get, path = "/.well-known/openid-configuration",
    responses((status = 200, description = "The metadata. Cacheable for five minutes.", content_type = "application/json", body = Object), OffErrors)
)]
pub(in crate::http) async fn openid_configuration(
    Extension(documents): Extension<Discovery>,
) -> Response {
    discovery(documents.openid)
}

/// Introspection, for the holders of a backend token.
pub fn introspection_router(authority: Arc<Authority>, tokens: BackendTokens) -> Router<AppState> {
    Router::new()
        .route("/oauth/introspect", post(introspect::introspect))
        .route_layer(super::no_store())
        .method_not_allowed_fallback(|| async { OAuthError(ApiError::MethodNotAllowed) })
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            introspect::require_backend,
        ))
        .layer(Extension(authority))
}

/// RFC 8414's metadata, or (`openid`) the fields of OpenID Connect Discovery that apply:
/// Istio and APISIX discover through the latter.
fn metadata(issuer: &JwtIssuer, openid: bool) -> serde_json::Value {
    let base = issuer.issuer();
    let mut metadata = json!({
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/oauth/token"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "grant_types_supported": [TOKEN_EXCHANGE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
    });
    if openid {
        metadata["subject_types_supported"] = json!(["public"]);
        metadata["id_token_signing_alg_values_supported"] = json!([ALGORITHM]);
        metadata["claims_supported"] = json!([
            "iss", "sub", "aud", "iat", "nbf", "exp", "jti", "app", "appid", "unionid", "sid"
        ]);
    }
    metadata
}

fn document(value: &serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}

fn discovery(document: Bytes) -> Response {
    let mut response = document.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(DISCOVERY_MAX_AGE),
    );
    response
}

/// An error on an OAuth route: answered in RFC 6749 §5.2's shape.
pub struct OAuthError(pub ApiError);

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        self.0.into_oauth_response()
    }
}

impl From<ApiError> for OAuthError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl From<StoreError> for OAuthError {
    fn from(err: StoreError) -> Self {
        Self(ApiError::from(err))
    }
}

/// A form body (`application/x-www-form-urlencoded`, as RFC 6749 has it) of the shape
/// `T`; what is wrong with it is answered in RFC 6749's shape.
pub struct OAuthForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OAuthForm<T> {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Form(form) = Form::<T>::from_request(req, state)
            .await
            .map_err(ApiError::from)?;
        Ok(Self(form))
    }
}
