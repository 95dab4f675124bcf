//! What WeChat hands us, parsed once at the edge: past this module a `JsCode` is
//! well-formed, an `OpenId` is safe to put in a header, and a `SessionKey` is 16 bytes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The longest one-time code we accept. Real ones are 32 characters (login) or 64 (phone).
pub const MAX_JS_CODE_LEN: usize = 128;
/// openids and unionids are about 28 characters; this leaves room without allowing junk.
const MAX_ID_LEN: usize = 128;

/// The one-time code from `wx.login()`: 1 to 128 printable ASCII characters, no spaces.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsCode(Box<str>);

/// Why a one-time code (from `wx.login()` or the phone button) was refused before any
/// WeChat call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCode {
    #[error("The request has no code.")]
    Missing,
    #[error("The code is longer than {MAX_JS_CODE_LEN} characters.")]
    TooLong,
    #[error("The code may only contain printable ASCII characters, without spaces.")]
    BadCharacters,
}

impl JsCode {
    pub fn parse(raw: Option<&str>) -> Result<Self, InvalidCode> {
        check_code(raw).map(|code| Self(code.into()))
    }
}

fn check_code(raw: Option<&str>) -> Result<&str, InvalidCode> {
    let raw = raw.unwrap_or_default();
    if raw.trim().is_empty() {
        return Err(InvalidCode::Missing);
    }
    if raw.len() > MAX_JS_CODE_LEN {
        return Err(InvalidCode::TooLong);
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidCode::BadCharacters);
    }
    Ok(raw)
}

impl AsRef<str> for JsCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Codes are short-lived credentials: keep them out of logs.
impl fmt::Debug for JsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsCode(<redacted>)")
    }
}

/// The one-time code from the `getPhoneNumber` button: the same shape as a [`JsCode`],
/// but good only for `getuserphonenumber`.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneCode(Box<str>);

impl PhoneCode {
    pub fn parse(raw: Option<&str>) -> Result<Self, InvalidCode> {
        check_code(raw).map(|code| Self(code.into()))
    }
}

impl AsRef<str> for PhoneCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneCode(<redacted>)")
    }
}

/// Checks the `[A-Za-z0-9_-]` alphabet WeChat uses for openid and unionid. Being strict
/// here is what lets them travel safely in headers, logs and store keys later on.
fn is_wechat_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Writes an identifier as its first few characters only: openid and unionid are
/// personal data, and a test failure or a log line needs no more than that.
fn fmt_partial(f: &mut fmt::Formatter<'_>, name: &str, id: &str) -> fmt::Result {
    let head = id.get(..4).unwrap_or(id);
    write!(f, "{name}({head}…)")
}

macro_rules! wechat_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(Box<str>);

        impl $name {
            /// Accepts 1 to 128 characters of `[A-Za-z0-9_-]`.
            pub fn parse(raw: &str) -> Option<Self> {
                is_wechat_id(raw).then(|| Self(raw.into()))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_partial(f, stringify!($name), &self.0)
            }
        }
    };
}

wechat_id!(
    /// A user's id within one mini-program.
    OpenId
);
wechat_id!(
    /// A user's id across the apps bound to one Open Platform account.
    UnionId
);

/// The key WeChat shares with one user's session, used to verify and decrypt that user's
/// data. It never leaves the server. WeChat sends it as base64 of 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionKey([u8; 16]);

impl SessionKey {
    pub fn parse_base64(raw: &str) -> Option<Self> {
        let bytes = STANDARD.decode(raw).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The base64 text WeChat sent. Standard base64 of 16 bytes has one spelling, so this
    /// is exactly that text: the signatures are computed over it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// A successful `code2Session` answer.
#[derive(Debug, Clone)]
pub struct WxSession {
    pub openid: OpenId,
    pub session_key: SessionKey,
    /// Only present when the mini-program is bound to an Open Platform account.
    pub unionid: Option<UnionId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_js_code_is_one_to_128_printable_characters() {
        assert!(JsCode::parse(Some("081AbCdE-x_y.z")).is_ok());
        assert!(JsCode::parse(Some(&"a".repeat(128))).is_ok());
        for (raw, expected) in [
            (None, InvalidCode::Missing),
            (Some(""), InvalidCode::Missing),
            (Some("   \t"), InvalidCode::Missing),
            (Some(&*"a".repeat(129)), InvalidCode::TooLong),
            (Some("with space"), InvalidCode::BadCharacters),
            (Some("tab\there"), InvalidCode::BadCharacters),
            (Some("non-ascii-码"), InvalidCode::BadCharacters),
        ] {
            assert_eq!(JsCode::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn openids_are_restricted_to_the_wechat_alphabet() {
        assert!(OpenId::parse("oAbc_12-XYZ").is_some());
        assert!(OpenId::parse("").is_none());
        assert!(OpenId::parse("o\r\nX-Injected: 1").is_none());
        assert!(OpenId::parse(&"o".repeat(129)).is_none());
        assert!(UnionId::parse("u<script>").is_none());
    }

    #[test]
    fn a_session_key_is_base64_of_exactly_16_bytes() {
        let key = SessionKey::parse_base64("AAECAwQFBgcICQoLDA0ODw==").expect("valid key");
        assert_eq!(key.bytes()[15], 15);
        assert!(
            SessionKey::parse_base64("AAECAwQFBgcICQoLDA0O").is_none(),
            "15 bytes"
        );
        assert!(SessionKey::parse_base64("not base64!").is_none());
    }

    #[test]
    fn debug_output_hides_codes_keys_and_most_of_an_openid() {
        let code = JsCode::parse(Some("secret-code")).expect("code");
        assert!(!format!("{code:?}").contains("secret-code"));
        let key = SessionKey::parse_base64("AAECAwQFBgcICQoLDA0ODw==").expect("key");
        assert!(!format!("{key:?}").contains("AAEC"));
        let openid = OpenId::parse("oPersonalData123").expect("openid");
        assert_eq!(format!("{openid:?}"), "OpenId(oPer…)");
    }
}
