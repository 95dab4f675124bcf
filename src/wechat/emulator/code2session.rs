//! `auth.code2Session`, emulated.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use serde_json::json;

use super::{CodeQuery, EmulatorState, IssuedUser, derived_id, failure, text_plain};
use crate::domain::SessionKey;

pub(super) async fn jscode2session(
    method: Method,
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<CodeQuery>,
) -> Response {
    if method != Method::GET {
        return failure(43001, "require GET method");
    }
    let (appid, code) = match state.code_to_trade("login", query).await {
        Ok(traded) => traded,
        Err(refused) => return refused,
    };
    let user = code.split('@').next().unwrap_or(&code);
    let mut session_key = [0u8; 16];
    rand::rng().fill_bytes(&mut session_key);
    let openid = derived_id('o', "openid", &appid, user);
    let mut answer = json!({
        "openid": openid,
        "session_key": STANDARD.encode(session_key),
    });
    // A unionid is the same in every app of one Open Platform account: no appid in it.
    let unionid = user
        .starts_with("union")
        .then(|| derived_id('u', "unionid", "", user));
    if let Some(unionid) = &unionid {
        answer["unionid"] = unionid.as_str().into();
    }
    let issued = IssuedUser {
        appid: appid.into(),
        session_key: SessionKey::from_bytes(session_key),
        unionid,
    };
    state.users.insert(openid.into(), issued);
    text_plain(answer.to_string())
}
