//! Session tokens: 256 random bits from a CSPRNG, base64url without padding (43 characters).
//! A token is never derived from anything WeChat sent; stores key sessions by its SHA-256,
//! so a dump of a store yields no usable token.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

const TOKEN_BYTES: usize = 32;
const TOKEN_CHARS: usize = 43;

#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

/// The key a session is stored under.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl SessionToken {
    /// Draws a new token from the thread-local CSPRNG (ChaCha12, seeded from the OS).
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts only the shape `generate` produces, so junk never reaches a store.
    pub fn parse(raw: &str) -> Option<Self> {
        // The decoder rejects anything outside the base64url alphabet, padding and
        // non-canonical trailing bits; a stack buffer keeps every lookup allocation-free.
        let well_formed = raw.len() == TOKEN_CHARS
            && URL_SAFE_NO_PAD
                .decode_slice(raw, &mut [0u8; TOKEN_BYTES])
                .is_ok();
        well_formed.then(|| Self(raw.to_owned()))
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The token itself, for the one response that hands it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// The first 128 bits of a [`TokenHash`]: the memory store's key, half the size. Finding a
/// token for a given short hash still takes about 2^128 tries, and two of a million live
/// sessions share one with odds near 2^-88.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortTokenHash([u8; 16]);

impl TokenHash {
    pub fn short(&self) -> ShortTokenHash {
        let mut short = [0u8; 16];
        short.copy_from_slice(&self.0[..16]);
        ShortTokenHash(short)
    }

    /// The session's id as a JWT's `sid` names it: this hash in base64url. It names the
    /// session without giving away its token, which no one can work out from it.
    pub fn session_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The hash a [`TokenHash::session_id`] spells; `None` for any other text.
    pub fn from_session_id(sid: &str) -> Option<Self> {
        let mut hash = [0u8; 32];
        let decoded = URL_SAFE_NO_PAD.decode_slice(sid, &mut hash).ok()?;
        (decoded == hash.len() && sid.len() == TOKEN_CHARS).then_some(Self(hash))
    }

    /// Lower-case hex, as store keys spell it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_tokens_are_url_safe_43_characters_and_distinct() {
        let tokens: HashSet<String> = (0..1000).map(|_| SessionToken::generate().0).collect();
        assert_eq!(tokens.len(), 1000);
        for t in &tokens {
            assert_eq!(t.len(), 43);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{t}"
            );
            assert_eq!(
                URL_SAFE_NO_PAD.decode(t).expect("base64url").len(),
                32,
                "256 bits"
            );
        }
    }

    #[test]
    fn parse_accepts_generated_tokens_and_rejects_other_shapes() {
        let t = SessionToken::generate();
        assert_eq!(SessionToken::parse(t.expose()), Some(t.clone()));
        assert!(SessionToken::parse("").is_none());
        assert!(SessionToken::parse(&t.expose()[..42]).is_none());
        assert!(SessionToken::parse(&format!("{}=", &t.expose()[..42])).is_none());
        assert!(SessionToken::parse(&"+".repeat(43)).is_none());
    }

    #[test]
    fn the_hash_is_sha256_of_the_token_text() {
        let t = SessionToken::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("token");
        // Computed independently: printf %s AAA…(43) | sha256sum
        let expected = "0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a";
        let hex: String = t.hash().0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Any text is a token of the generated shape or none; a token reads back as sent.
        #[test]
        fn any_text_parses_to_a_token_that_reads_back_or_to_none(raw in ".{0,64}") {
            if let Some(token) = SessionToken::parse(&raw) {
                proptest::prop_assert_eq!(token.expose(), raw.as_str());
                proptest::prop_assert_eq!(raw.len(), TOKEN_CHARS);
            }
        }

        #[test]
        fn any_32_bytes_encode_to_a_token_that_parses(bytes in proptest::prelude::any::<[u8; 32]>()) {
            let text = URL_SAFE_NO_PAD.encode(bytes);
            let token = SessionToken::parse(&text).expect("a token");
            proptest::prop_assert_eq!(token.expose(), text.as_str());
        }
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let t = SessionToken::generate();
        assert!(!format!("{t:?}").contains(t.expose()));
    }
}
