//! The open-data routes: what a logged-in user's mini-program hands over (signed rawData,
//! encryptedData, a phone code), checked and opened with the session's session_key, which
//! never leaves the server.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, JsonShape, LiveSession};
use crate::wechat::open_data::{decrypt, signature_matches};
use crate::wechat::{AccessTokens, PhoneCode, PhoneNumber, WeChatClient};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/wechat/verify_signature", post(verify_signature))
        .route("/wechat/decrypt", post(decrypt_data))
        .route("/wechat/phone_number", post(phone_number))
        .route("/wechat/check_session", get(check_session))
}

#[derive(Serialize)]
struct Validity {
    valid: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedData {
    raw_data: String,
    signature: String,
}

impl JsonShape for SignedData {
    const EXPECTED: &'static str =
        r#"{"rawData": "…", "signature": "…"} as wx.getUserInfo returned them"#;
}

/// Whether rawData is what WeChat signed for this user. `raw_data` is the exact string
/// the client sent: JSON parsing of the outer body keeps its bytes.
async fn verify_signature(
    LiveSession(session): LiveSession,
    JsonBody(body): JsonBody<SignedData>,
) -> Result<Json<Validity>, ApiError> {
    if signature_matches(&body.raw_data, &body.signature, &session.session_key()) {
        Ok(Json(Validity { valid: true }))
    } else {
        Err(ApiError::InvalidSignature)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptedData {
    encrypted_data: String,
    iv: String,
}

impl JsonShape for EncryptedData {
    const EXPECTED: &'static str = r#"{"encryptedData": "…", "iv": "…"} as WeChat returned them"#;
}

#[derive(Serialize)]
struct Decrypted {
    /// The JSON object WeChat sealed, byte for byte.
    data: Box<RawValue>,
}

async fn decrypt_data(
    State(wechat): State<WeChatClient>,
    LiveSession(session): LiveSession,
    JsonBody(body): JsonBody<EncryptedData>,
) -> Result<Json<Decrypted>, ApiError> {
    let data = decrypt(
        &body.encrypted_data,
        &body.iv,
        &session.session_key(),
        wechat.appid(),
    )?;
    Ok(Json(Decrypted { data }))
}

#[derive(Deserialize)]
struct PhoneCodeField {
    code: Option<String>,
}

impl JsonShape for PhoneCodeField {
    const EXPECTED: &'static str = r#"{"code": "…"} with the code from the getPhoneNumber button"#;
}

/// The phone number behind a `getPhoneNumber` code. It takes a session token as well, so
/// only logged-in users spend the mini-program's quota.
async fn phone_number(
    State(wechat): State<WeChatClient>,
    State(access_tokens): State<AccessTokens>,
    LiveSession(_): LiveSession,
    JsonBody(body): JsonBody<PhoneCodeField>,
) -> Result<Json<PhoneNumber>, ApiError> {
    let code = PhoneCode::parse(body.code.as_deref())?;
    let phone = access_tokens
        .call(|token| {
            let (wechat, code) = (&wechat, &code);
            async move { wechat.phone_number(&token, code).await }
        })
        .await?;
    Ok(Json(phone))
}

/// Whether WeChat still holds this session's session_key as the user's current one.
async fn check_session(
    State(wechat): State<WeChatClient>,
    State(access_tokens): State<AccessTokens>,
    LiveSession(session): LiveSession,
) -> Result<Json<Validity>, ApiError> {
    let key = session.session_key();
    let valid = access_tokens
        .call(|token| {
            let (wechat, session) = (&wechat, &session);
            async move { wechat.check_session(&token, &session.openid, &key).await }
        })
        .await?;
    Ok(Json(Validity { valid }))
}
