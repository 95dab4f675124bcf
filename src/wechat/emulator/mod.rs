//! A WeChat stand-in for development: a real HTTP server on a loopback port that answers
//! the APIs wxlogin calls with WeChat's semantics, so the client under test is the
//! production client, unchanged.
//!
//! Login (`/sns/jscode2session`):
//! - Any code of 1–128 printable characters logs a user in. The openid comes from the code's
//!   *user part*, the text before the first `@` (the whole code if there is none), so
//!   `alice@1` and `alice@2` are the same user, while random codes are distinct users.
//! - A user part starting with `union` also gets a unionid (as if the mini-program were
//!   bound to an Open Platform account); others get none, as most mini-programs do.
//! - Each code works once; using it again answers 40163.
//! - The magic codes in [`MAGIC_CODES`] answer a fixed failure every time.
//! - Answers are JSON labelled `text/plain`, as WeChat's are.
//!
//! The other logins (`/sns/oauth2/access_token`, `/sns/userinfo` and the consent pages)
//! are in `sns.rs`: one emulated person has the same unionid in every app.
//!
//! The APIs behind an access_token (`/cgi-bin/stable_token`, `getuserphonenumber`,
//! `checksession`) are in `server_api.rs`, and the routes that only a developer needs
//! (`/dev/user_info` for encryptedData, `/dev/stats`) in `dev.rs`.

mod code2session;
mod dev;
mod server_api;
mod sns;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::sync::Cache;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::Credentials;
use crate::domain::MAX_JS_CODE_LEN;
use crate::domain::SessionKey;

/// How long the emulator remembers a used code; WeChat's codes expire after 5 minutes.
const USED_CODE_MEMORY: Duration = Duration::from_secs(10 * 60);

/// The query of a call that trades a login code: `js_code` for `code2Session`, `code` for
/// the other logins.
#[derive(serde::Deserialize)]
struct CodeQuery {
    appid: Option<String>,
    secret: Option<String>,
    #[serde(alias = "js_code")]
    code: Option<String>,
    grant_type: Option<String>,
}

/// What a magic code makes the emulator answer, every time it is used.
#[derive(Debug, Clone, Copy)]
pub enum MagicAnswer {
    /// HTTP 200 with this errcode and errmsg.
    Errcode(i64, &'static str),
    /// An HTML error page, as a misbehaving proxy sends.
    Html,
    /// No answer for a minute: longer than any sane client timeout.
    Silence,
}

/// Codes that let a front-end developer trigger each failure on purpose.
pub const MAGIC_CODES: &[(&str, MagicAnswer)] = &[
    ("invalid", MagicAnswer::Errcode(40029, "invalid code")),
    ("used", MagicAnswer::Errcode(40163, "code been used")),
    (
        "blocked",
        MagicAnswer::Errcode(40226, "high risk user, login blocked"),
    ),
    (
        "ratelimited",
        MagicAnswer::Errcode(
            45011,
            "api minute-quota reach limit mustslower retry next minute",
        ),
    ),
    ("busy", MagicAnswer::Errcode(-1, "system error")),
    (
        "misconfigured",
        MagicAnswer::Errcode(40125, "invalid appsecret"),
    ),
    (
        "unknownerror",
        MagicAnswer::Errcode(99999, "an errcode the emulator made up"),
    ),
    ("html", MagicAnswer::Html),
    ("timeout", MagicAnswer::Silence),
];

/// A running emulator. It stops when this is dropped.
pub struct Emulator {
    base_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// Serves the emulator on `addr` (port 0 picks a free one), for the apps `apps`: each
    /// appid with its secret.
    pub async fn start(addr: SocketAddr, apps: Vec<Credentials>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = router(apps);
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "the WeChat emulator stopped");
            }
        });
        Ok(Self { base_url, server })
    }

    /// Where to point `wechat_base_url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct EmulatorState {
    /// Each app's secret, by appid.
    apps: HashMap<String, SecretString>,
    /// Login and phone codes that were used (as `login:…` and `phone:…`), and the appid
    /// they were used with: a code is good for the app it was issued to, once.
    used_codes: Cache<Box<str>, Box<str>>,
    /// Codes handed out by `/dev/login_code`, and the appid they were issued to.
    issued_codes: Cache<Box<str>, Box<str>>,
    /// What the emulator last issued to each openid, for the APIs that check it. openids
    /// differ between apps, as WeChat's do.
    users: Cache<Box<str>, IssuedUser>,
    /// Each app's stable access_token, while it lasts, by appid.
    access_tokens: Mutex<HashMap<String, server_api::IssuedToken>>,
    stable_token_requests: AtomicU64,
    /// The scope each consent-page code was issued for.
    consented: Cache<Box<str>, &'static str>,
    /// The users' own access_tokens, for `sns/userinfo`.
    user_tokens: Cache<Box<str>, sns::Grant>,
}

#[derive(Clone)]
struct IssuedUser {
    appid: Box<str>,
    /// The newest one: issuing a new one retires the old, as WeChat does.
    session_key: SessionKey,
    unionid: Option<String>,
}

impl EmulatorState {
    /// WeChat's answer to missing or wrong credentials, if they are.
    fn refuse_credentials(&self, appid: Option<&str>, secret: Option<&str>) -> Option<Response> {
        let Some(appid) = appid else {
            return Some(failure(41002, "appid missing"));
        };
        let Some(secret) = secret else {
            return Some(failure(41004, "appsecret missing"));
        };
        let Some(expected) = self.apps.get(appid) else {
            return Some(failure(40013, "invalid appid"));
        };
        if secret != expected.expose_secret() {
            return Some(failure(40125, "invalid appsecret"));
        }
        None
    }

    /// The appid and the code of a call that trades a login code for `api`, or WeChat's
    /// answer to its missing or wrong credentials, grant_type or code, checked in WeChat's
    /// order; the code is then spent.
    async fn code_to_trade(
        &self,
        api: &str,
        query: CodeQuery,
    ) -> Result<(String, String), Response> {
        if let Some(refused) =
            self.refuse_credentials(query.appid.as_deref(), query.secret.as_deref())
        {
            return Err(refused);
        }
        if query.grant_type.as_deref() != Some("authorization_code") {
            return Err(failure(40002, "invalid grant_type"));
        }
        let code = query
            .code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| failure(41008, "missing code"))?;
        let appid = query.appid.unwrap_or_default();
        match self.refuse_code(api, &code, &appid).await {
            Some(refused) => Err(refused),
            None => Ok((appid, code)),
        }
    }

    /// WeChat's answer to a one-time `code` for `api` of the app `appid` that is
    /// malformed, magic, another app's or used, if it is any of those; otherwise marks it
    /// used by that app.
    async fn refuse_code(&self, api: &str, code: &str, appid: &str) -> Option<Response> {
        if code.len() > MAX_JS_CODE_LEN || !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Some(failure(40029, "invalid code"));
        }
        if let Some(answer) = magic(code).await {
            return Some(answer);
        }
        if self
            .issued_codes
            .get(code)
            .is_some_and(|issued_to| &*issued_to != appid)
        {
            return Some(failure(40029, "invalid code"));
        }
        let used = self
            .used_codes
            .entry(format!("{api}:{code}").into())
            .or_insert_with(|| appid.into());
        match used.is_fresh() {
            true => None,
            false if &**used.value() == appid => Some(failure(40163, "code been used")),
            // Spent by another app: to this one it was never a code.
            false => Some(failure(40029, "invalid code")),
        }
    }
}

pub fn router(apps: Vec<Credentials>) -> Router {
    fn remembered<V: Clone + Send + Sync + 'static>() -> Cache<Box<str>, V> {
        Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(USED_CODE_MEMORY)
            .build()
    }
    let state = EmulatorState {
        apps: apps
            .into_iter()
            .map(|app| (app.appid, app.secret))
            .collect(),
        used_codes: remembered(),
        issued_codes: remembered(),
        users: Cache::builder().max_capacity(1_000_000).build(),
        access_tokens: Mutex::new(HashMap::new()),
        stable_token_requests: AtomicU64::new(0),
        consented: remembered(),
        user_tokens: remembered(),
    };
    Router::new()
        .route("/sns/jscode2session", any(code2session::jscode2session))
        .route("/cgi-bin/stable_token", post(server_api::stable_token))
        .route(
            "/wxa/business/getuserphonenumber",
            post(server_api::phone_number),
        )
        .route("/wxa/checksession", get(server_api::check_session))
        .route("/sns/oauth2/access_token", get(sns::access_token))
        .route("/sns/userinfo", get(sns::user_info))
        .route("/connect/oauth2/authorize", get(sns::consent))
        .route("/connect/qrconnect", get(sns::consent))
        .route("/dev/login_code", get(dev::login_code))
        .route("/dev/user_info", get(dev::user_info))
        .route("/dev/stats", get(dev::stats))
        .with_state(Arc::new(state))
}

/// The fixed answer of a magic code, if `code` is one.
async fn magic(code: &str) -> Option<Response> {
    let (_, answer) = MAGIC_CODES.iter().find(|(magic, _)| *magic == code)?;
    Some(match *answer {
        MagicAnswer::Errcode(errcode, errmsg) => failure(errcode, errmsg),
        MagicAnswer::Html => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        MagicAnswer::Silence => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            failure(-1, "system error")
        }
    })
}

/// 28 characters of `[A-Za-z0-9_-]`, like a real openid, the same for the same inputs.
fn derived_id(prefix: char, kind: &str, appid: &str, user: &str) -> String {
    let digest = Sha256::new()
        .chain_update(format!("wxlogin-emulator/{kind}/{appid}/"))
        .chain_update(user)
        .finalize();
    let mut id = String::with_capacity(28);
    id.push(prefix);
    id.push_str(&URL_SAFE_NO_PAD.encode(digest)[..27]);
    id
}

/// WeChat answers errors with HTTP 200 and an errcode, and an errmsg that ends in a request id.
fn failure(errcode: i64, errmsg: &str) -> Response {
    let rid = format!("{:016x}", rand::rng().next_u64());
    text_plain(json!({ "errcode": errcode, "errmsg": format!("{errmsg}, rid: {rid}") }).to_string())
}

fn text_plain(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_look_like_wechat_ids_and_depend_on_their_inputs() {
        let a = derived_id('o', "openid", "wx1", "alice");
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o'));
        assert!(crate::domain::OpenId::parse(&a).is_some());
        assert_eq!(a, derived_id('o', "openid", "wx1", "alice"));
        assert_ne!(a, derived_id('o', "openid", "wx1", "bob"));
        assert_ne!(
            a,
            derived_id('o', "openid", "wx2", "alice"),
            "openids differ per app"
        );
    }
}
