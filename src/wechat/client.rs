use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::error::{ErrCode, WeChatError};
use super::types::{JsCode, OpenId, SessionKey, UnionId, WxSession};
use crate::config::WeChatSettings;

/// WeChat answers are a few hundred bytes; anything much larger is not WeChat.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The process's one WeChat client: one pooled `reqwest::Client`, cheap to clone.
#[derive(Clone)]
pub struct WeChatClient {
    http: reqwest::Client,
    code2session_url: reqwest::Url,
    appid: String,
    secret: SecretString,
    busy_retry_delay: Duration,
}

impl WeChatClient {
    pub fn new(settings: &WeChatSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let code2session_url = format!("{}/sns/jscode2session", settings.base_url)
            .parse()
            .expect("base_url was validated as a URL when the settings were loaded");
        Ok(Self {
            http,
            code2session_url,
            appid: settings.credentials.appid.clone(),
            secret: settings.credentials.secret.clone(),
            busy_retry_delay: settings.busy_retry_delay,
        })
    }

    /// `auth.code2Session`: trades a `wx.login()` code for the user's openid and session_key.
    /// A busy answer (errcode -1) is retried once after a short pause, as WeChat advises.
    pub async fn code2session(&self, code: &JsCode) -> Result<WxSession, WeChatError> {
        match self.code2session_once(code).await {
            Err(err) if err.errcode() == Some(ErrCode::Busy) => {
                tracing::warn!(
                    wechat_rid = err.rid(),
                    "WeChat is busy (errcode -1); retrying once"
                );
                tokio::time::sleep(self.busy_retry_delay).await;
                self.code2session_once(code).await
            }
            other => other,
        }
    }

    async fn code2session_once(&self, code: &JsCode) -> Result<WxSession, WeChatError> {
        let response = self
            .http
            .get(self.code2session_url.clone())
            .query(&[
                ("appid", self.appid.as_str()),
                ("secret", self.secret.expose_secret()),
                ("js_code", code.as_ref()),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            .map_err(WeChatError::transport)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(WeChatError::Status(response.status()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
        {
            return Err(WeChatError::Malformed("the answer is too large"));
        }
        // WeChat labels JSON as text/plain, or not at all: parse whatever the Content-Type says.
        let body = response.bytes().await.map_err(WeChatError::transport)?;
        let answer: Code2SessionAnswer = serde_json::from_slice(&body)
            .map_err(|_| WeChatError::Malformed("the answer is not JSON"))?;
        answer.try_into()
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
        match answer.errcode.unwrap_or(0) {
            0 => {}
            errcode => {
                return Err(WeChatError::Api {
                    errcode,
                    errmsg: answer.errmsg.unwrap_or_default(),
                });
            }
        }
        let openid =
            answer
                .openid
                .as_deref()
                .and_then(OpenId::parse)
                .ok_or(WeChatError::Malformed(
                    "no valid openid in a success answer",
                ))?;
        let session_key = answer
            .session_key
            .as_deref()
            .and_then(SessionKey::parse_base64)
            .ok_or(WeChatError::Malformed(
                "no valid session_key in a success answer",
            ))?;
        let unionid = match answer.unionid.as_deref() {
            None | Some("") => None,
            Some(raw) => {
                Some(UnionId::parse(raw).ok_or(WeChatError::Malformed("an invalid unionid"))?)
            }
        };
        Ok(Self {
            openid,
            session_key,
            unionid,
        })
    }
}
