//! `GET /auth`: the gateway's question "who is this?", in the contract of nginx
//! `auth_request`, Traefik ForwardAuth and Envoy's HTTP ext_authz. 200 with the user in
//! headers lets the request through; 401 stops it at the gateway.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;
use super::extract::{UserSession, bearer_token};
use crate::apps::Apps;
use crate::session::{SessionStore, SessionToken};

pub const OPENID_HEADER: HeaderName = HeaderName::from_static("x-wxlogin-openid");
pub const UNIONID_HEADER: HeaderName = HeaderName::from_static("x-wxlogin-unionid");
pub const APP_HEADER: HeaderName = HeaderName::from_static("x-wxlogin-app");
pub const APPID_HEADER: HeaderName = HeaderName::from_static("x-wxlogin-appid");

/// The cookie a token may also come in, when configured (`WXLOGIN_AUTH_COOKIE`).
#[derive(Clone, Default)]
pub struct AuthCookie(pub Option<Arc<str>>);

pub fn router() -> Router<AppState> {
    // Every standard method: Envoy and Traefik ask with the method of the request they
    // guard. Any other method is a 405, as on every route.
    let every_method = || {
        get(forward_auth)
            .post(forward_auth)
            .put(forward_auth)
            .delete(forward_auth)
            .patch(forward_auth)
            .head(forward_auth)
            .options(forward_auth)
            .trace(forward_auth)
    };
    // `/apps/{app}/auth` lets through only that app's sessions.
    Router::new()
        .route("/auth", every_method())
        .route("/apps/{app}/auth", every_method())
        // A gateway must ask again for every request: a logout takes effect at once.
        .route_layer(super::no_store_per_token())
}

/// Who the token belongs to, as headers for the gateway to pass on. The backends behind
/// the gateway trust `X-WxLogin-OpenId` and never see a token.
#[utoipa::path(method(get, post, put, delete, patch, head, options, trace), path = "/auth",
    description = "Forward-auth for a gateway (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz); it answers every standard method (GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS, TRACE), so that Envoy and Traefik may ask with the method of the request they guard. The token comes from `Authorization: Bearer`, or from the cookie named by WXLOGIN_AUTH_COOKIE.",
    responses(
        (status = 200, description = "A live session. The body is empty.",
            headers(
                ("X-WxLogin-OpenId" = String, description = "The user's openid."),
                ("X-WxLogin-UnionId" = String, description = "The user's unionid, when WeChat gave one."),
                ("X-WxLogin-App" = String, description = "The name of the app the session belongs to."),
                ("X-WxLogin-AppId" = String, description = "That app's appid."),
            )),
        super::error::responses::TokenErrors,
    )
)]
pub async fn forward_auth(
    State(sessions): State<SessionStore>,
    State(apps): State<Apps>,
    State(cookie): State<AuthCookie>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let token = |parts: &Parts| token(&parts.headers, &cookie);
    let UserSession { session, app } =
        UserSession::find(&mut parts, &sessions, &apps, token).await?;
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    // Ids are validated to [A-Za-z0-9_-] when WeChat hands them over, and app names to
    // [a-z0-9_]; an appid comes from the operator's configuration.
    for (name, value) in [
        (OPENID_HEADER, session.openid().as_ref()),
        (APP_HEADER, session.app().as_ref()),
        (APPID_HEADER, app.appid()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    if let Some(unionid) = session.unionid()
        && let Ok(unionid) = HeaderValue::from_str(unionid.as_ref())
    {
        headers.insert(UNIONID_HEADER, unionid);
    }
    Ok(response)
}

/// The bearer token if there is an `Authorization` header, else the configured cookie.
fn token(headers: &HeaderMap, cookie: &AuthCookie) -> Result<SessionToken, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return bearer_token(headers);
    }
    let Some(name) = &cookie.0 else {
        return Err(ApiError::MissingToken);
    };
    let value = cookie_value(headers, name).ok_or(ApiError::MissingToken)?;
    SessionToken::parse(value).ok_or(ApiError::InvalidToken)
}

pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any Cookie headers: the named cookie's value, from one of them, or none.
        #[test]
        fn any_cookie_header_gives_the_named_value_or_none(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..3),
            name in "[a-z_]{1,12}",
        ) {
            let mut headers = HeaderMap::new();
            for value in &values {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    headers.append(header::COOKIE, value);
                }
            }
            if let Some(value) = cookie_value(&headers, &name) {
                let sent = values.iter().any(|v| String::from_utf8_lossy(v).contains(value));
                prop_assert!(sent, "{value:?} is in no header");
            }
        }

        #[test]
        fn a_cookie_among_others_reads_back(
            name in "[a-z_]{1,12}",
            value in "[A-Za-z0-9_-]{1,43}",
            others in proptest::collection::vec(("[a-z]{1,6}", "[A-Za-z0-9]{0,10}"), 0..4),
        ) {
            let mut pairs: Vec<String> = others
                .iter()
                .filter(|(other, _)| *other != name)
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            pairs.insert(pairs.len() / 2, format!("{name}={value}"));
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(&pairs.join("; ")).expect("a header"));
            prop_assert_eq!(cookie_value(&headers, &name), Some(value.as_str()));
        }
    }
}
