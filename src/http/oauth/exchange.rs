//! `POST /oauth/token`: RFC 8693 token exchange, a live session's token for a short-lived
//! JWT that names it. The session stays the source of truth: the JWT ends with it at the
//! latest, and introspection refuses it once the session is gone.

use std::sync::Arc;

use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::{Authority, OAuthError, OAuthForm};
use crate::http::error::ApiError;
use crate::http::error::responses::{OAuthTokenErrors, OffErrors};
use crate::jwt::Subject;
use crate::session::SessionToken;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The exchange's form. Other RFC 8693 parameters (`audience`, `scope`, …) are ignored:
/// the JWT's audience is its app's.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    #[schema(
        required = true,
        example = "urn:ietf:params:oauth:grant-type:token-exchange"
    )]
    grant_type: Option<String>,
    /// The session token from a login.
    #[schema(required = true)]
    subject_token: Option<String>,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    #[schema(
        required = true,
        example = "urn:ietf:params:oauth:token-type:access_token"
    )]
    subject_token_type: Option<String>,
}

/// A JWT for the session (RFC 8693 §2.2.1).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenAnswer {
    /// The signed JWT (ES256).
    access_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt`.
    issued_token_type: &'static str,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds until the JWT expires: the configured TTL, or less if the session ends
    /// sooner.
    expires_in: u64,
}

/// Exchanges a session token for a short-lived JWT that gateways verify with the JWKS.
#[utoipa::path(post, path = "/oauth/token",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "A JWT. Never cached (`Cache-Control: no-store`).", body = TokenAnswer), OAuthTokenErrors, OffErrors)
)]
pub(in crate::http) async fn exchange(
    Extension(authority): Extension<Arc<Authority>>,
    OAuthForm(request): OAuthForm<TokenRequest>,
) -> Result<Json<TokenAnswer>, OAuthError> {
    let Authority {
        sessions,
        apps,
        issuer,
    } = &*authority;
    if request.grant_type.as_deref() != Some(TOKEN_EXCHANGE) {
        return Err(ApiError::UNSUPPORTED_GRANT_TYPE.into());
    }
    if request.subject_token_type.as_deref() != Some(ACCESS_TOKEN_TYPE) {
        return Err(ApiError::UNSUPPORTED_SUBJECT_TOKEN_TYPE.into());
    }
    let token = request
        .subject_token
        .as_deref()
        .and_then(SessionToken::parse)
        .ok_or(ApiError::NOT_A_LIVE_SESSION)?;
    let session = sessions
        .get(&token)
        .await?
        .ok_or(ApiError::NOT_A_LIVE_SESSION)?;
    let app = apps
        .named(session.app())
        .ok_or(ApiError::NOT_A_LIVE_SESSION)?;
    let subject = Subject {
        openid: session.openid().as_ref(),
        unionid: session.unionid().map(AsRef::as_ref),
        app: app.name().as_ref(),
        appid: app.appid(),
        audience: app.audience(),
        sid: token.hash().session_id(),
    };
    let issued = issuer
        .issue(subject, sessions.now(), session.expires_at())
        .map_err(|err| {
            tracing::error!(error = %err, "could not sign a JWT");
            ApiError::Internal
        })?;
    Ok(Json(TokenAnswer {
        access_token: issued.token,
        issued_token_type: JWT_TOKEN_TYPE,
        token_type: "Bearer",
        expires_in: issued.expires_in,
    }))
}
