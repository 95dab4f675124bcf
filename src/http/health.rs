use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::session::SessionStore;
use crate::telemetry::metrics::Metrics;

/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
}

/// `/metrics`: on the public listener, or on the admin one when it has its own.
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Liveness: the process is up and serving. It checks no dependency on purpose, so a
/// WeChat or Redis outage never gets healthy replicas restarted.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`.", body = Object))
)]
pub(super) async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the configuration loaded (or the process would not be serving) and the
/// session store takes writes. A load balancer stops sending logins while it does not;
/// the answer says why (unreachable, too slow, out of memory, a read-only replica).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`.", body = Object),
        super::error::responses::NotReady,
    )
)]
pub(super) async fn ready(State(sessions): State<SessionStore>) -> Response {
    match sessions.probe().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response(),
        Err(err) => ApiError::NotReady(err).into_response(),
    }
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String))
)]
pub(super) async fn metrics(
    State(metrics): State<Metrics>,
    State(sessions): State<SessionStore>,
) -> Response {
    let body = metrics.render(sessions.live_count());
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_TEXT),
    );
    response
}
