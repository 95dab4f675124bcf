use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::responses::{BodyErrors, LoginErrors, UpstreamErrors};
use super::error::{ApiError, ErrorReport};
use super::extract::{CodeField, LoginCode, target_app};
use super::rate_limit::within_rate_limit;
use crate::login::LoggedIn;

/// The login routes of the default app; each is also under `/apps/{app}/`.
pub const ROUTES: [&str; 2] = ["/openid", "/wechat/applet_login"];

/// The login routes, which differ only in where the code comes from, each also under
/// `/apps/{app}/` for an app other than the default.
pub fn router() -> Router<AppState> {
    Router::new()
        // The net/http tutorials' contract: POST {"code": "..."}.
        .route("/openid", post(login))
        .route("/apps/{app}/openid", post(login))
        // The gin and echo tutorials': GET ?code=, or POST as JSON or a form.
        .route("/wechat/applet_login", get(login).post(login))
        .route("/apps/{app}/wechat/applet_login", get(login).post(login))
        .route_layer(super::no_store())
}

/// A new session for the user behind a `wx.login()` code.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse<'a> {
    /// The opaque session token: send it as `Authorization: Bearer <token>`.
    token: &'a str,
    openid: &'a str,
    /// Present when the app is bound to a WeChat Open Platform account (for an official
    /// account, only with the `snsapi_userinfo` scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<&'a str>,
    /// Seconds until the token expires.
    expires_in: u64,
    /// The user's nickname and avatar: only from an official account's `snsapi_userinfo`
    /// login, a website's, or a mobile app's, and only when WeChat told them.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<ProfileBody<'a>>,
}

/// What WeChat's `sns/userinfo` told of the user.
#[derive(Serialize, ToSchema)]
pub struct ProfileBody<'a> {
    nickname: &'a str,
    /// Empty when the user has no avatar.
    avatar_url: &'a str,
}

impl<'a> LoginResponse<'a> {
    pub(super) fn new(logged_in: &'a LoggedIn) -> Self {
        let issued = &logged_in.session;
        Self {
            token: issued.token.expose(),
            openid: issued.session.openid().as_ref(),
            unionid: issued.session.unionid().map(AsRef::as_ref),
            expires_in: issued.expires_in,
            profile: logged_in.profile.as_ref().map(|profile| ProfileBody {
                nickname: &profile.nickname,
                avatar_url: &profile.avatar_url,
            }),
        }
    }
}

/// Trades the request's `wx.login()` code for a new session of its app, on every login
/// route, and counts what came of it by route, app and outcome (`wxlogin_logins_total`):
/// "ok", or the kind of error it answered, whichever step refused it. The steps run in
/// this order: the app (resolved once), the client's rate limit (before the body is
/// read), the code, then WeChat and the store.
async fn login(State(state): State<AppState>, route: MatchedPath, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let app = target_app(&mut parts, &state.apps).await;
    let app_label = app.as_ref().ok().map(|app| app.name().clone());
    let answer = async {
        let app = app?;
        within_rate_limit(&parts, &state.limiter, &state.metrics)?;
        let request = Request::from_parts(parts, body);
        let LoginCode(code) = LoginCode::from_request(request, &()).await?;
        let logged_in = state.logins.login(&app, code).await?;
        Ok::<_, ApiError>(Json(LoginResponse::new(&logged_in)).into_response())
    };
    let response = answer.await.unwrap_or_else(IntoResponse::into_response);
    let outcome = response
        .extensions()
        .get::<ErrorReport>()
        .map_or("ok", |report| report.kind);
    let app = app_label.as_ref().map_or("unknown", AsRef::as_ref);
    state.metrics.login_finished(route.as_str(), app, outcome);
    response
}

// The three operations the one `login` handler serves, for the OpenAPI document: utoipa
// documents one path per function, and these differ in path and in where the code is.

/// Log in with the code from `wx.login()`.
#[utoipa::path(post, path = "/openid",
    request_body(content = CodeField, content_type = "application/json"),
    responses((status = 200, description = "Logged in.", body = LoginResponse), LoginErrors, BodyErrors, UpstreamErrors)
)]
#[allow(dead_code)]
pub(super) fn post_openid() {}

/// Log in with the code from `wx.login()`, passed as `?code=`.
#[utoipa::path(get, path = "/wechat/applet_login",
    params(("code" = String, Query, description = "The code from `wx.login()`: 1 to 128 printable ASCII characters, no spaces.", min_length = 1, max_length = 128, pattern = r"^[!-~]+$")),
    responses((status = 200, description = "Logged in.", body = LoginResponse), LoginErrors, UpstreamErrors)
)]
#[allow(dead_code)]
pub(super) fn get_applet_login() {}

/// Log in with the code from `wx.login()`, as JSON or as a form.
#[utoipa::path(post, path = "/wechat/applet_login",
    request_body(content(
        (CodeField = "application/json"),
        (CodeField = "application/x-www-form-urlencoded"),
    )),
    responses((status = 200, description = "Logged in.", body = LoginResponse), LoginErrors, BodyErrors, UpstreamErrors)
)]
#[allow(dead_code)]
pub(super) fn post_applet_login() {}
