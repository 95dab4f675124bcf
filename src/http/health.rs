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
#[utoipa::path(get, path = "/healthz",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`.", body = Object))
)]
pub(super) async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the configuration loaded (or the process would not be serving) and the
/// session store takes writes. A load balancer stops sending logins while it does not;
/// the answer says why (unreachable, too slow, out of memory, a read-only replica).
#[utoipa::path(get, path = "/readyz",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`, with `warnings` when something needs an operator but does not stop the service (`store_key_mismatch`: sealed session_keys that the configured store keys do not open).", body = Object),
        super::error::responses::NotReady,
    )
)]
pub(super) async fn ready(State(sessions): State<SessionStore>) -> Response {
    if let Err(err) = sessions.probe().await {
        return ApiError::NotReady(err).into_response();
    }
    // Still ready: one record sealed under a dropped key must not pull every replica out
    // of the load balancer. Operators read it here, and alert on the metric.
    let body = match sessions.key_mismatches() {
        None => json!({ "status": "ready" }),
        Some(seen) => json!({
            "status": "ready",
            "warnings": [{
                "kind": "store_key_mismatch",
                "message": "Sealed session_keys in Redis do not open with the configured store keys: check WXLOGIN_STORE_KEY_FILE and WXLOGIN_STORE_OLD_KEYS_FILE. The routes that need them answer 500 misconfigured until the user logs in again.",
                "key_id": seen.key_id,
                "count": seen.count,
                "last_seen_secs_ago": seen.last_seen_secs_ago,
            }],
        }),
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String))
)]
pub(super) async fn metrics(
    State(metrics): State<Metrics>,
    State(sessions): State<SessionStore>,
) -> Response {
    if let Some(seen) = sessions.key_mismatches() {
        metrics.store_key_mismatches(seen.count);
    }
    let body = metrics.render(sessions.live_count());
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_TEXT),
    );
    response
}
