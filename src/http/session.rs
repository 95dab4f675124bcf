use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::error::responses::TokenErrors;
use super::extract::{BearerToken, NamedApp, UserSession};
use crate::session::SessionStore;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/session", get(who_is_it).delete(revoke))
        .route("/apps/{app}/session", get(who_is_it).delete(revoke))
        .route_layer(super::no_store_per_token())
}

/// The user a session token stands for, in the app the session belongs to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionResponse<'a> {
    /// The app's name in wxlogin's configuration.
    app: &'a str,
    appid: &'a str,
    openid: &'a str,
    /// Present when WeChat gave one at login.
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<&'a str>,
    /// Seconds until the token expires.
    expires_in: u64,
}

/// Who the token belongs to: for the mini-program, and for backends that check tokens.
#[utoipa::path(get, path = "/session",
    responses((status = 200, description = "A live session.", body = SessionResponse), TokenErrors)
)]
pub(super) async fn who_is_it(
    State(sessions): State<SessionStore>,
    UserSession { session, app }: UserSession,
) -> Response {
    let body = SessionResponse {
        app: session.app().as_ref(),
        appid: app.appid(),
        openid: session.openid().as_ref(),
        unionid: session.unionid().map(AsRef::as_ref),
        expires_in: session.expires_in(sessions.now()),
    };
    Json(body).into_response()
}

/// Logs out: the token is rejected from now on.
#[utoipa::path(delete, path = "/session",
    responses((status = 204, description = "Logged out."), TokenErrors)
)]
pub(super) async fn revoke(
    State(sessions): State<SessionStore>,
    named: NamedApp,
    BearerToken(token): BearerToken,
) -> Result<StatusCode, ApiError> {
    if let Some(app) = named.0 {
        // Another app's token is not this route's to end.
        let session = sessions.get(&token).await?.ok_or(ApiError::InvalidToken)?;
        if session.app() != app.name() {
            return Err(ApiError::InvalidToken);
        }
    }
    match sessions.revoke(&token).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::InvalidToken),
    }
}
