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
    sealed["watermark"] = json!({ "timestamp": timestamp, "appid": state.appid });
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

pub(super) async fn stats(State(state): State<Arc<EmulatorState>>) -> Json<serde_json::Value> {
    Json(json!({
        "stable_token_requests": state.stable_token_requests.load(Ordering::Relaxed),
    }))
}
