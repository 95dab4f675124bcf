//! The ids WeChat gives a user: `openid` within one mini-program, `unionid` across the
//! apps of one Open Platform account. Strict about their alphabet, so they travel safely
//! in headers, logs and store keys.

use std::fmt;

/// openids and unionids are about 28 characters; this leaves room without allowing junk.
const MAX_ID_LEN: usize = 128;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openids_are_restricted_to_the_wechat_alphabet() {
        assert!(OpenId::parse("oAbc_12-XYZ").is_some());
        assert!(OpenId::parse("").is_none());
        assert!(OpenId::parse("o\r\nX-Injected: 1").is_none());
        assert!(OpenId::parse(&"o".repeat(129)).is_none());
        assert!(UnionId::parse("u<script>").is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn any_text_is_an_id_that_reads_back_or_none(raw in ".{0,160}") {
            if let Some(id) = OpenId::parse(&raw) {
                proptest::prop_assert_eq!(id.as_ref(), raw.as_str());
                proptest::prop_assert!(raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            }
            proptest::prop_assert_eq!(
                UnionId::parse(&raw).map(|u| u.as_ref().to_owned()),
                OpenId::parse(&raw).map(|o| o.as_ref().to_owned())
            );
        }
    }

    #[test]
    fn debug_output_shows_only_the_head_of_an_openid() {
        let openid = OpenId::parse("oPersonalData123").expect("openid");
        assert_eq!(format!("{openid:?}"), "OpenId(oPer…)");
    }
}
