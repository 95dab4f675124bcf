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
use super::error::responses::{
    BodyErrors, CheckSessionErrors, OpenDataErrors, ServerApiErrors, UpstreamErrors,
};
use super::extract::{JsonBody, JsonShape, UserSession};
use super::rate_limit::WithinRateLimit;
use crate::domain::PhoneCode;
use crate::session::SessionStore;
use crate::wechat::PhoneNumber;
use crate::wechat::open_data::{decrypt, signature_matches};

/// The one user-data route under the per-IP rate limit (it spends the app's WeChat quota),
/// as the metrics name it. The router spells it out, where the OpenAPI test reads it.
pub const PHONE_NUMBER_ROUTE: &str = "/wechat/phone_number";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/wechat/verify_signature", post(verify_signature))
        .route("/wechat/decrypt", post(decrypt_data))
        .route("/wechat/phone_number", post(phone_number))
        .route("/wechat/check_session", get(check_session))
        .route_layer(super::no_store_per_token())
}

/// Whether a check passed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Validity {
    valid: bool,
}

/// rawData and signature, as `wx.getUserInfo` returned them. Other fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedData {
    /// The exact string WeChat signed: re-serialising it changes its bytes.
    raw_data: String,
    /// SHA-1 in hex: 40 characters, either case.
    #[schema(pattern = r"^[0-9a-fA-F]{40}$")]
    signature: String,
}

impl JsonShape for SignedData {
    const EXPECTED: &'static str =
        r#"{"rawData": "…", "signature": "…"} as wx.getUserInfo returned them"#;
}

/// Whether rawData is what WeChat signed for this user. `raw_data` is the exact string
/// the client sent: JSON parsing of the outer body keeps its bytes.
#[utoipa::path(post, path = "/wechat/verify_signature",
    request_body(content = SignedData, content_type = "application/json"),
    responses((status = 200, description = "The signature matches (a mismatch is a 400 `invalid_signature`).", body = Validity), OpenDataErrors, BodyErrors)
)]
pub(super) async fn verify_signature(
    State(sessions): State<SessionStore>,
    user: UserSession,
    JsonBody(body): JsonBody<SignedData>,
) -> Result<Json<Validity>, ApiError> {
    let user = user.of_mini_program()?;
    let key = sessions.session_key(&user.session).await?;
    if signature_matches(&body.raw_data, &body.signature, &key) {
        Ok(Json(Validity { valid: true }))
    } else {
        Err(ApiError::InvalidSignature)
    }
}

/// encryptedData and iv, as WeChat returned them: standard base64 (the server also takes it
/// wrapped, with whitespace). Other fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedData {
    /// A whole number of 16-byte AES blocks.
    #[schema(
        pattern = r"^(?:(?:[A-Za-z0-9+/]{64})+(?:[A-Za-z0-9+/]{21}[AQgw]==|[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)?|[A-Za-z0-9+/]{21}[AQgw]==|[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)$",
        max_length = 16000
    )]
    encrypted_data: String,
    /// 16 bytes.
    #[schema(pattern = r"^[A-Za-z0-9+/]{21}[AQgw]==$")]
    iv: String,
}

impl JsonShape for EncryptedData {
    const EXPECTED: &'static str = r#"{"encryptedData": "…", "iv": "…"} as WeChat returned them"#;
}

/// The opened data.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Decrypted {
    /// The JSON object WeChat sealed, byte for byte, its watermark included.
    #[schema(value_type = Object)]
    data: Box<RawValue>,
}

/// Opens encryptedData with the session's session_key (AES-128-CBC), and checks that its
/// watermark names this mini-program.
#[utoipa::path(post, path = "/wechat/decrypt",
    request_body(content = EncryptedData, content_type = "application/json"),
    responses((status = 200, description = "Decrypted.", body = Decrypted), OpenDataErrors, BodyErrors)
)]
pub(super) async fn decrypt_data(
    State(sessions): State<SessionStore>,
    user: UserSession,
    JsonBody(body): JsonBody<EncryptedData>,
) -> Result<Json<Decrypted>, ApiError> {
    let user = user.of_mini_program()?;
    let key = sessions.session_key(&user.session).await?;
    let data = decrypt(
        &body.encrypted_data,
        &body.iv,
        &key,
        user.app.appid(),
        user.session.openid().as_ref(),
    )?;
    Ok(Json(Decrypted { data }))
}

/// The code from the `getPhoneNumber` button. Other fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct PhoneCodeField {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 128, pattern = r"^[!-~]+$")]
    code: Option<String>,
}

impl JsonShape for PhoneCodeField {
    const EXPECTED: &'static str = r#"{"code": "…"} with the code from the getPhoneNumber button"#;
}

/// The phone number behind a `getPhoneNumber` code. It takes a session token as well, so
/// only logged-in users spend the mini-program's quota.
#[utoipa::path(post, path = "/wechat/phone_number",
    request_body(content = PhoneCodeField, content_type = "application/json"),
    responses((status = 200, description = "The phone number WeChat vouches for.", body = PhoneNumber), ServerApiErrors, BodyErrors, UpstreamErrors)
)]
pub(super) async fn phone_number(
    _: WithinRateLimit,
    user: UserSession,
    JsonBody(body): JsonBody<PhoneCodeField>,
) -> Result<Json<PhoneNumber>, ApiError> {
    let UserSession { app, .. } = user.of_mini_program()?;
    let code = PhoneCode::parse(body.code.as_deref())?;
    let wechat = &app.wechat;
    let phone = app
        .access_tokens
        .call(|token| {
            let code = &code;
            async move { wechat.phone_number(&token, code).await }
        })
        .await?;
    Ok(Json(phone))
}

/// Whether WeChat still holds this session's session_key as the user's current one.
#[utoipa::path(get, path = "/wechat/check_session",
    responses((status = 200, description = "`valid` is false when the user has logged in again elsewhere since.", body = Validity), CheckSessionErrors, UpstreamErrors)
)]
pub(super) async fn check_session(
    State(sessions): State<SessionStore>,
    user: UserSession,
) -> Result<Json<Validity>, ApiError> {
    let UserSession { session, app } = user.of_mini_program()?;
    let key = sessions.session_key(&session).await?;
    let (wechat, session) = (&app.wechat, &session);
    let valid = app
        .access_tokens
        .call(|token| async move {
            wechat
                .check_session(&token, session.openid().as_ref(), &key)
                .await
        })
        .await?;
    Ok(Json(Validity { valid }))
}
