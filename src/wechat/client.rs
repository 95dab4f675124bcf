use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{ErrCode, WeChatError};
use crate::config::WeChatSettings;
use crate::domain::{AppKind, AppName, JsCode, OpenId, SessionKey, UnionId, WxSession};
use crate::telemetry::metrics::Metrics;

/// Which WeChat API a call went to, as the `api` label of the call metrics.
#[derive(Debug, Clone, Copy)]
pub enum WeChatApi {
    Code2Session,
    OAuthAccessToken,
    UserInfo,
    StableToken,
    PhoneNumber,
    CheckSession,
}

impl WeChatApi {
    pub const ALL: [Self; 6] = [
        Self::Code2Session,
        Self::OAuthAccessToken,
        Self::UserInfo,
        Self::StableToken,
        Self::PhoneNumber,
        Self::CheckSession,
    ];

    /// The API's name, as the `api` label of the call metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Code2Session => "code2session",
            Self::OAuthAccessToken => "sns_access_token",
            Self::UserInfo => "sns_userinfo",
            Self::StableToken => "stable_token",
            Self::PhoneNumber => "phone_number",
            Self::CheckSession => "check_session",
        }
    }
}

/// WeChat answers are a few hundred bytes; anything much larger is not WeChat.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What every app's client shares: the process's one pooled `reqwest::Client`, the cap on
/// calls in flight, and the metrics.
struct Upstream {
    http: reqwest::Client,
    base_url: String,
    code2session_url: reqwest::Url,
    busy_retry_delay: Duration,
    /// One permit per WeChat call in flight, for all apps together. When none is left the
    /// call is not queued but refused: a slow WeChat must not make requests pile up.
    permits: tokio::sync::Semaphore,
    metrics: Metrics,
}

/// The WeChat client of one app: its appid and secret over the process's one upstream. A
/// clone is one shared handle (handlers get their own copy on every request).
#[derive(Clone)]
pub struct WeChatClient(pub(super) Arc<Shared>);

pub(super) struct Shared {
    upstream: Arc<Upstream>,
    pub(super) app: AppName,
    pub(super) kind: AppKind,
    pub(super) appid: String,
    pub(super) secret: SecretString,
}

impl WeChatClient {
    /// One client per app, all over one pooled `reqwest::Client`.
    pub fn for_apps(
        settings: &WeChatSettings,
        metrics: Metrics,
    ) -> Result<Vec<Self>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            // A 3xx is not WeChat's answer. Following it would take the openid from whatever
            // host its Location names, so it is reported as a bad status instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let upstream = Arc::new(Upstream {
            http,
            base_url: settings.base_url.clone(),
            code2session_url: endpoint(&settings.base_url, "/sns/jscode2session"),
            busy_retry_delay: settings.busy_retry_delay,
            permits: tokio::sync::Semaphore::new(settings.max_concurrent_calls),
            metrics,
        });
        Ok(settings
            .apps
            .iter()
            .map(|app| {
                Self(Arc::new(Shared {
                    upstream: Arc::clone(&upstream),
                    app: app.name.clone(),
                    kind: app.kind,
                    appid: app.credentials.appid.clone(),
                    secret: app.credentials.secret.clone(),
                }))
            })
            .collect())
    }

    /// The app this client speaks for: its appid.
    pub fn appid(&self) -> &str {
        &self.0.appid
    }

    /// The app this client speaks for: its name in the configuration.
    pub fn app(&self) -> &AppName {
        &self.0.app
    }

    /// What the app is to WeChat, which decides how its login codes are traded.
    pub fn kind(&self) -> AppKind {
        self.0.kind
    }

    /// Trades a login code of the app's kind for the user WeChat names: `code2Session` for
    /// a mini-program, `sns/oauth2/access_token` (and maybe `sns/userinfo`) for the others.
    pub async fn login(&self, code: &JsCode) -> Result<WxSession, WeChatError> {
        match self.kind() {
            AppKind::MiniProgram => self.code2session(code).await,
            _ => self.oauth_login(code).await,
        }
    }

    pub(super) fn http(&self) -> &reqwest::Client {
        &self.0.upstream.http
    }

    pub(super) fn metrics(&self) -> &Metrics {
        &self.0.upstream.metrics
    }

    /// The URL of one WeChat API, such as `/cgi-bin/stable_token`.
    pub(super) fn url(&self, path: &str) -> reqwest::Url {
        endpoint(&self.0.upstream.base_url, path)
    }

    /// `auth.code2Session`: trades a `wx.login()` code for the user's openid and session_key.
    /// It needs no access_token, so login keeps working when the token endpoint does not.
    pub async fn code2session(&self, code: &JsCode) -> Result<WxSession, WeChatError> {
        self.call(WeChatApi::Code2Session, || async {
            let response = self
                .http()
                .get(self.0.upstream.code2session_url.clone())
                .query(&[
                    ("appid", self.0.appid.as_str()),
                    ("secret", self.0.secret.expose_secret()),
                    ("js_code", code.as_ref()),
                    ("grant_type", "authorization_code"),
                ])
                .send()
                .await;
            read_answer::<Code2SessionAnswer>(response)
                .await?
                .try_into()
        })
        .await
    }

    /// Every WeChat call goes through here. It takes one of the concurrency permits, or
    /// fails at once with [`WeChatError::Overloaded`]. Then it makes `attempt`, and once
    /// more after a short pause if WeChat said it is busy (errcode -1), as WeChat advises.
    /// Never more: a busy WeChat needs less traffic.
    pub(super) async fn call<T, F, Fut>(&self, api: WeChatApi, attempt: F) -> Result<T, WeChatError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, WeChatError>>,
    {
        let Ok(_permit) = self.0.upstream.permits.try_acquire() else {
            self.metrics()
                .wechat_call_shed(api.label(), self.app().as_ref());
            return Err(WeChatError::Overloaded);
        };
        let timed = || async {
            let started = Instant::now();
            let result = attempt().await;
            let (outcome, errcode) = match &result {
                Ok(_) => ("answered", Cow::Borrowed("0")),
                Err(err) => (err.outcome_label(), err.errcode_label()),
            };
            self.metrics().wechat_call(
                api.label(),
                self.app().as_ref(),
                outcome,
                errcode,
                started.elapsed(),
            );
            result
        };
        match timed().await {
            Err(err) if err.errcode() == Some(ErrCode::Busy) => {
                tracing::warn!(
                    wechat_rid = err.rid(),
                    "WeChat is busy (errcode -1); retrying once"
                );
                tokio::time::sleep(self.0.upstream.busy_retry_delay).await;
                timed().await
            }
            other => other,
        }
    }
}

fn endpoint(base_url: &str, path: &str) -> reqwest::Url {
    format!("{base_url}{path}")
        .parse()
        .expect("base_url was validated as a URL when the settings were loaded")
}

/// Reads a WeChat answer: HTTP 200 and a JSON body of at most [`MAX_ANSWER_BYTES`], whatever
/// its Content-Type says (WeChat labels JSON as text/plain, or not at all). Transport
/// errors lose their URL here, since ours carry the secret or the access_token.
pub(super) async fn read_answer<T: DeserializeOwned>(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, WeChatError> {
    let response = response.map_err(WeChatError::transport)?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(WeChatError::Status(response.status()));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
    {
        return Err(WeChatError::Malformed("the answer is too large"));
    }
    let body = response.bytes().await.map_err(WeChatError::transport)?;
    parse_answer(&body)
}

/// A WeChat answer's body, parsed as `T` (what the API documents), or `Malformed`.
pub(super) fn parse_answer<T: DeserializeOwned>(body: &[u8]) -> Result<T, WeChatError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(WeChatError::Malformed("the answer is too large"));
    }
    serde_json::from_slice(body)
        .map_err(|_| WeChatError::Malformed("the answer is not the JSON WeChat documents"))
}

/// A non-zero errcode is a failure; a missing one is as good as 0.
pub(super) fn check_errcode(
    errcode: Option<i64>,
    errmsg: Option<String>,
) -> Result<(), WeChatError> {
    match errcode.unwrap_or(0) {
        0 => Ok(()),
        errcode => Err(WeChatError::Api {
            errcode,
            errmsg: super::error::sanitized_errmsg(&errmsg.unwrap_or_default()),
        }),
    }
}

/// A unionid as WeChat sent it: none when absent or empty, an error when malformed.
pub(super) fn unionid(raw: Option<&str>) -> Result<Option<UnionId>, WeChatError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => UnionId::parse(raw)
            .map(Some)
            .ok_or(WeChatError::Malformed("an invalid unionid")),
    }
}

/// The wire form of a `code2Session` answer. Unknown fields come and go, so they are ignored.
#[derive(Deserialize)]
struct Code2SessionAnswer {
    /// Absent on success as often as it is 0.
    errcode: Option<i64>,
    errmsg: Option<String>,
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

impl TryFrom<Code2SessionAnswer> for WxSession {
    type Error = WeChatError;

    fn try_from(answer: Code2SessionAnswer) -> Result<Self, Self::Error> {
        check_errcode(answer.errcode, answer.errmsg)?;
        let invalid = WeChatError::Malformed;
        let openid = answer.openid.as_deref().and_then(OpenId::parse);
        let openid = openid.ok_or(invalid("no valid openid in a success answer"))?;
        let session_key = answer.session_key.as_deref();
        let session_key = session_key
            .and_then(SessionKey::parse_base64)
            .ok_or(invalid("no valid session_key in a success answer"))?;
        Ok(Self {
            openid,
            session_key: Some(session_key),
            unionid: unionid(answer.unionid.as_deref())?,
            profile: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wechat::arbitrary_answers;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever comes back, the parser answers a session or an error; never a panic.
        #[test]
        fn any_code2session_answer_parses_to_a_session_or_an_error(body in arbitrary_answers::body()) {
            let parsed = parse_answer::<Code2SessionAnswer>(&body).and_then(WxSession::try_from);
            if let Ok(session) = parsed {
                // A session is only what the answer said, well-formed.
                let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                prop_assert_eq!(answer["openid"].as_str(), Some(session.openid.as_ref()));
                let key = session.session_key.map(|k| k.to_base64());
                prop_assert_eq!(answer["session_key"].as_str(), key.as_deref());
            }
        }

        #[test]
        fn a_well_formed_success_answer_is_read_back_as_it_was_sent(
            openid in "[A-Za-z0-9_-]{1,64}",
            key in any::<[u8; 16]>(),
            unionid in proptest::option::of("[A-Za-z0-9_-]{1,64}"),
            errcode_zero in any::<bool>(),
        ) {
            let key_text = SessionKey::from_bytes(key).to_base64();
            let mut answer = serde_json::json!({ "openid": openid, "session_key": key_text });
            if let Some(unionid) = &unionid {
                answer["unionid"] = unionid.as_str().into();
            }
            if errcode_zero {
                answer["errcode"] = 0.into();
            }
            let session = parse_answer::<Code2SessionAnswer>(answer.to_string().as_bytes())
                .and_then(WxSession::try_from)
                .expect("a session");
            prop_assert_eq!(session.openid.as_ref(), openid.as_str());
            prop_assert_eq!(session.session_key.map(|k| *k.bytes()), Some(key));
            prop_assert_eq!(session.unionid.as_ref().map(AsRef::as_ref), unionid.as_deref());
        }

        /// A non-zero errcode is always a WeChat error carrying that errcode.
        #[test]
        fn a_non_zero_errcode_is_an_error_whatever_else_the_answer_holds(
            errcode in any::<i64>().prop_filter("non-zero", |c| *c != 0),
            rest in arbitrary_answers::value(),
        ) {
            let mut answer = match rest {
                serde_json::Value::Object(fields) => serde_json::Value::Object(fields),
                _ => serde_json::json!({}),
            };
            answer["errcode"] = errcode.into();
            answer["openid"] = "oSomebody".into();
            answer["session_key"] = "AAECAwQFBgcICQoLDA0ODw==".into();
            let parsed = parse_answer::<Code2SessionAnswer>(answer.to_string().as_bytes())
                .and_then(WxSession::try_from);
            let refused = matches!(parsed, Err(WeChatError::Api { errcode: e, .. }) if e == errcode)
                || matches!(parsed, Err(WeChatError::Malformed(_)));
            prop_assert!(refused, "{:?}", parsed.map(|s| s.openid));
        }
    }
}
