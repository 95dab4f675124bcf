//! `POST /oauth/introspect`: RFC 7662, for the holders of a backend token (gateways such
//! as APISIX's `openid-connect`, and the team's backends). A live session token, or a JWT
//! of ours whose session still lives, is active; anything else is `{"active": false}`: a
//! JWT of a revoked session is inactive at once, whatever its `exp` says.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::{Authority, OAuthError, OAuthForm};
use crate::http::backend::BackendTokens;
use crate::http::error::ApiError;
use crate::http::error::responses::{OAuthIntrospectionErrors, OffErrors};
use crate::jwt::Claims;
use crate::session::{SessionToken, TokenHash};

/// The introspection form (RFC 7662 §2.1). `token_type_hint` is read and ignored: both
/// kinds are told apart by their shape.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct IntrospectionRequest {
    /// A session token, or a JWT from `/oauth/token`.
    #[schema(required = true)]
    token: Option<String>,
    /// `access_token`; ignored.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// What a token stands for (RFC 7662 §2.2); only `active` when it stands for nothing.
#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct Introspection {
    active: bool,
    /// The user's openid in the app.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// Seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    /// Seconds since the Unix epoch: the login, or the JWT's issue.
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    /// `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// The app's name in wxlogin's configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    appid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
    /// The session's id, as a JWT's `sid` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// Whether a token is active, and what it stands for.
#[utoipa::path(post, path = "/oauth/introspect",
    request_body(content = IntrospectionRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "`{\"active\": false}` for any token that stands for no live session; else what it stands for. Never cached.", body = Introspection), OAuthIntrospectionErrors, OffErrors)
)]
pub(in crate::http) async fn introspect(
    Extension(authority): Extension<Arc<Authority>>,
    OAuthForm(request): OAuthForm<IntrospectionRequest>,
) -> Result<Json<Introspection>, OAuthError> {
    let Authority {
        sessions,
        apps,
        issuer,
    } = &*authority;
    let token = request.token.ok_or(ApiError::NO_TOKEN_TO_INTROSPECT)?;
    let now = sessions.now();
    let found = if let Some(token) = SessionToken::parse(&token) {
        let hash = token.hash();
        sessions
            .get(&token)
            .await?
            .map(|session| (session, hash, None))
    } else if let Some(claims) = issuer.verify(&token, now) {
        let Some(hash) = TokenHash::from_session_id(&claims.sid) else {
            return Ok(Json(Introspection::default()));
        };
        sessions
            .find(&hash)
            .await?
            .filter(|session| {
                session.app().as_ref() == claims.app && session.openid().as_ref() == claims.sub
            })
            .map(|session| (session, hash, Some(claims)))
    } else {
        None
    };
    let Some((session, hash, claims)) = found else {
        return Ok(Json(Introspection::default()));
    };
    let Some(app) = apps.named(session.app()) else {
        return Ok(Json(Introspection::default()));
    };
    let (exp, iat) = match &claims {
        Some(claims) => (claims.exp, claims.iat),
        None => (session.expires_at(), sessions.logged_in_at(&session)),
    };
    Ok(Json(Introspection {
        active: true,
        sub: Some(session.openid().as_ref().to_owned()),
        aud: Some(claims.map_or_else(|| app.audience().to_owned(), |c: Claims| c.aud)),
        iss: Some(issuer.issuer().to_owned()),
        exp: Some(exp),
        iat: Some(iat),
        token_type: Some("Bearer"),
        app: Some(app.name().as_ref().to_owned()),
        appid: Some(app.appid().to_owned()),
        unionid: session.unionid().map(|u| u.as_ref().to_owned()),
        sid: Some(hash.session_id()),
    }))
}

/// Admits a request with a backend token, as a bearer token or as `client_secret_basic`;
/// the others get RFC 6749's `invalid_client`.
pub(super) async fn require_backend(
    State(tokens): State<BackendTokens>,
    request: Request,
    next: Next,
) -> Response {
    if tokens.identify_client(request.headers()).is_none() {
        return OAuthError(ApiError::BackendUnauthorized).into_response();
    }
    next.run(request).await
}
