//! The OpenAPI 3.1 document, generated from the handlers' own annotations, served at
//! `GET /openapi.json`.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::AppState;
use super::error::ErrorBody;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wxlogin",
        description = "A login service for WeChat Mini Programs: a `wx.login()` code in, an opaque session token out. WeChat's session_key and the app secret never leave the server. Every error is `{\"error\": kind, \"message\": text}`."
    ),
    paths(
        super::login::openid,
        super::login::applet_login_query,
        super::login::applet_login_body,
        super::session::who_is_it,
        super::session::revoke,
        super::open_data::verify_signature,
        super::open_data::decrypt_data,
        super::open_data::phone_number,
        super::open_data::check_session,
        super::forward_auth::forward_auth,
        super::health::alive,
        super::health::ready,
        super::health::metrics,
        openapi_json,
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "login", description = "Trading a `wx.login()` code for a session token."),
        (name = "session", description = "What a session token stands for, and logging out."),
        (name = "user data", description = "Checking and opening what WeChat hands the mini-program, with the session's session_key."),
        (name = "gateway", description = "Forward-auth for API gateways."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme that the session routes name in their `security`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The session token from a login."))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, built once.
pub static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serialises")
});

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json", body = Object))
)]
async fn openapi_json() -> Response {
    let mut response = OPENAPI_JSON.as_str().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What any route that reads a body can answer, listed beside the route's own set.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// `payload_too_large`: the body is over 16 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody<'static>),
    /// `unsupported_media_type`.
    #[response(status = 415)]
    MediaType(ErrorBody<'static>),
}

/// What any route that calls WeChat can answer, listed beside the route's own set (each
/// set's 503 says which kinds that route can meet, so it stays there).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum UpstreamErrors {
    /// `upstream_error`: WeChat could not be reached or sent something unusable.
    #[response(status = 502)]
    Upstream(ErrorBody<'static>),
    /// `upstream_timeout`: WeChat did not answer in time.
    #[response(status = 504)]
    Timeout(ErrorBody<'static>),
}

/// What a login route can answer besides its 200, [`BodyErrors`] and [`UpstreamErrors`].
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum LoginErrors {
    /// `missing_code`, `malformed_code`, `malformed_json` or `invalid_body`.
    #[response(status = 400)]
    BadRequest(ErrorBody<'static>),
    /// `invalid_code`: WeChat rejected the code (invalid, expired or another app's).
    #[response(status = 401)]
    InvalidCode(ErrorBody<'static>),
    /// `user_blocked`: WeChat rates the user high-risk.
    #[response(status = 403)]
    Blocked(ErrorBody<'static>),
    /// `code_used`: the code was used already.
    #[response(status = 409)]
    CodeUsed(ErrorBody<'static>),
    /// `rate_limited`: this client IP's allowance, or WeChat's limit for the user, is spent. `Retry-After` says when to retry.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait.")))]
    RateLimited(ErrorBody<'static>),
    /// `misconfigured`: wxlogin's appid or secret is wrong; the operators' logs say why.
    #[response(status = 500)]
    Misconfigured(ErrorBody<'static>),
    /// `upstream_busy`, `overloaded` (too many WeChat calls in flight) or `store_unavailable`. `Retry-After` says when to retry.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait.")))]
    Unavailable(ErrorBody<'static>),
}

/// What a route that needs a session token can answer besides its 200.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum TokenErrors {
    /// `invalid_token`: no token, or an unknown, expired or revoked one. Log in again.
    #[response(status = 401, headers(("WWW-Authenticate" = String)))]
    InvalidToken(ErrorBody<'static>),
    /// `store_unavailable`: the session store does not answer. `Retry-After` says when to retry.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait.")))]
    Unavailable(ErrorBody<'static>),
}

/// What the user-data routes that only use the session_key can answer besides their 200
/// and [`BodyErrors`].
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum OpenDataErrors {
    /// `invalid_signature`, `malformed_base64`, `invalid_length`, `decryption_failed`, `watermark_mismatch`, `malformed_json` or `invalid_body`.
    #[response(status = 400)]
    BadRequest(ErrorBody<'static>),
    /// `invalid_token`: no token, or an unknown, expired or revoked one. Log in again.
    #[response(status = 401, headers(("WWW-Authenticate" = String)))]
    InvalidToken(ErrorBody<'static>),
    /// `store_unavailable`: the session store does not answer.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait.")))]
    Unavailable(ErrorBody<'static>),
}

/// What the user-data routes that ask WeChat can answer besides their 200,
/// [`BodyErrors`] and [`UpstreamErrors`].
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ServerApiErrors {
    /// `missing_code`, `malformed_code`, `malformed_json` or `invalid_body`.
    #[response(status = 400)]
    BadRequest(ErrorBody<'static>),
    /// `invalid_token` (log in again), or `invalid_code` (WeChat rejected the phone code).
    #[response(status = 401)]
    Unauthorized(ErrorBody<'static>),
    /// `code_used`: the phone code was used already.
    #[response(status = 409)]
    CodeUsed(ErrorBody<'static>),
    /// `rate_limited`: this client IP's allowance, or WeChat's limit, is spent.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait.")))]
    RateLimited(ErrorBody<'static>),
    /// `misconfigured`: wxlogin's credentials are wrong; the operators' logs say why.
    #[response(status = 500)]
    Misconfigured(ErrorBody<'static>),
    /// `upstream_busy`, `overloaded`, `access_token_unavailable` or `store_unavailable`.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait.")))]
    Unavailable(ErrorBody<'static>),
}
