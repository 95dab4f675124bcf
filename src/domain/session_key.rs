use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

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

#[cfg(test)]
mod tests {
    use super::*;

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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn any_16_bytes_round_trip_through_their_base64(bytes in proptest::prelude::any::<[u8; 16]>()) {
            let key = SessionKey::from_bytes(bytes);
            proptest::prop_assert_eq!(SessionKey::parse_base64(&key.to_base64()), Some(key));
        }

        #[test]
        fn any_text_is_a_key_whose_base64_is_that_text_or_none(raw in "[A-Za-z0-9+/=]{0,30}|.{0,30}") {
            if let Some(key) = SessionKey::parse_base64(&raw) {
                proptest::prop_assert_eq!(key.to_base64(), raw);
            }
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        let key = SessionKey::parse_base64("AAECAwQFBgcICQoLDA0ODw==").expect("key");
        assert!(!format!("{key:?}").contains("AAEC"));
    }
}
