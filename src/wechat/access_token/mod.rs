//! The access_token that every WeChat server API except `code2Session` needs: fetched from
//! `stable_token`, cached until shortly before it expires, refreshed by one caller at a
//! time, and replaced once when an API rejects it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

mod local;
mod shared;

use local::LocalAccessTokens;
use shared::SharedAccessTokens;

use super::client::{WeChatApi, WeChatClient, check_errcode, read_answer};
use super::error::WeChatError;
use crate::clock::Clock;
use crate::redis_conn::Redis;

/// WeChat documents force_refresh as limited to 20 a day, at least 30 seconds apart.
pub(super) const FORCE_REFRESH_PER_DAY: u32 = 20;
pub(super) const FORCE_REFRESH_SPACING_SECS: u64 = 30;
pub(super) const DAY_SECS: u64 = 24 * 60 * 60;
/// Refresh this long before WeChat's expiry (or at half-life, for short-lived tokens), so a
/// token never expires between our check and WeChat's.
const EXPIRY_MARGIN_SECS: u64 = 5 * 60;

/// An access_token. It is a credential for the whole mini-program, so it is kept out of
/// `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for AccessToken {
    fn from(token: String) -> Self {
        Self(token.into())
    }
}

/// How many seconds to use a token WeChat gives `expires_in` seconds: until
/// [`EXPIRY_MARGIN_SECS`] before its expiry, or half its life for short-lived ones.
pub(super) fn cache_for(expires_in: u64) -> u64 {
    expires_in - EXPIRY_MARGIN_SECS.min(expires_in / 2)
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// The access_token as handed to the team's other backends.
#[derive(Debug)]
pub struct HandedOut {
    pub token: AccessToken,
    /// Seconds it will still be handed out (a little less than WeChat gives it).
    pub expires_in: u64,
    /// Whether this request made wxlogin fetch a new one from WeChat.
    pub refreshed: bool,
}

/// A token from `stable_token`, and how many seconds WeChat gives it.
#[derive(Debug)]
pub struct Grant {
    pub token: AccessToken,
    pub expires_in: u64,
}

#[derive(Serialize)]
struct StableTokenRequest<'a> {
    grant_type: &'static str,
    appid: &'a str,
    secret: &'a str,
    force_refresh: bool,
}

#[derive(Deserialize)]
struct StableTokenAnswer {
    errcode: Option<i64>,
    errmsg: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// WeChat gives a token two hours at most. A longer `expires_in` is not believed: it would
/// keep a token past its end, and overflow the arithmetic of when to refresh it.
const MAX_TOKEN_LIFETIME_SECS: u64 = 7200;

fn grant_from(answer: StableTokenAnswer) -> Result<Grant, WeChatError> {
    check_errcode(answer.errcode, answer.errmsg)?;
    match (answer.access_token, answer.expires_in) {
        (Some(token), Some(expires_in)) if !token.is_empty() && expires_in > 0 => Ok(Grant {
            token: AccessToken(token.into()),
            expires_in: expires_in.min(MAX_TOKEN_LIFETIME_SECS),
        }),
        _ => Err(WeChatError::Malformed(
            "no access_token and expires_in in a success answer",
        )),
    }
}

impl WeChatClient {
    /// `POST /cgi-bin/stable_token`, with a JSON body (a form gets 41002). Unlike the classic
    /// `/cgi-bin/token`, it does not invalidate the tokens other instances hold.
    pub async fn stable_token(&self, force_refresh: bool) -> Result<Grant, WeChatError> {
        let grant = self
            .call(WeChatApi::StableToken, || async {
                let response = self
                    .http()
                    .post(self.url("/cgi-bin/stable_token"))
                    .json(&StableTokenRequest {
                        grant_type: "client_credential",
                        appid: &self.0.appid,
                        secret: self.0.secret.expose_secret(),
                        force_refresh,
                    })
                    .send()
                    .await;
                grant_from(read_answer(response).await?)
            })
            .await?;
        self.metrics()
            .access_token_refreshed(self.app().as_ref(), force_refresh);
        Ok(grant)
    }
}

/// Where the access_token is kept between calls: this process's memory, or Redis, shared
/// by every replica (so they neither fetch one each nor knock each other's out).
#[derive(Clone)]
pub enum AccessTokens {
    Local(Arc<LocalAccessTokens>),
    Shared(Arc<SharedAccessTokens>),
}

impl AccessTokens {
    /// A token cache in this process. `wait_limit` bounds how long any caller waits for a
    /// refresh, its own or another caller's.
    pub fn local(wechat: WeChatClient, clock: Clock, wait_limit: Duration) -> Self {
        Self::Local(Arc::new(LocalAccessTokens::new(wechat, clock, wait_limit)))
    }

    /// A token cache in Redis, shared by the replicas that use the same Redis and appid.
    pub fn shared(wechat: WeChatClient, redis: Redis, wait_limit: Duration) -> Self {
        Self::Shared(Arc::new(SharedAccessTokens::new(wechat, redis, wait_limit)))
    }

    /// Makes `call` with a valid access_token. If WeChat rejects the token (40001 invalid,
    /// 42001 expired), the token is replaced and `call` is made once more. Never more.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, WeChatError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, WeChatError>>,
    {
        let token = self.get().await?;
        match call(token.clone()).await {
            Err(err) if err.rejects_access_token() => {
                tracing::warn!(
                    wechat_errcode = err.raw_errcode(),
                    wechat_rid = err.rid(),
                    "WeChat rejected the access_token; replacing it and retrying once"
                );
                match self.replace_rejected(&token).await {
                    Ok(replacement) if replacement != token => call(replacement).await,
                    // Still the rejected one (WeChat allows no forced refresh now): what
                    // WeChat said is the answer.
                    Ok(_) => Err(err),
                    Err(limited) if limited.force_refresh_wait().is_some() => Err(err),
                    Err(other) => Err(other),
                }
            }
            other => other,
        }
    }

    /// A token that is valid for a while yet: the cached one, or a fresh one.
    pub async fn get(&self) -> Result<AccessToken, WeChatError> {
        match self {
            Self::Local(local) => local.get().await,
            Self::Shared(shared) => shared.obtain(None).await,
        }
    }

    /// A token other than `rejected`, if WeChat will give one.
    pub async fn replace_rejected(
        &self,
        rejected: &AccessToken,
    ) -> Result<AccessToken, WeChatError> {
        Ok(self.hand_out(Some(rejected)).await?.token)
    }

    /// The token, for another backend: the one wxlogin uses itself or, if `rejected` is
    /// the current one (an API refused it), a new one, fetched once for the app however
    /// many report it at once, on however many replicas.
    pub async fn hand_out(&self, rejected: Option<&AccessToken>) -> Result<HandedOut, WeChatError> {
        match self {
            Self::Local(local) => local.hand_out(rejected).await,
            Self::Shared(shared) => shared.hand_out(rejected).await,
        }
    }
}

/// Asks `stable_token` for a token. When `rejected` is the token WeChat just refused and
/// stable_token hands it out again, makes one forced refresh, if `wait_for_forced` (which
/// counts it against WeChat's limits) says one may be made now (`None`), or fails with how
/// long until one may.
pub(super) async fn fetch_replacing(
    wechat: &WeChatClient,
    rejected: Option<&AccessToken>,
    wait_for_forced: impl AsyncFnOnce() -> Result<Option<u64>, WeChatError>,
) -> Result<Grant, WeChatError> {
    let grant = wechat.stable_token(false).await?;
    if rejected != Some(&grant.token) {
        return Ok(grant);
    }
    match wait_for_forced().await? {
        None => {
            tracing::warn!(
                "stable_token handed out the rejected access_token again; forcing a refresh"
            );
            wechat.stable_token(true).await
        }
        Some(retry_after_secs) => {
            tracing::error!(
                retry_after_secs,
                "stable_token hands out an access_token WeChat rejects, and WeChat's force_refresh limit (20 a day, 30 s apart) allows no forced refresh now"
            );
            Err(WeChatError::ForceRefreshLimited { retry_after_secs })
        }
    }
}

/// Runs `obtain` for at most `limit`. Every failure to get a token, running out of time
/// included, becomes `WeChatError::AccessToken`, so callers see a clear 5xx, never a hang.
pub(super) async fn within_wait_limit<T>(
    limit: Duration,
    obtain: impl Future<Output = Result<T, WeChatError>>,
) -> Result<T, WeChatError> {
    match tokio::time::timeout(limit, obtain).await {
        Ok(Ok(token)) => Ok(token),
        Ok(Err(err)) => Err(WeChatError::AccessToken(Box::new(err))),
        Err(_) => Err(WeChatError::AccessToken(Box::new(WeChatError::Timeout))),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wechat::arbitrary_answers;
    use crate::wechat::client::parse_answer;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any answer is a grant or an error, and a grant's lifetime is one the cache can
        /// count with: `expires_in` of u64::MAX once overflowed "when to refresh".
        #[test]
        fn any_stable_token_answer_is_a_grant_that_can_be_cached_or_an_error(
            body in arbitrary_answers::body(),
        ) {
            let grant = parse_answer::<StableTokenAnswer>(&body).and_then(grant_from);
            if let Ok(grant) = grant {
                let now: u64 = 1_800_000_000;
                let refresh_at = now + cache_for(grant.expires_in);
                prop_assert!(refresh_at > now && refresh_at <= now + MAX_TOKEN_LIFETIME_SECS);
                prop_assert!(!grant.token.expose().is_empty());
            }
        }

        #[test]
        fn a_success_answer_of_any_lifetime_is_cached_no_longer_than_two_hours(
            token in "[!-~]{1,600}",
            expires_in in prop_oneof![any::<u64>(), Just(u64::MAX), 1u64..10_000],
        ) {
            let body = serde_json::json!({ "access_token": token, "expires_in": expires_in });
            let grant = parse_answer::<StableTokenAnswer>(body.to_string().as_bytes())
                .and_then(grant_from)
                .expect("a grant");
            let now: u64 = 1_800_000_000;
            let refresh_at = now + cache_for(grant.expires_in);
            prop_assert!(refresh_at > now && refresh_at <= now + MAX_TOKEN_LIFETIME_SECS);
            prop_assert_eq!(grant.token.expose(), token.as_str());
        }
    }

    #[test]
    fn an_access_token_never_shows_in_debug_output() {
        let token = AccessToken("ACCESS_TOKEN_SECRET".into());
        assert!(!format!("{token:?}").contains("SECRET"));
    }
}
