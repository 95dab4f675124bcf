//! The server APIs that take an access_token: the phone number behind a `getPhoneNumber`
//! code, and `checkSessionKey`.

use serde::{Deserialize, Serialize};

use super::access_token::AccessToken;
use super::client::{WeChatApi, WeChatClient, check_errcode, read_answer};
use super::error::WeChatError;
use super::open_data::{Watermark, check_session_signature};
use crate::domain::{PhoneCode, SessionKey};

/// checkSessionKey's answer when the session_key is not the user's current one.
const STALE_SESSION_KEY: i64 = 87009;

/// A user's phone number, as WeChat vouches for it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumber {
    /// With the country code for numbers outside mainland China.
    pub phone_number: String,
    pub pure_phone_number: String,
    /// Always a string here, whether WeChat sent a string or a number.
    pub country_code: String,
}

#[derive(Serialize)]
struct PhoneNumberRequest<'a> {
    code: &'a str,
}

#[derive(Deserialize)]
struct PhoneNumberAnswer {
    errcode: Option<i64>,
    errmsg: Option<String>,
    phone_info: Option<PhoneInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneInfo {
    phone_number: Option<String>,
    pure_phone_number: Option<String>,
    country_code: Option<CountryCode>,
    watermark: Option<Watermark>,
}

/// WeChat sends countryCode as `"86"` or as `86`, depending on the day.
#[derive(Deserialize)]
#[serde(untagged)]
enum CountryCode {
    Text(String),
    Number(u64),
}

/// The phone number in a `getuserphonenumber` answer, if the answer is a success whose
/// watermark names `our_appid`.
fn phone_number_from(
    answer: PhoneNumberAnswer,
    our_appid: &str,
) -> Result<PhoneNumber, WeChatError> {
    check_errcode(answer.errcode, answer.errmsg)?;
    let info = answer
        .phone_info
        .ok_or(WeChatError::Malformed("no phone_info in a success answer"))?;
    match info.watermark.and_then(|w| w.appid) {
        Some(appid) if appid == our_appid => {}
        _ => {
            return Err(WeChatError::Malformed(
                "the phone number's watermark names another appid, or none",
            ));
        }
    }
    let (Some(phone_number), Some(pure_phone_number), Some(country_code)) =
        (info.phone_number, info.pure_phone_number, info.country_code)
    else {
        return Err(WeChatError::Malformed(
            "phone_info lacks phoneNumber, purePhoneNumber or countryCode",
        ));
    };
    let country_code = match country_code {
        CountryCode::Text(text) => text,
        CountryCode::Number(number) => number.to_string(),
    };
    Ok(PhoneNumber {
        phone_number,
        pure_phone_number,
        country_code,
    })
}

#[derive(Deserialize)]
struct BareAnswer {
    errcode: Option<i64>,
    errmsg: Option<String>,
}

impl WeChatClient {
    /// `POST /wxa/business/getuserphonenumber`: the phone number behind a code from the
    /// `getPhoneNumber` button. The answer's watermark must name our appid.
    pub async fn phone_number(
        &self,
        token: &AccessToken,
        code: &PhoneCode,
    ) -> Result<PhoneNumber, WeChatError> {
        self.call(WeChatApi::PhoneNumber, || async {
            let response = self
                .http()
                .post(self.url("/wxa/business/getuserphonenumber"))
                .query(&[("access_token", token.expose())])
                .json(&PhoneNumberRequest {
                    code: code.as_ref(),
                })
                .send()
                .await;
            phone_number_from(read_answer(response).await?, &self.0.appid)
        })
        .await
    }

    /// `GET /wxa/checksession`: whether `key` is still the user's current session_key.
    /// `openid` comes from a session, which holds only ids that parsed as an
    /// [`OpenId`](super::OpenId).
    pub async fn check_session(
        &self,
        token: &AccessToken,
        openid: &str,
        key: &SessionKey,
    ) -> Result<bool, WeChatError> {
        let signature = check_session_signature(key);
        self.call(WeChatApi::CheckSession, || async {
            let response = self
                .http()
                .get(self.url("/wxa/checksession"))
                .query(&[
                    ("access_token", token.expose()),
                    ("openid", openid),
                    ("signature", signature.as_str()),
                    ("sig_method", "hmac_sha256"),
                ])
                .send()
                .await;
            let answer: BareAnswer = read_answer(response).await?;
            match answer.errcode {
                Some(STALE_SESSION_KEY) => Ok(false),
                errcode => check_errcode(errcode, answer.errmsg).map(|()| true),
            }
        })
        .await
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

        #[test]
        fn any_phone_number_answer_is_a_number_for_our_app_or_an_error(
            body in arbitrary_answers::body(),
            wrapped in arbitrary_answers::value(),
        ) {
            let ours = "wx_our_app";
            for body in [body, serde_json::json!({ "phone_info": wrapped }).to_string().into_bytes()] {
                let phone = parse_answer::<PhoneNumberAnswer>(&body)
                    .and_then(|answer| phone_number_from(answer, ours));
                if phone.is_ok() {
                    let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                    prop_assert_eq!(answer["phone_info"]["watermark"]["appid"].as_str(), Some(ours));
                }
            }
        }

        #[test]
        fn a_country_code_is_read_as_a_string_or_a_number_alike(code in 1u64..1000) {
            for country_code in [serde_json::json!(code), serde_json::json!(code.to_string())] {
                let body = serde_json::json!({
                    "errcode": 0,
                    "phone_info": {
                        "phoneNumber": "+86 13800000000",
                        "purePhoneNumber": "13800000000",
                        "countryCode": country_code,
                        "watermark": { "appid": "wx_our_app", "timestamp": 1 },
                    },
                });
                let phone = parse_answer::<PhoneNumberAnswer>(body.to_string().as_bytes())
                    .and_then(|answer| phone_number_from(answer, "wx_our_app"))
                    .expect("a phone number");
                prop_assert_eq!(phone.country_code, code.to_string());
            }
        }

        #[test]
        fn any_check_session_answer_parses_or_is_malformed(body in arbitrary_answers::body()) {
            let _ = parse_answer::<BareAnswer>(&body);
        }
    }
}
