//! A WeChat stand-in for development: a real HTTP server on a loopback port that answers
//! `GET /sns/jscode2session` with WeChat's semantics, so the client under test is the
//! production client, unchanged.
//!
//! - Any code of 1–128 printable characters logs a user in. The openid comes from the code's
//!   *user part*, the text before the first `@` (the whole code if there is none), so
//!   `alice@1` and `alice@2` are the same user, while random codes are distinct users.
//! - A user part starting with `union` also gets a unionid (as if the mini-program were
//!   bound to an Open Platform account); others get none, as most mini-programs do.
//! - Each code works once; using it again answers 40163.
//! - The magic codes in [`MAGIC_CODES`] answer a fixed failure every time.
//! - Answers are JSON labelled `text/plain`, as WeChat's are.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Credentials;
use crate::wechat::types::MAX_JS_CODE_LEN;

/// The appid `--dev` runs under. Shaped like a real one, and obviously not one.
pub const EMULATOR_APPID: &str = "wx0000000000000dev";

/// How long the emulator remembers a used code; WeChat's codes expire after 5 minutes.
const USED_CODE_MEMORY: Duration = Duration::from_secs(10 * 60);

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

/// Credentials for development mode: a fixed appid and a secret made up per run, which the
/// emulator checks exactly as WeChat would.
pub fn dev_credentials() -> Credentials {
    let mut secret = [0u8; 16];
    rand::rng().fill_bytes(&mut secret);
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    Credentials {
        appid: EMULATOR_APPID.to_owned(),
        secret: SecretString::from(secret),
    }
}

/// A running emulator. It stops when this is dropped.
pub struct Emulator {
    base_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// Serves the emulator on `addr` (port 0 picks a free one), accepting only `credentials`.
    pub async fn start(addr: SocketAddr, credentials: Credentials) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = router(credentials);
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
    appid: String,
    secret: SecretString,
    used_codes: moka::sync::Cache<Box<str>, ()>,
}

pub fn router(credentials: Credentials) -> Router {
    let state = EmulatorState {
        appid: credentials.appid,
        secret: credentials.secret,
        used_codes: moka::sync::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(USED_CODE_MEMORY)
            .build(),
    };
    Router::new()
        .route("/sns/jscode2session", any(jscode2session))
        .with_state(Arc::new(state))
}

#[derive(Deserialize)]
struct Code2SessionQuery {
    appid: Option<String>,
    secret: Option<String>,
    js_code: Option<String>,
    grant_type: Option<String>,
}

async fn jscode2session(
    method: Method,
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<Code2SessionQuery>,
) -> Response {
    if method != Method::GET {
        return failure(43001, "require GET method");
    }
    let Some(appid) = query.appid else {
        return failure(41002, "appid missing");
    };
    let Some(secret) = query.secret else {
        return failure(41004, "appsecret missing");
    };
    if appid != state.appid {
        return failure(40013, "invalid appid");
    }
    if secret != state.secret.expose_secret() {
        return failure(40125, "invalid appsecret");
    }
    if query.grant_type.as_deref() != Some("authorization_code") {
        return failure(40002, "invalid grant_type");
    }
    let Some(code) = query.js_code.filter(|c| !c.is_empty()) else {
        return failure(41008, "missing code");
    };
    if code.len() > MAX_JS_CODE_LEN || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return failure(40029, "invalid code");
    }
    if let Some(answer) = magic(&code).await {
        return answer;
    }
    if !state
        .used_codes
        .entry(code.as_str().into())
        .or_insert(())
        .is_fresh()
    {
        return failure(40163, "code been used");
    }
    let user = code.split('@').next().unwrap_or(&code);
    let mut session_key = [0u8; 16];
    rand::rng().fill_bytes(&mut session_key);
    let mut answer = json!({
        "openid": derived_id('o', "openid", &state.appid, user),
        "session_key": STANDARD.encode(session_key),
    });
    if user.starts_with("union") {
        // A unionid is the same in every app of one Open Platform account: no appid in it.
        answer["unionid"] = derived_id('u', "unionid", "", user).into();
    }
    text_plain(answer.to_string())
}

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
        assert!(crate::wechat::OpenId::parse(&a).is_some());
        assert_eq!(a, derived_id('o', "openid", "wx1", "alice"));
        assert_ne!(a, derived_id('o', "openid", "wx1", "bob"));
        assert_ne!(
            a,
            derived_id('o', "openid", "wx2", "alice"),
            "openids differ per app"
        );
    }
}
