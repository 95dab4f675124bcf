//! Routes that exist only on the emulator, for developers and tests:
//!
//! - `GET /dev/user_info?openid=…` hands out what `wx.getUserInfo` would give the
//!   mini-program of a logged-in user: `rawData` with its `signature`, and a sample user-info
//!   object sealed in `encryptedData` with `iv`, all under that user's newest session_key.
//!   A front-end developer can exercise `/wechat/verify_signature` and `/wechat/decrypt`
//!   with no phone.
//! - `GET /dev/stats` counts `stable_token` requests, so tests can see the single flight.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use super::EmulatorState;
use crate::clock::Clock;
use crate::wechat::open_data::{encrypt, raw_data_signature};

#[derive(Deserialize)]
pub(super) struct UserInfoQuery {
    openid: Option<String>,
}

pub(super) async fn user_info(
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<UserInfoQuery>,
) -> Response {
    let Some((openid, user)) = query
        .openid
        .and_then(|openid| state.users.get(openid.as_str()).map(|user| (openid, user)))
    else {
        let message = "No user with this openid has logged in: log in first, and pass the openid the login answered.";
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "unknown_openid", "message": message })),
        )
            .into_response();
    };
    let profile = json!({
        "nickName": "Emulated User",
        "gender": 0,
        "language": "zh_CN",
        "city": "Guangzhou",
        "province": "Guangdong",
        "country": "China",
        "avatarUrl": "https://thirdwx.qlogo.cn/mmopen/vi_32/emulated/132",
    });
    let raw_data = profile.to_string();
    let signature = raw_data_signature(&raw_data, &user.session_key);
    let mut sealed = profile;
    sealed["openId"] = openid.into();
    if let Some(unionid) = user.unionid {
        sealed["unionId"] = unionid.into();
    }
    let timestamp = Clock::System.now();
    sealed["watermark"] = json!({ "timestamp": timestamp, "appid": &*user.appid });
    let mut iv = [0u8; 16];
    rand::rng().fill_bytes(&mut iv);
    let encrypted = encrypt(sealed.to_string().as_bytes(), &user.session_key, &iv);
    Json(json!({
        "rawData": raw_data,
        "signature": signature,
        "encryptedData": STANDARD.encode(encrypted),
        "iv": STANDARD.encode(iv),
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct LoginCodeQuery {
    appid: Option<String>,
    user: Option<String>,
}

/// `GET /dev/login_code?appid=…&user=…`: what `wx.login()` gives a mini-program, a code
/// good once for that app only (another app's code answers 40029, as on WeChat). `user`
/// names the user (`alice` gives alice's openid); without one, a new user.
pub(super) async fn login_code(
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<LoginCodeQuery>,
) -> Response {
    let Some(appid) = query.appid.filter(|appid| state.apps.contains_key(appid)) else {
        let message = "Name the app the code is for: ?appid= one of the emulator's apps.";
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "unknown_appid", "message": message })),
        )
            .into_response();
    };
    let user = query
        .user
        .filter(|user| !user.is_empty() && !user.contains('@'))
        .unwrap_or_else(|| format!("user{:08x}", rand::rng().next_u32()));
    let code = format!("{user}@{:016x}", rand::rng().next_u64());
    state
        .issued_codes
        .insert(code.as_str().into(), appid.into());
    Json(json!({ "code": code })).into_response()
}

pub(super) async fn stats(State(state): State<Arc<EmulatorState>>) -> Json<serde_json::Value> {
    Json(json!({
        "stable_token_requests": state.stable_token_requests.load(Ordering::Relaxed),
    }))
}
