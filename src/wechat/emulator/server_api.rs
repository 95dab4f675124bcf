//! The APIs behind an access_token, emulated: `stable_token` issues one (and counts the
//! requests), `getuserphonenumber` and `checksession` insist on it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{EmulatorState, failure, text_plain};
use crate::clock::Clock;
use crate::wechat::open_data::check_session_signature;

/// WeChat's tokens last two hours.
const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

pub(super) struct IssuedToken {
    token: String,
    expires: Instant,
}

#[derive(Deserialize)]
pub(super) struct StableTokenRequest {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

/// `POST /cgi-bin/stable_token`. In normal mode it hands out the current token while it
/// lasts, so every caller gets the same one; `force_refresh` replaces it.
pub(super) async fn stable_token(State(state): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    state.stable_token_requests.fetch_add(1, Ordering::Relaxed);
    // WeChat reads only a JSON body: a form arrives as "no appid".
    let Ok(request) = serde_json::from_slice::<StableTokenRequest>(&body) else {
        return failure(41002, "appid missing");
    };
    if let Some(refused) =
        state.refuse_credentials(request.appid.as_deref(), request.secret.as_deref())
    {
        return refused;
    }
    if request.grant_type.as_deref() != Some("client_credential") {
        return failure(40002, "invalid grant_type");
    }
    let now = Instant::now();
    let appid = request.appid.unwrap_or_default();
    let mut tokens = state
        .access_tokens
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let fresh = || IssuedToken {
        token: format!("EMULATED_ACCESS_TOKEN_{:016x}", rand::rng().next_u64()),
        expires: now + TOKEN_LIFETIME,
    };
    let current = tokens.entry(appid).or_insert_with(fresh);
    if current.expires <= now || request.force_refresh {
        *current = fresh();
    }
    let issued = &*current;
    let expires_in = issued.expires.saturating_duration_since(now).as_secs();
    text_plain(json!({ "access_token": issued.token, "expires_in": expires_in }).to_string())
}

/// The appid whose current access_token `token` is, or the errcode answer for a missing,
/// unknown or expired one.
fn app_of_token(state: &EmulatorState, token: Option<&str>) -> Result<String, Box<Response>> {
    let Some(token) = token else {
        return Err(Box::new(failure(41001, "access_token missing")));
    };
    let tokens = state
        .access_tokens
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match tokens.iter().find(|(_, issued)| issued.token == token) {
        Some((appid, issued)) if issued.expires > Instant::now() => Ok(appid.clone()),
        Some(_) => Err(Box::new(failure(42001, "access_token expired"))),
        None => Err(Box::new(failure(
            40001,
            "invalid credential, access_token is invalid or not latest",
        ))),
    }
}

#[derive(Deserialize)]
pub(super) struct TokenQuery {
    access_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PhoneCodeBody {
    code: Option<String>,
}

/// `POST /wxa/business/getuserphonenumber`: a made-up mainland number, the same for the
/// same code, with the watermark of this app. The magic codes fail as they do at login.
pub(super) async fn phone_number(
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let appid = match app_of_token(&state, query.access_token.as_deref()) {
        Ok(appid) => appid,
        Err(rejected) => return *rejected,
    };
    let code = serde_json::from_slice::<PhoneCodeBody>(&body)
        .ok()
        .and_then(|body| body.code)
        .filter(|code| !code.is_empty());
    let Some(code) = code else {
        return failure(47001, "data format error");
    };
    if let Some(refused) = state.refuse_code("phone", &code, &appid).await {
        return refused;
    }
    let digest = Sha256::digest(format!("wxlogin-emulator/phone/{code}"));
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&digest[..8]);
    let number = format!("138{:08}", u64::from_be_bytes(eight) % 100_000_000);
    let timestamp = Clock::System.now();
    text_plain(
        json!({
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": number,
                "purePhoneNumber": number,
                "countryCode": "86",
                "watermark": { "timestamp": timestamp, "appid": appid },
            },
        })
        .to_string(),
    )
}

#[derive(Deserialize)]
pub(super) struct CheckSessionQuery {
    access_token: Option<String>,
    openid: Option<String>,
    signature: Option<String>,
    sig_method: Option<String>,
}

/// `GET /wxa/checksession`: 0 when the signature is the HMAC of the openid's newest
/// session_key, 87009 when it is not.
pub(super) async fn check_session(
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<CheckSessionQuery>,
) -> Response {
    let appid = match app_of_token(&state, query.access_token.as_deref()) {
        Ok(appid) => appid,
        Err(rejected) => return *rejected,
    };
    if query.sig_method.as_deref() != Some("hmac_sha256") {
        return failure(40097, "invalid args, sig_method");
    }
    let Some(user) = query
        .openid
        .and_then(|openid| state.users.get(openid.as_str()))
        .filter(|user| *user.appid == *appid)
    else {
        return failure(40003, "invalid openid");
    };
    let expected = check_session_signature(&user.session_key);
    if query.signature.as_deref() == Some(expected.as_str()) {
        text_plain(json!({ "errcode": 0, "errmsg": "ok" }).to_string())
    } else {
        failure(87009, "invalid signature")
    }
}
