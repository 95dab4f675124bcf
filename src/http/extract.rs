//! Extractors that parse requests at the edge and reject in our error format.

use axum::extract::{Form, FromRequest, FromRequestParts, Json, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde::Deserialize;

use super::error::ApiError;
use crate::session::SessionToken;
use crate::wechat::JsCode;

/// The `wx.login()` code of a login request, from `?code=` on GET, or from a JSON or
/// form body on POST: the three shapes the popular tutorials use.
pub struct LoginCode(pub JsCode);

#[derive(Deserialize)]
struct CodeField {
    code: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for LoginCode {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let CodeField { code } = if req.method() == Method::GET {
            Query::<CodeField>::try_from_uri(req.uri())?.0
        } else if is_form(&req) {
            Form::<CodeField>::from_request(req, state).await?.0
        } else {
            // Json rejects any other content type with 415.
            Json::<CodeField>::from_request(req, state).await?.0
        };
        Ok(Self(JsCode::parse(code.as_deref())?))
    }
}

fn is_form(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The session token from `Authorization: Bearer <token>`, well-formed but not yet looked up.
pub struct BearerToken(pub SessionToken);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::MissingToken)?;
        let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::InvalidToken)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::MissingToken);
        }
        SessionToken::parse(token.trim())
            .map(Self)
            .ok_or(ApiError::InvalidToken)
    }
}
