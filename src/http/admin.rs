//! The admin API: an operator looks a user up, revokes their sessions (in one app, or in
//! every app by unionid), and blocks their logins for a while. Mounted only when an admin
//! token is configured; every route needs it as a bearer token, compared in constant time.
//! Every action is logged at `info` (the audit trail) and counted.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use super::error::responses::{
    AdminErrors, AdminUserErrors, BlockErrors, BodyErrors, UnblockErrors,
};
use super::extract::{JsonBody, JsonShape, NamedApp};
use crate::domain::{OpenId, UnionId};
use crate::session::{Block, SessionStore, UserId};
use crate::telemetry::metrics::Metrics;

/// The longest reason a block may give: it is for operators, in logs and this API.
pub const MAX_REASON_CHARS: usize = 200;
/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LATEST_UNTIL: u64 = 253_402_300_799;

/// The admin token, as its SHA-256: comparing digests of equal length in constant time
/// tells an attacker neither the token's bytes nor its length.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8; 32]>);

impl AdminToken {
    pub fn new(token: &SecretString) -> Self {
        Self(Arc::new(
            Sha256::digest(token.expose_secret().as_bytes()).into(),
        ))
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        let Ok(presented) = super::extract::bearer(headers) else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(presented.ct_eq(&*self.0))
    }
}

pub fn router(token: AdminToken) -> Router<AppState> {
    Router::new()
        .route("/admin/apps/{app}/users/{openid}", get(user))
        .route(
            "/admin/apps/{app}/users/{openid}/sessions",
            delete(revoke_user),
        )
        .route(
            "/admin/apps/{app}/users/{openid}/block",
            axum::routing::put(block).delete(unblock),
        )
        .route("/admin/unionids/{unionid}/sessions", delete(revoke_unionid))
        .route_layer(super::no_store())
        // Set here, so that the guard below wraps it too: a request without the token
        // learns nothing of what a path serves, not even its methods.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(token, require_admin))
}

/// Before anything else is read: a request without the token learns nothing, not even
/// whether its path names a valid openid.
async fn require_admin(
    State(token): State<AdminToken>,
    request: Request<axum::body::Body>,
    next: Next,
) -> Response {
    if !token.admits(request.headers()) {
        return ApiError::AdminUnauthorized.into_response();
    }
    next.run(request).await
}

/// What an admin route on one user acts with: the store, the metrics its audit counts in,
/// and the user its `{app}` and `{openid}` name (`404 unknown_app`, `400 invalid_openid`).
pub struct OnUser {
    sessions: SessionStore,
    metrics: Metrics,
    user: UserId,
}

impl FromRequestParts<AppState> for OnUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let app = NamedApp::from_request_parts(parts, state)
            .await?
            .required()?;
        let openid = path_param(parts, "openid").await.unwrap_or_default();
        let openid = OpenId::parse(&openid).ok_or(ApiError::INVALID_OPENID)?;
        Ok(Self {
            sessions: state.sessions.clone(),
            metrics: state.metrics.clone(),
            user: UserId {
                app: app.name().clone(),
                openid,
            },
        })
    }
}

/// The `{unionid}` of a route: `400 invalid_unionid`.
pub struct AdminUnionId(UnionId);

impl<S: Send + Sync> FromRequestParts<S> for AdminUnionId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let raw = path_param(parts, "unionid").await.unwrap_or_default();
        UnionId::parse(&raw)
            .map(Self)
            .ok_or(ApiError::INVALID_UNIONID)
    }
}

pub(super) async fn path_param(parts: &mut Parts, name: &str) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, &()).await.ok()?;
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The path of a route on one user of one app, as the document states it; `AdminUser`
/// reads it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct UserPath {
    /// The app's name in wxlogin's configuration, or its appid.
    app: String,
    /// The user's openid in that app.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,128}$")]
    openid: String,
}

/// One user of one app, as the store knows them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserAnswer {
    openid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
    /// Live sessions.
    sessions: u64,
    /// Seconds since the Unix epoch; present while a block holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    blocked_until: Option<u64>,
    /// The operator's reason for the block; never shown to the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    block_reason: Option<String>,
}

/// How many sessions an action ended.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    revoked: u64,
}

/// Whether a block was lifted.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Unblocked {
    /// False when there was no block to lift.
    unblocked: bool,
}

/// A user's sessions, unionid and block.
#[utoipa::path(get, path = "/admin/apps/{app}/users/{openid}",
    params(UserPath),
    responses((status = 200, description = "The user.", body = UserAnswer), AdminUserErrors)
)]
pub(super) async fn user(on: OnUser) -> Result<Json<UserAnswer>, ApiError> {
    let found = on.sessions.user(&on.user).await?;
    on.audit("lookup_user", found.sessions);
    Ok(Json(UserAnswer {
        openid: on.user.openid.as_ref().to_owned(),
        unionid: found.unionid,
        sessions: found.sessions,
        blocked_until: found.block.as_ref().map(|block| block.until),
        block_reason: found.block.map(|block| block.reason),
    }))
}

/// Logs the user out of the app everywhere: every session ends, on every replica.
#[utoipa::path(delete, path = "/admin/apps/{app}/users/{openid}/sessions",
    params(UserPath),
    responses((status = 200, description = "How many sessions ended.", body = Revoked), AdminUserErrors)
)]
pub(super) async fn revoke_user(on: OnUser) -> Result<Json<Revoked>, ApiError> {
    let revoked = on.sessions.revoke_user(&on.user).await?;
    on.audit("revoke_user", revoked);
    Ok(Json(Revoked { revoked }))
}

/// Logs the person out of every app of the deployment, by their unionid.
#[utoipa::path(delete, path = "/admin/unionids/{unionid}/sessions",
    params(("unionid" = String, Path, description = "The person's unionid.", pattern = r"^[A-Za-z0-9_-]{1,128}$")),
    responses((status = 200, description = "How many sessions ended.", body = Revoked), AdminErrors)
)]
pub(super) async fn revoke_unionid(
    State(sessions): State<SessionStore>,
    State(metrics): State<Metrics>,
    AdminUnionId(unionid): AdminUnionId,
) -> Result<Json<Revoked>, ApiError> {
    let revoked = sessions.revoke_unionid(&unionid).await?;
    metrics.admin_action("revoke_unionid");
    tracing::info!(
        action = "revoke_unionid",
        unionid = unionid.as_ref(),
        count = revoked,
        "admin action"
    );
    Ok(Json(Revoked { revoked }))
}

/// A block: until when, and why.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct BlockRequest {
    /// Unix seconds, or an RFC 3339 time such as `2026-12-09T00:00:00+08:00`.
    #[schema(schema_with = until_schema)]
    until: Until,
    /// For operators (logged, and in the user lookup); at most 200 characters. Never
    /// shown to the user.
    #[serde(default)]
    #[schema(max_length = 200)]
    reason: String,
}

fn until_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0))
                .maximum(Some(LATEST_UNTIL as f64)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .description(Some(
            "When the block lifts: Unix seconds, or an RFC 3339 time; in the future.",
        ))
        .into()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Until {
    Unix(u64),
    Text(String),
}

impl JsonShape for BlockRequest {
    const EXPECTED: &'static str =
        r#"{"until": <unix seconds or an RFC 3339 time>, "reason": "<at most 200 characters>"}"#;
}

impl Until {
    fn unix_seconds(&self) -> Option<u64> {
        match self {
            Self::Unix(secs) => Some(*secs),
            Self::Text(text) => {
                let time = time::OffsetDateTime::parse(
                    text.trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()?;
                u64::try_from(time.unix_timestamp()).ok()
            }
        }
    }
}

/// Blocks the user's logins in the app until then, and ends their sessions. Their logins
/// answer `403 user_blocked` with the configured public message meanwhile.
#[utoipa::path(put, path = "/admin/apps/{app}/users/{openid}/block",
    params(UserPath),
    request_body = BlockRequest,
    responses((status = 200, description = "Blocked; how many sessions ended.", body = Revoked), BlockErrors, BodyErrors)
)]
pub(super) async fn block(
    on: OnUser,
    JsonBody(request): JsonBody<BlockRequest>,
) -> Result<Json<Revoked>, ApiError> {
    let until = request
        .until
        .unix_seconds()
        .filter(|&until| until <= LATEST_UNTIL)
        .ok_or(ApiError::UNTIL_UNREADABLE)?;
    if until <= on.sessions.now() {
        return Err(ApiError::UNTIL_PAST);
    }
    if request.reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::REASON_TOO_LONG);
    }
    let reason = request.reason.trim().to_owned();
    let block = Block {
        until,
        reason: reason.clone(),
    };
    let revoked = on.sessions.block(&on.user, block).await?;
    on.metrics.admin_action("block");
    tracing::info!(
        action = "block",
        app = on.user.app.as_ref(),
        openid = on.user.openid.as_ref(),
        count = revoked,
        until,
        reason,
        "admin action"
    );
    Ok(Json(Revoked { revoked }))
}

/// Lifts the user's block: they can log in again.
#[utoipa::path(delete, path = "/admin/apps/{app}/users/{openid}/block",
    params(UserPath),
    responses((status = 200, description = "Whether there was a block.", body = Unblocked), UnblockErrors)
)]
pub(super) async fn unblock(on: OnUser) -> Result<Json<Unblocked>, ApiError> {
    let unblocked = on.sessions.unblock(&on.user).await?;
    on.audit("unblock", u64::from(unblocked));
    Ok(Json(Unblocked { unblocked }))
}

impl OnUser {
    /// The audit line (in the request's span, which carries its request id) and the
    /// counter.
    fn audit(&self, action: &'static str, count: u64) {
        self.metrics.admin_action(action);
        tracing::info!(
            action,
            app = self.user.app.as_ref(),
            openid = self.user.openid.as_ref(),
            count,
            "admin action"
        );
    }
}
