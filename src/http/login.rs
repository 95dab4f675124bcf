use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::extract::LoginCode;
use crate::login::LoginService;

pub fn router() -> Router<AppState> {
    Router::new()
        // The net/http tutorials' contract: POST {"code": "..."}.
        .route("/openid", post(login))
        // The gin and echo tutorials': GET ?code=, or POST as JSON or a form.
        .route("/wechat/applet_login", get(login).post(login))
}

#[derive(Serialize)]
struct LoginResponse<'a> {
    token: &'a str,
    openid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<&'a str>,
    expires_in: u64,
}

async fn login(
    State(logins): State<Arc<LoginService>>,
    LoginCode(code): LoginCode,
) -> Result<Response, ApiError> {
    let issued = logins.login(code).await?;
    let body = LoginResponse {
        token: issued.token.expose(),
        openid: issued.session.openid.as_ref(),
        unionid: issued.session.unionid.as_ref().map(AsRef::as_ref),
        expires_in: issued.expires_in,
    };
    Ok(Json(body).into_response())
}
