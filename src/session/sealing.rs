//! session_keys sealed at rest: AES-256-GCM (RustCrypto `aes-gcm`) under the store key, a
//! fresh nonce each time, and the name of the Redis key that holds the value as associated
//! data, so that a sealed value copied into another user's record does not open. Each
//! sealed value names the key it was sealed with by a short id, so that after a rotation
//! the earlier keys (read-only) still open what they sealed.
//!
//! A sealed value reads `sealed1:<key id>:<base64 of nonce ‖ ciphertext ‖ tag>`; anything
//! else is a session_key written in the clear (before there was a key, or without one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::StoreKeySettings;
use crate::domain::SessionKey;
use crate::redis_conn::StoreError;

const SEALED: &str = "sealed1:";
const NONCE_BYTES: usize = 12;

struct StoreKey {
    id: String,
    cipher: Aes256Gcm,
}

impl StoreKey {
    fn new(bytes: &[u8]) -> Option<Self> {
        let cipher = Aes256Gcm::new_from_slice(bytes).ok()?;
        // An id derived from the key, so that operators never have to name keys, and one
        // that tells nothing about the key: a hash prefix, under a label of its own.
        let digest = Sha256::new()
            .chain_update(b"wxlogin store key id\0")
            .chain_update(bytes)
            .finalize();
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Some(Self { id, cipher })
    }
}

/// Seals with the current key (if any) and opens with any configured key.
pub struct Sealer {
    current: Option<StoreKey>,
    old: Vec<StoreKey>,
    mismatches: Mismatches,
}

/// The values this process could not open since it started: an operator's error (a wrong
/// key file, or an old key dropped too soon), which `/readyz` and `/metrics` report.
#[derive(Default)]
struct Mismatches {
    count: AtomicU64,
    last: Mutex<Option<(String, Instant)>>,
}

/// What [`Sealer::mismatches`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMismatches {
    pub count: u64,
    /// The id of the key the last value that did not open was sealed with.
    pub key_id: String,
    pub last_seen_secs_ago: u64,
}

impl Sealer {
    pub fn new(settings: &StoreKeySettings) -> Self {
        let decode = |text: &secrecy::SecretString| {
            let bytes = STANDARD.decode(text.expose_secret().trim()).ok()?;
            StoreKey::new(&bytes)
        };
        Self {
            current: settings.current.as_ref().and_then(decode),
            old: settings.old.iter().filter_map(decode).collect(),
            mismatches: Mismatches::default(),
        }
    }

    /// No key: values are written in the clear.
    pub fn none() -> Self {
        Self {
            current: None,
            old: Vec::new(),
            mismatches: Mismatches::default(),
        }
    }

    /// The values that did not open since start, if any did not.
    pub fn mismatches(&self) -> Option<KeyMismatches> {
        let count = self.mismatches.count.load(Ordering::Relaxed);
        let last = self
            .mismatches
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (key_id, at) = last.as_ref()?;
        Some(KeyMismatches {
            count,
            key_id: key_id.clone(),
            last_seen_secs_ago: at.elapsed().as_secs(),
        })
    }

    fn mismatch(&self, key_id: &str) -> StoreError {
        let key_id: String = key_id.chars().take(8).collect();
        *self
            .mismatches
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((key_id.clone(), Instant::now()));
        self.mismatches.count.fetch_add(1, Ordering::Relaxed);
        StoreError::KeyMismatch { key_id }
    }

    /// The id of the key new values are sealed with.
    pub fn current_key_id(&self) -> Option<&str> {
        self.current.as_ref().map(|key| key.id.as_str())
    }

    /// What to store for `key` in the Redis key named `holder`.
    pub fn seal(&self, key: &SessionKey, holder: &str) -> String {
        let Some(store_key) = &self.current else {
            return key.to_base64();
        };
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: key.bytes(),
            aad: holder.as_bytes(),
        };
        let Ok(sealed) = store_key.cipher.encrypt(Nonce::from_slice(&nonce), payload) else {
            // AES-GCM fails only past 64 GiB of plaintext; 16 bytes never do.
            return key.to_base64();
        };
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        format!("{SEALED}{}:{}", store_key.id, STANDARD.encode(body))
    }

    /// The session_key in `stored`, read from the Redis key named `holder`.
    pub fn open(&self, stored: &str, holder: &str) -> Result<SessionKey, StoreError> {
        let Some(sealed) = stored.strip_prefix(SEALED) else {
            return SessionKey::parse_base64(stored)
                .ok_or(StoreError::Corrupt("an invalid session_key"));
        };
        let (id, body) = sealed
            .split_once(':')
            .ok_or(StoreError::Corrupt("a sealed session_key without a key id"))?;
        let mismatch = || self.mismatch(id);
        let store_key = self
            .current
            .iter()
            .chain(&self.old)
            .find(|key| key.id == id)
            .ok_or_else(mismatch)?;
        let body = STANDARD
            .decode(body)
            .map_err(|_| StoreError::Corrupt("a sealed session_key that is not base64"))?;
        if body.len() <= NONCE_BYTES {
            return Err(StoreError::Corrupt(
                "a sealed session_key too short to open",
            ));
        }
        let (nonce, sealed) = body.split_at(NONCE_BYTES);
        let payload = Payload {
            msg: sealed,
            aad: holder.as_bytes(),
        };
        let bytes = store_key
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| mismatch())?;
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("a sealed session_key of the wrong length"))?;
        Ok(SessionKey::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn sealer(current: Option<&str>, old: &[&str]) -> Sealer {
        Sealer::new(&StoreKeySettings {
            current: current.map(Into::into),
            old: old.iter().map(|k| (*k).into()).collect(),
        })
    }

    fn session_key() -> SessionKey {
        SessionKey::parse_base64("AAECAwQFBgcICQoLDA0ODw==").expect("key")
    }

    #[test]
    fn a_sealed_value_opens_in_its_own_holder_only_and_shows_nothing_of_the_key() {
        let sealer = sealer(Some(KEY_A), &[]);
        let sealed = sealer.seal(&session_key(), "wxlogin:user:{default:oA}");
        assert!(sealed.starts_with("sealed1:"), "{sealed}");
        assert!(!sealed.contains(&session_key().to_base64()));
        assert_ne!(
            sealed,
            sealer.seal(&session_key(), "wxlogin:user:{default:oA}"),
            "a fresh nonce"
        );
        assert_eq!(
            sealer
                .open(&sealed, "wxlogin:user:{default:oA}")
                .expect("opens"),
            session_key()
        );
        let moved = sealer.open(&sealed, "wxlogin:user:{default:oB}");
        assert!(
            matches!(moved, Err(StoreError::KeyMismatch { .. })),
            "{moved:?}"
        );
    }

    #[test]
    fn old_keys_open_what_they_sealed_and_other_keys_are_a_mismatch() {
        let before = sealer(Some(KEY_A), &[]);
        let sealed = before.seal(&session_key(), "h");
        let rotated = sealer(Some(KEY_B), &[KEY_A]);
        assert_eq!(
            rotated.open(&sealed, "h").expect("an old key opens"),
            session_key()
        );
        assert_ne!(rotated.current_key_id(), before.current_key_id());

        let stranger = sealer(Some(KEY_B), &[]);
        let err = stranger.open(&sealed, "h").expect_err("not our key");
        assert!(err.to_string().contains("key mismatch"), "{err}");
        assert!(!err.to_string().contains(&sealed), "{err}");
    }

    #[test]
    fn values_in_the_clear_still_read_and_without_a_key_are_written_so() {
        let clear = session_key().to_base64();
        assert_eq!(
            sealer(Some(KEY_A), &[]).open(&clear, "h").expect("clear"),
            session_key()
        );
        assert_eq!(Sealer::none().seal(&session_key(), "h"), clear);
    }
}
