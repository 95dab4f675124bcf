use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::session::SessionStore;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
}

/// Liveness: the process is up and serving. It checks no dependency on purpose, so a
/// WeChat or Redis outage never gets healthy replicas restarted.
async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the configuration loaded (or the process would not be serving) and the
/// session store answers. A load balancer stops sending logins while it does not.
async fn ready(State(sessions): State<SessionStore>) -> Response {
    match sessions.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}
