//! WeChat's server API as wxlogin speaks it: the client, what it answers, and an emulator
//! that stands in for `api.weixin.qq.com` in development and tests.

pub mod access_token;
mod client;
pub mod emulator;
mod error;
pub mod open_data;
mod server_api;
mod sns;

pub use access_token::{AccessToken, AccessTokens};
pub use client::{WeChatApi, WeChatClient};
pub use error::{ErrCode, WeChatError};
pub use server_api::PhoneNumber;

/// Answers as WeChat, a proxy, or a broken upstream might send them, for the property tests
/// of every answer's parser: any JSON shape (the documented fields with values of every
/// type, huge numbers among them, and fields of no meaning), and bytes that are not JSON.
#[cfg(test)]
pub(crate) mod arbitrary_answers {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    const FIELDS: &[&str] = &[
        "errcode",
        "errmsg",
        "openid",
        "session_key",
        "unionid",
        "access_token",
        "expires_in",
        "phone_info",
        "phoneNumber",
        "purePhoneNumber",
        "countryCode",
        "watermark",
        "appid",
        "timestamp",
        "scope",
        "is_snapshotuser",
        "nickname",
        "headimgurl",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            prop_oneof![Just(u64::MAX), Just(0), Just(1), Just(7200)].prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            Just(json!("AAECAwQFBgcICQoLDA0ODw==")),
            Just(json!("oAbcdefghijklmnopqrstuvwxyz0")),
        ]
    }

    /// Any JSON value, nested a few levels, with WeChat's field names more likely than others.
    pub fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            prop::sample::select(FIELDS).prop_map(str::to_owned),
                            ".{0,8}"
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// An answer's body: JSON of any shape, or any bytes at all.
    pub fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..64),
            Just(b"<html><body>502 Bad Gateway</body></html>".to_vec()),
            Just(br#"{"errcode":99999999999999999999999}"#.to_vec()),
            Just(br#"{"expires_in":1e400}"#.to_vec()),
        ]
    }
}
