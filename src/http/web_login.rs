//! The web-login helper, for H5 (official account) and QR (website) pages that want
//! wxlogin to run the whole browser flow: `authorize` sends the browser to WeChat's
//! consent page with an unguessable, single-use `state` bound to the browser by an
//! HttpOnly cookie; `callback` checks both, trades the code, and sends the browser back to
//! the page with the session in the `WXLOGIN_AUTH_COOKIE` cookie, never in a URL.

use axum::Router;
use axum::extract::{MatchedPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::error::responses::{UnknownAppErrors, WebLoginErrors};
use super::extract::NamedApp;
use super::forward_auth::cookie_value;
use super::rate_limit::WithinRateLimit;
use crate::apps::App;
use crate::domain::{AppKind, JsCode};
use crate::session::{PENDING_LOGIN_TTL, SessionToken};

/// The cookie that binds a login under way to the browser that started it.
const BINDING_COOKIE: &str = "wxlogin_web_login";

/// wxlogin's public base URL and WeChat's consent pages', for the links it makes.
pub struct WebLogin {
    pub public_url: String,
    pub open_base_url: String,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/oauth/authorize", get(authorize))
        .route("/apps/{app}/oauth/callback", get(callback))
        .route_layer(super::no_store())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuthorizeQuery {
    /// Where to send the browser back to: one of the app's `WXLOGIN_APP_<NAME>_REDIRECT_URIS`, exactly.
    redirect_uri: Option<String>,
    /// `snsapi_base` (the default) or `snsapi_userinfo` for an official account;
    /// `snsapi_login` (the default, and the only one) for a website.
    scope: Option<String>,
}

/// What is remembered of a login under way, by the hash of its state.
#[derive(Serialize, Deserialize)]
struct Pending {
    app: String,
    redirect_uri: String,
    /// The hash of the browser's binding cookie.
    binding: String,
    /// By the stores' clock, in Unix seconds.
    expires_at: u64,
}

/// Sends the browser to WeChat's consent page for the app, with wxlogin's callback as
/// WeChat's `redirect_uri`.
#[utoipa::path(get, path = "/apps/{app}/oauth/authorize",
    params(("app" = String, Path, description = "The app's name or appid."), AuthorizeQuery),
    responses(
        (status = 303, description = "To WeChat's consent page (`Location`), with the binding cookie set (`Set-Cookie`, HttpOnly)."),
        WebLoginErrors, UnknownAppErrors
    )
)]
pub(super) async fn authorize(
    State(state): State<AppState>,
    _: WithinRateLimit,
    named: NamedApp,
    Query(query): Query<AuthorizeQuery>,
) -> Result<Response, ApiError> {
    let app = named.required()?;
    let kind = app.kind();
    if !kind.has_consent_page() {
        return Err(ApiError::needs_consent_page(app.name(), kind));
    }
    let redirect_uri = query
        .redirect_uri
        .filter(|uri| app.redirect_uris.iter().any(|allowed| allowed == uri))
        .ok_or(ApiError::INVALID_REDIRECT_URI)?;
    let scope = match (kind, query.scope.as_deref()) {
        (AppKind::OfficialAccount, None | Some("snsapi_base")) => "snsapi_base",
        (AppKind::OfficialAccount, Some("snsapi_userinfo")) => "snsapi_userinfo",
        (AppKind::Website, None | Some("snsapi_login")) => "snsapi_login",
        _ => return Err(ApiError::INVALID_SCOPE),
    };
    let (login_state, binding) = (SessionToken::generate(), SessionToken::generate());
    let pending = Pending {
        app: app.name().to_string(),
        redirect_uri,
        binding: binding.hash().to_hex(),
        expires_at: state.sessions.now() + PENDING_LOGIN_TTL.as_secs(),
    };
    let record = serde_json::to_string(&pending).map_err(|_| ApiError::Internal)?;
    state
        .sessions
        .put_pending_login(&login_state.hash().to_hex(), record)
        .await?;
    let consent = consent_url(&state.web_login, &app, scope, login_state.expose());
    let mut response = Redirect::to(consent.as_str()).into_response();
    set_cookie(
        response.headers_mut(),
        BINDING_COOKIE,
        binding.expose(),
        &binding_path(&app),
        PENDING_LOGIN_TTL.as_secs(),
    );
    Ok(response)
}

/// WeChat's consent page for `app`, which sends the browser back to our callback. WeChat
/// reads the parameters in this order, and needs the `#wechat_redirect`.
fn consent_url(web: &WebLogin, app: &App, scope: &str, state: &str) -> reqwest::Url {
    let page = match app.kind() {
        AppKind::Website => "/connect/qrconnect",
        _ => "/connect/oauth2/authorize",
    };
    let callback = format!("{}/apps/{}/oauth/callback", web.public_url, app.name());
    let mut url = reqwest::Url::parse(&format!("{}{page}", web.open_base_url))
        .expect("the open base URL was checked at start-up");
    url.query_pairs_mut()
        .append_pair("appid", app.appid())
        .append_pair("redirect_uri", &callback)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("state", state);
    url.set_fragment(Some("wechat_redirect"));
    url
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CallbackQuery {
    /// WeChat's code; absent when the user declined.
    code: Option<String>,
    /// The state `authorize` made.
    state: Option<String>,
}

/// Where WeChat sends the browser back: checks the state against the binding cookie,
/// trades the code, and sends the browser to the page with the session in the
/// `WXLOGIN_AUTH_COOKIE` cookie, or with `?error=<kind>` when the login failed.
#[utoipa::path(get, path = "/apps/{app}/oauth/callback",
    params(("app" = String, Path, description = "The app's name or appid."), CallbackQuery),
    responses(
        (status = 303, description = "Back to the page's redirect_uri (`Location`): logged in, with the session in the `WXLOGIN_AUTH_COOKIE` cookie (HttpOnly, Secure, SameSite=Lax), or with `?error=<kind>`."),
        WebLoginErrors, UnknownAppErrors
    )
)]
pub(super) async fn callback(
    State(state): State<AppState>,
    route: MatchedPath,
    named: NamedApp,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, ApiError> {
    let app = named.required()?;
    let login_state = query
        .state
        .as_deref()
        .and_then(SessionToken::parse)
        .ok_or(ApiError::INVALID_STATE)?;
    let binding = cookie_value(&headers, BINDING_COOKIE)
        .and_then(SessionToken::parse)
        .ok_or(ApiError::INVALID_STATE)?;
    // Taken before anything else: a state is good for one callback, whatever comes of it.
    let record = state
        .sessions
        .take_pending_login(&login_state.hash().to_hex())
        .await?
        .ok_or(ApiError::INVALID_STATE)?;
    let pending: Pending = serde_json::from_str(&record).map_err(|_| ApiError::INVALID_STATE)?;
    let bound = pending.binding == binding.hash().to_hex()
        && pending.app == app.name().as_ref()
        && pending.expires_at > state.sessions.now();
    if !bound {
        return Err(ApiError::INVALID_STATE);
    }
    let outcome = match query.code.as_deref() {
        // The user declined on WeChat's consent page.
        None => Err("access_denied"),
        Some(raw) => match JsCode::parse(Some(raw)) {
            Err(err) => Err(ApiError::from(err).answer().kind),
            Ok(code) => state
                .logins
                .login(&app, code)
                .await
                .map_err(|err| ApiError::from(err).answer().kind),
        },
    };
    let label = match &outcome {
        Ok(_) => "ok",
        Err(kind) => kind,
    };
    state
        .metrics
        .login_finished(route.as_str(), app.name().as_ref(), label);
    let mut back = reqwest::Url::parse(&pending.redirect_uri).map_err(|_| ApiError::Internal)?;
    let cookie_name = state.auth_cookie.0.clone();
    let mut response = match (outcome, cookie_name) {
        (Ok(logged_in), Some(name)) => {
            let mut response = Redirect::to(back.as_str()).into_response();
            set_cookie(
                response.headers_mut(),
                &name,
                logged_in.session.token.expose(),
                "/",
                logged_in.session.expires_in,
            );
            response
        }
        (Ok(_), None) => return Err(ApiError::Internal),
        (Err(kind), _) => {
            back.query_pairs_mut().append_pair("error", kind);
            Redirect::to(back.as_str()).into_response()
        }
    };
    set_cookie(
        response.headers_mut(),
        BINDING_COOKIE,
        "",
        &binding_path(&app),
        0,
    );
    Ok(response)
}

/// Where the binding cookie is sent: the app's two helper routes, nowhere else.
fn binding_path(app: &App) -> String {
    format!("/apps/{}/oauth", app.name())
}

/// Sets a cookie only this server reads (HttpOnly), only over HTTPS, and sent on the
/// top-level navigation back from WeChat (SameSite=Lax); `max_age` 0 removes it.
fn set_cookie(headers: &mut HeaderMap, name: &str, value: &str, path: &str, max_age: u64) {
    let cookie =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax");
    // Every part is ours or checked (a token's base64url, an app name, a number).
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, value);
    }
}
