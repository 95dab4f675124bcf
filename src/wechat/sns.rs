//! The other WeChat logins: an official account's H5 pages, a website's QR code and a
//! mobile app's OpenSDK all trade their code through `sns/oauth2/access_token`. Its answer
//! carries an access_token of the user's, which serves only `sns/userinfo`: it is read
//! only when the scope lets it tell a profile, used once, and dropped.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::client::{WeChatApi, WeChatClient, check_errcode, read_answer, unionid};
use super::error::WeChatError;
use crate::domain::{JsCode, OpenId, Profile, UnionId, WxSession};

/// Longest nickname and avatar URL kept for the login answer; WeChat's are far shorter.
const MAX_NICKNAME_CHARS: usize = 64;
const MAX_AVATAR_URL_BYTES: usize = 1024;

impl WeChatClient {
    /// Trades an official account's, a website's or a mobile app's login code for the user
    /// WeChat names. A snapshot (preview-mode) user is refused: it is nobody.
    pub(super) async fn oauth_login(&self, code: &JsCode) -> Result<WxSession, WeChatError> {
        let grant = self
            .call(WeChatApi::OAuthAccessToken, || async {
                let response = self
                    .http()
                    .get(self.url("/sns/oauth2/access_token"))
                    .query(&[
                        ("appid", self.appid()),
                        ("secret", self.0.secret.expose_secret()),
                        ("code", code.as_ref()),
                        ("grant_type", "authorization_code"),
                    ])
                    .send()
                    .await;
                read_answer::<GrantAnswer>(response).await?.checked()
            })
            .await?;
        let mut login = WxSession {
            openid: grant.openid,
            session_key: None,
            unionid: grant.unionid,
            profile: None,
        };
        if let Some(user_token) = grant.user_token {
            // The code is spent and the user named: a profile WeChat will not tell costs
            // the login nothing but the profile.
            match self.user_info(&user_token, &login.openid).await {
                Ok((profile, unionid)) => {
                    login.profile = Some(profile);
                    login.unionid = login.unionid.or(unionid);
                }
                Err(err) => tracing::warn!(
                    app = %self.app(),
                    error = %err,
                    wechat_rid = err.rid(),
                    "sns/userinfo failed; the login goes on without a profile"
                ),
            }
        }
        Ok(login)
    }

    /// `sns/userinfo`: the user's nickname and avatar, and their unionid if WeChat tells it.
    async fn user_info(
        &self,
        user_token: &SecretString,
        openid: &OpenId,
    ) -> Result<(Profile, Option<UnionId>), WeChatError> {
        self.call(WeChatApi::UserInfo, || async {
            let response = self
                .http()
                .get(self.url("/sns/userinfo"))
                .query(&[
                    ("access_token", user_token.expose_secret()),
                    ("openid", openid.as_ref()),
                    ("lang", "zh_CN"),
                ])
                .send()
                .await;
            read_answer::<UserInfoAnswer>(response)
                .await?
                .checked(openid)
        })
        .await
    }
}

/// What a code was traded for.
struct Grant {
    openid: OpenId,
    unionid: Option<UnionId>,
    /// The user's own access_token, kept only when the scope lets `sns/userinfo` answer.
    user_token: Option<SecretString>,
}

/// The wire form of an `sns/oauth2/access_token` answer. `refresh_token` and `expires_in`
/// are not read: wxlogin keeps no user token past the login.
#[derive(Deserialize)]
struct GrantAnswer {
    errcode: Option<i64>,
    errmsg: Option<String>,
    access_token: Option<SecretString>,
    openid: Option<String>,
    scope: Option<String>,
    unionid: Option<String>,
    is_snapshotuser: Option<i64>,
}

impl GrantAnswer {
    fn checked(self) -> Result<Grant, WeChatError> {
        check_errcode(self.errcode, self.errmsg)?;
        if self.is_snapshotuser == Some(1) {
            return Err(WeChatError::SnapshotUser);
        }
        let openid = self.openid.as_deref().and_then(OpenId::parse);
        let openid = openid.ok_or(WeChatError::Malformed(
            "no valid openid in a success answer",
        ))?;
        // `snsapi_base` tells nothing more; `snsapi_userinfo` (H5, apps) and
        // `snsapi_login` (websites) let `sns/userinfo` tell the profile.
        let tells_profile = self.scope.as_deref().is_some_and(|scope| {
            scope
                .split(',')
                .any(|s| matches!(s.trim(), "snsapi_userinfo" | "snsapi_login"))
        });
        Ok(Grant {
            openid,
            unionid: unionid(self.unionid.as_deref())?,
            user_token: self.access_token.filter(|_| tells_profile),
        })
    }
}

/// The wire form of an `sns/userinfo` answer; the rest of it (sex, city, privilege…) is
/// not read.
#[derive(Deserialize)]
struct UserInfoAnswer {
    errcode: Option<i64>,
    errmsg: Option<String>,
    openid: Option<String>,
    nickname: Option<String>,
    headimgurl: Option<String>,
    unionid: Option<String>,
}

impl UserInfoAnswer {
    fn checked(self, openid: &OpenId) -> Result<(Profile, Option<UnionId>), WeChatError> {
        check_errcode(self.errcode, self.errmsg)?;
        if self.openid.as_deref() != Some(openid.as_ref()) {
            return Err(WeChatError::Malformed("sns/userinfo named another user"));
        }
        let nickname: String = self
            .nickname
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NICKNAME_CHARS)
            .collect();
        let avatar_url = self
            .headimgurl
            .filter(|url| url.len() <= MAX_AVATAR_URL_BYTES)
            .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
            .unwrap_or_default();
        let profile = Profile {
            nickname,
            avatar_url,
        };
        Ok((profile, unionid(self.unionid.as_deref())?))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wechat::arbitrary_answers;
    use crate::wechat::client::parse_answer;

    fn grant(answer: serde_json::Value) -> Result<Grant, WeChatError> {
        parse_answer::<GrantAnswer>(answer.to_string().as_bytes()).and_then(GrantAnswer::checked)
    }

    #[test]
    fn a_snapshot_user_is_refused_whatever_else_the_answer_says() {
        let answer = serde_json::json!({
            "access_token": "at", "openid": "oVirtual", "scope": "snsapi_userinfo",
            "is_snapshotuser": 1,
        });
        assert!(matches!(grant(answer), Err(WeChatError::SnapshotUser)));
    }

    #[test]
    fn the_user_token_is_kept_only_when_the_scope_tells_a_profile() {
        for (scope, kept) in [
            ("snsapi_base", false),
            ("snsapi_userinfo", true),
            ("snsapi_login", true),
            ("snsapi_base,snsapi_userinfo", true),
        ] {
            let answer = serde_json::json!({
                "access_token": "at", "openid": "oUser", "scope": scope,
            });
            let grant = grant(answer).expect("a grant");
            assert_eq!(grant.user_token.is_some(), kept, "{scope}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever comes back, a grant or an error; never a panic, and a grant only of a
        /// well-formed openid that the answer named.
        #[test]
        fn any_grant_answer_parses_to_a_grant_or_an_error(body in arbitrary_answers::body()) {
            let parsed = parse_answer::<GrantAnswer>(&body).and_then(GrantAnswer::checked);
            if let Ok(grant) = parsed {
                let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                prop_assert_eq!(answer["openid"].as_str(), Some(grant.openid.as_ref()));
                prop_assert_ne!(answer["is_snapshotuser"].as_i64(), Some(1));
            }
        }

        #[test]
        fn any_userinfo_answer_parses_to_a_profile_or_an_error(body in arbitrary_answers::body()) {
            let openid = OpenId::parse("oAbcdefghijklmnopqrstuvwxyz0").expect("openid");
            let parsed = parse_answer::<UserInfoAnswer>(&body).and_then(|a| a.checked(&openid));
            if let Ok((profile, _)) = parsed {
                prop_assert!(profile.nickname.chars().count() <= MAX_NICKNAME_CHARS);
                prop_assert!(profile.avatar_url.is_empty() || profile.avatar_url.starts_with("http"));
            }
        }
    }
}
