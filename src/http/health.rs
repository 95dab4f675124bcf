use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(alive))
}

/// Liveness: the process is up and serving. It checks no dependency on purpose, so a
/// WeChat outage never gets healthy replicas restarted.
async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
