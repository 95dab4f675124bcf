//! The other WeChat logins, emulated: `sns/oauth2/access_token`, `sns/userinfo`, and the
//! consent pages (`connect/oauth2/authorize`, `connect/qrconnect`) that hand a browser a
//! code. A code's user part names the user, as for `code2Session`; a user part starting
//! with `union` is a person with one unionid in every app, and `snapshot` is a preview-mode
//! virtual account.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use super::{CodeQuery, EmulatorState, derived_id, failure, text_plain};

/// What a consent page issued a code for: its scope. Codes made up by hand get
/// `snsapi_userinfo`, which tells the most.
#[derive(Clone)]
pub(super) struct Grant {
    openid: String,
    unionid: Option<String>,
    user: Box<str>,
    scope: &'static str,
}

pub(super) async fn access_token(
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<CodeQuery>,
) -> Response {
    let (appid, code) = match state.code_to_trade("sns", query).await {
        Ok(traded) => traded,
        Err(refused) => return refused,
    };
    let scope = state
        .consented
        .remove(code.as_str())
        .unwrap_or("snsapi_userinfo");
    let user = code.split('@').next().unwrap_or(&code);
    let openid = derived_id('o', "openid", &appid, user);
    // As WeChat: a unionid only beyond snsapi_base, and only for a bound person.
    let unionid = (scope != "snsapi_base" && user.starts_with("union"))
        .then(|| derived_id('u', "unionid", "", user));
    let token = format!(
        "emulated-user-token-{:016x}{:016x}",
        rand::rng().next_u64(),
        rand::rng().next_u64()
    );
    let mut answer = json!({
        "access_token": token,
        "expires_in": 7200,
        "refresh_token": format!("emulated-refresh-{:016x}", rand::rng().next_u64()),
        "openid": openid,
        "scope": scope,
    });
    if let Some(unionid) = &unionid {
        answer["unionid"] = unionid.as_str().into();
    }
    if user == "snapshot" {
        answer["is_snapshotuser"] = 1.into();
    }
    let grant = Grant {
        openid,
        unionid,
        user: user.into(),
        scope,
    };
    state.user_tokens.insert(token.into(), grant);
    text_plain(answer.to_string())
}

#[derive(Deserialize)]
pub(super) struct UserInfoQuery {
    access_token: Option<String>,
    openid: Option<String>,
}

pub(super) async fn user_info(
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<UserInfoQuery>,
) -> Response {
    let grant = query
        .access_token
        .as_deref()
        .and_then(|token| state.user_tokens.get(token));
    let Some(grant) = grant.filter(|g| Some(&g.openid) == query.openid.as_ref()) else {
        return failure(
            40001,
            "invalid credential, access_token is invalid or not latest",
        );
    };
    if grant.scope == "snsapi_base" {
        return failure(48001, "api unauthorized");
    }
    let mut answer = json!({
        "openid": grant.openid,
        "nickname": &*grant.user,
        "sex": 0, "province": "", "city": "", "country": "",
        "headimgurl": format!("https://emulator.invalid/avatar/{}.png", grant.user),
        "privilege": [],
    });
    if let Some(unionid) = &grant.unionid {
        answer["unionid"] = unionid.as_str().into();
    }
    text_plain(answer.to_string())
}

#[derive(Deserialize)]
pub(super) struct ConsentQuery {
    appid: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    /// The emulator's own: who consents. Without it, the page asks.
    user: Option<String>,
}

/// The consent page: with `user`, sends the browser straight back to `redirect_uri` with a
/// code for that user and the page's `state`; without, a form that asks for a name.
pub(super) async fn consent(
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<ConsentQuery>,
) -> Response {
    let known = query
        .appid
        .as_deref()
        .is_some_and(|a| state.apps.contains_key(a));
    let Some(redirect_uri) = query.redirect_uri.filter(|_| known) else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "The emulator serves no such appid, or no redirect_uri was given.",
        )
            .into_response();
    };
    let scope = match query.scope.as_deref() {
        Some("snsapi_base") => "snsapi_base",
        Some("snsapi_login") => "snsapi_login",
        _ => "snsapi_userinfo",
    };
    let Some(user) = query.user.filter(|u| !u.is_empty() && !u.contains('@')) else {
        return Html(CONSENT_FORM).into_response();
    };
    let code = format!("{user}@{:016x}", rand::rng().next_u64());
    state.consented.insert(code.clone().into(), scope);
    let Ok(mut back) = reqwest::Url::parse(&redirect_uri) else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "redirect_uri is not a URL",
        )
            .into_response();
    };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", query.state.as_deref().unwrap_or_default());
    let mut response = Redirect::to(back.as_str()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Asks who consents, and sends the same query back with `user` added.
const CONSENT_FORM: &str = r#"<!doctype html><meta charset="utf-8"><title>WeChat emulator: consent</title>
<form method="get"><p>Log in as <input name="user" value="union_alice" autofocus> (a name starting with <code>union</code> has a unionid; <code>snapshot</code> is a preview-mode user)</p>
<button>Allow</button></form>
<script>for (const [k, v] of new URLSearchParams(location.search)) { if (k !== 'user') { const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; document.forms[0].append(i); } }</script>"#;
