use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::{CodeField, LoginCode};
use super::openapi::{BodyErrors, LoginErrors, UpstreamErrors};
use super::rate_limit::WithinRateLimit;
use crate::login::LoginService;
use crate::wechat::JsCode;

pub fn router() -> Router<AppState> {
    Router::new()
        // The net/http tutorials' contract: POST {"code": "..."}.
        .route("/openid", post(openid))
        // The gin and echo tutorials': GET ?code=, or POST as JSON or a form.
        .route(
            "/wechat/applet_login",
            get(applet_login_query).post(applet_login_body),
        )
}

/// A new session for the user behind a `wx.login()` code.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse<'a> {
    /// The opaque session token: send it as `Authorization: Bearer <token>`.
    token: &'a str,
    openid: &'a str,
    /// Present when the mini-program is bound to a WeChat Open Platform account.
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<&'a str>,
    /// Seconds until the token expires.
    expires_in: u64,
}

/// Log in with the code from `wx.login()`.
#[utoipa::path(
    post,
    path = "/openid",
    tag = "login",
    request_body(content = CodeField, content_type = "application/json"),
    responses((status = 200, description = "Logged in.", body = LoginResponse), LoginErrors, BodyErrors, UpstreamErrors)
)]
async fn openid(
    State(logins): State<Arc<LoginService>>,
    _: WithinRateLimit,
    LoginCode(code): LoginCode,
) -> Result<Response, ApiError> {
    login(&logins, code).await
}

/// Log in with the code from `wx.login()`, passed as `?code=`.
#[utoipa::path(
    get,
    path = "/wechat/applet_login",
    tag = "login",
    params(("code" = String, Query, description = "The code from `wx.login()`.")),
    responses((status = 200, description = "Logged in.", body = LoginResponse), LoginErrors, BodyErrors, UpstreamErrors)
)]
async fn applet_login_query(
    State(logins): State<Arc<LoginService>>,
    _: WithinRateLimit,
    LoginCode(code): LoginCode,
) -> Result<Response, ApiError> {
    login(&logins, code).await
}

/// Log in with the code from `wx.login()`, as JSON or as a form.
#[utoipa::path(
    post,
    path = "/wechat/applet_login",
    tag = "login",
    request_body(content(
        (CodeField = "application/json"),
        (CodeField = "application/x-www-form-urlencoded"),
    )),
    responses((status = 200, description = "Logged in.", body = LoginResponse), LoginErrors, BodyErrors, UpstreamErrors)
)]
async fn applet_login_body(
    State(logins): State<Arc<LoginService>>,
    _: WithinRateLimit,
    LoginCode(code): LoginCode,
) -> Result<Response, ApiError> {
    login(&logins, code).await
}

async fn login(logins: &LoginService, code: JsCode) -> Result<Response, ApiError> {
    let issued = logins.login(code).await?;
    let body = LoginResponse {
        token: issued.token.expose(),
        openid: issued.session.openid(),
        unionid: issued.session.unionid(),
        expires_in: issued.expires_in,
    };
    Ok(Json(body).into_response())
}
