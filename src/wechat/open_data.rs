//! The server-side halves of the mini-program's open-data features: the rawData signature,
//! encryptedData decryption, and the checkSessionKey signature. Every detail here follows
//! WeChat's documentation and its worked examples (the tests below use them); most SDKs
//! get at least one of them wrong.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::SessionKey;

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;
type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

const BLOCK: usize = 16;

/// Whether `signature` is `hex(sha1(raw_data + session_key))`, with the session_key as its
/// base64 text. `raw_data` must be the exact string the client received: re-serialising
/// it changes the bytes and breaks the signature. The comparison is constant-time.
pub fn signature_matches(raw_data: &str, signature: &str, key: &SessionKey) -> bool {
    let expected = raw_data_signature(raw_data, key);
    let given = signature.trim().to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// `hex(sha1(raw_data + session_key))`, as WeChat signs rawData: what a client's signature
/// is checked against, and what the emulator, playing WeChat, hands out.
pub(crate) fn raw_data_signature(raw_data: &str, key: &SessionKey) -> String {
    let digest = Sha1::new()
        .chain_update(raw_data.as_bytes())
        .chain_update(key.to_base64().as_bytes())
        .finalize();
    format!("{digest:x}")
}

/// The `signature` of `checkSessionKey`: `hex(hmac_sha256(key, ""))`. The HMAC key is the
/// bytes of the session_key's base64 *text*, not the 16 bytes it decodes to: WeChat's worked
/// example for this signature shows it, and two major SDKs had it wrong for years.
pub fn check_session_signature(key: &SessionKey) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(key.to_base64().as_bytes())
        .expect("HMAC takes keys of any length");
    format!("{:x}", mac.finalize().into_bytes())
}

/// Why `encryptedData` could not be turned into the data WeChat sealed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    #[error("{0}")]
    Length(&'static str),
    /// Bad padding, or a plaintext that is not UTF-8 JSON. Almost always a stale
    /// session_key: the client called `wx.login()` again after getting the data.
    #[error("the plaintext is not {0}")]
    Garbled(&'static str),
    #[error("the data's watermark names another appid, or none, or it is another user's")]
    Watermark,
}

/// Decrypts `encryptedData` (AES-128-CBC, PKCS#7) with `key` and `iv`, and returns the JSON
/// object exactly as WeChat sealed it, after checking that its watermark names `appid` and
/// that its `openId`, where it has one, is `openid`: the session's user, not another.
/// A wrong iv garbles only the first block, and that can still unpad cleanly: padding
/// proves nothing, so the JSON and the watermark are what is checked.
pub fn decrypt(
    encrypted_data: &str,
    iv: &str,
    key: &SessionKey,
    appid: &str,
    openid: &str,
) -> Result<Box<RawValue>, DecryptError> {
    let iv: [u8; BLOCK] = decode_base64(iv)
        .ok_or(DecryptError::Base64("iv"))?
        .try_into()
        .map_err(|_| DecryptError::Length("The iv is not 16 bytes"))?;
    let mut buffer = decode_base64(encrypted_data).ok_or(DecryptError::Base64("encryptedData"))?;
    if buffer.is_empty() || buffer.len() % BLOCK != 0 {
        return Err(DecryptError::Length(
            "The encryptedData is not a whole number of 16-byte blocks",
        ));
    }
    let plaintext = Aes128CbcDec::new(key.bytes().into(), &iv.into())
        .decrypt_padded_mut::<Pkcs7>(&mut buffer)
        .map_err(|_| DecryptError::Garbled("padded correctly"))?;
    let text = std::str::from_utf8(plaintext).map_err(|_| DecryptError::Garbled("UTF-8"))?;
    let sealed: Sealed = serde_json::from_str(text).map_err(|_| DecryptError::Garbled("JSON"))?;
    let data: Box<RawValue> =
        serde_json::from_str(text).map_err(|_| DecryptError::Garbled("JSON"))?;
    if sealed
        .open_id
        .is_some_and(|sealed_for| sealed_for != openid)
    {
        return Err(DecryptError::Watermark);
    }
    match sealed.watermark {
        Some(Watermark {
            appid: Some(sealed_for),
        }) if sealed_for == appid => Ok(data),
        _ => Err(DecryptError::Watermark),
    }
}

/// Encrypts `plaintext` the way WeChat does. Only the emulator needs this.
pub(crate) fn encrypt(plaintext: &[u8], key: &SessionKey, iv: &[u8; BLOCK]) -> Vec<u8> {
    let mut buffer = vec![0; (plaintext.len() / BLOCK + 1) * BLOCK];
    buffer[..plaintext.len()].copy_from_slice(plaintext);
    let sealed = Aes128CbcEnc::new(key.bytes().into(), iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buffer, plaintext.len())
        .expect("the buffer has room for a full block of padding");
    sealed.to_vec()
}

/// The parts of the sealed data we check: whose it is, and for which app.
#[derive(Deserialize)]
struct Sealed {
    #[serde(rename = "openId")]
    open_id: Option<String>,
    watermark: Option<Watermark>,
}

#[derive(Deserialize)]
pub(crate) struct Watermark {
    pub appid: Option<String>,
}

/// Base64 from clients arrives wrapped or with stray spaces; WeChat's own is unwrapped.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if text.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: String = text.split_ascii_whitespace().collect();
        STANDARD.decode(compact).ok()
    } else {
        STANDARD.decode(text).ok()
    }
}

/// WeChat's documented examples, shared by the unit tests and the micro-benchmarks.
#[doc(hidden)]
pub mod documented_examples {
    /// WeChat's documented signature example.
    pub const RAW_DATA: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
    pub const RAW_DATA_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
    pub const RAW_DATA_SIGNATURE: &str = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";

    /// WeChat's documented decryption example (WXBizDataCrypt's demo data).
    pub const DEMO_APPID: &str = "wx4f4bc4dec97d474b";
    pub const DEMO_OPENID: &str = "oGZUI0egBJY1zhBYw2KhdUfwVJJE";
    pub const DEMO_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    pub const DEMO_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    pub const DEMO_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
}

#[cfg(test)]
mod tests {
    //! The expected values come from outside this crate: WeChat's own documented examples,
    //! and vectors computed with Python's `hashlib`, `hmac` and `cryptography`. A round trip
    //! through our own `encrypt` would prove nothing about compatibility.

    use super::documented_examples::*;
    use super::*;

    /// The error, for comparing (`RawValue` has no `PartialEq`).
    fn failure(result: Result<Box<RawValue>, DecryptError>) -> DecryptError {
        result.expect_err("decryption should fail")
    }

    fn key(base64: &str) -> SessionKey {
        SessionKey::parse_base64(base64).expect("a valid session_key")
    }

    #[test]
    fn the_documented_signature_example_verifies() {
        assert!(signature_matches(
            RAW_DATA,
            RAW_DATA_SIGNATURE,
            &key(RAW_DATA_KEY)
        ));
        assert!(
            signature_matches(
                RAW_DATA,
                &RAW_DATA_SIGNATURE.to_uppercase(),
                &key(RAW_DATA_KEY)
            ),
            "hex case does not matter"
        );
    }

    #[test]
    fn a_signature_fails_for_a_one_byte_change_a_wrong_signature_or_another_key() {
        let changed = RAW_DATA.replacen("Band", "Banc", 1);
        assert!(!signature_matches(
            &changed,
            RAW_DATA_SIGNATURE,
            &key(RAW_DATA_KEY)
        ));
        let mut wrong = RAW_DATA_SIGNATURE.to_owned();
        wrong.replace_range(39.., "d");
        assert!(!signature_matches(RAW_DATA, &wrong, &key(RAW_DATA_KEY)));
        assert!(!signature_matches(RAW_DATA, "", &key(RAW_DATA_KEY)));
        assert!(!signature_matches(
            RAW_DATA,
            RAW_DATA_SIGNATURE,
            &key(DEMO_KEY)
        ));
    }

    #[test]
    fn the_check_session_signature_keys_hmac_with_the_base64_text() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"AAECAwQFBgcICQoLDA0ODw==", b"", hashlib.sha256).hexdigest())'
        assert_eq!(
            check_session_signature(&key("AAECAwQFBgcICQoLDA0ODw==")),
            "75c022993d64e3ac224c1c9d6f2b4c6eb53f22f6c7aa6be94428577d11d12fd5"
        );
        assert_eq!(
            check_session_signature(&key(DEMO_KEY)),
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        );
    }

    #[test]
    fn the_documented_decryption_example_decrypts_to_wechats_own_bytes() {
        let data =
            decrypt(DEMO_DATA, DEMO_IV, &key(DEMO_KEY), DEMO_APPID, DEMO_OPENID).expect("decrypts");
        assert!(
            data.get().starts_with(
                r#"{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"Band","gender":1,"#
            ),
            "field order and spelling are kept: {}",
            data.get()
        );
        assert!(data.get().ends_with(
            r#""unionId":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA","watermark":{"timestamp":1477314187,"appid":"wx4f4bc4dec97d474b"}}"#
        ));
    }

    #[test]
    fn whitespace_in_client_base64_is_ignored() {
        let wrapped: String = DEMO_DATA
            .as_bytes()
            .chunks(64)
            .map(|line| format!("{}\r\n ", std::str::from_utf8(line).expect("ascii")))
            .collect();
        assert!(
            decrypt(
                &wrapped,
                &format!(" {DEMO_IV}\n"),
                &key(DEMO_KEY),
                DEMO_APPID,
                DEMO_OPENID
            )
            .is_ok()
        );
    }

    #[test]
    fn a_foreign_watermark_is_rejected_although_the_data_decrypts() {
        assert_eq!(
            failure(decrypt(
                DEMO_DATA,
                DEMO_IV,
                &key(DEMO_KEY),
                "wx_another_app",
                DEMO_OPENID
            )),
            DecryptError::Watermark
        );
    }

    #[test]
    fn data_sealed_for_another_user_is_rejected_although_it_decrypts() {
        assert_eq!(
            failure(decrypt(
                DEMO_DATA,
                DEMO_IV,
                &key(DEMO_KEY),
                DEMO_APPID,
                "oSomebodyElse"
            )),
            DecryptError::Watermark
        );
    }

    #[test]
    fn a_wrong_iv_unpads_cleanly_and_is_caught_by_the_json_check() {
        let wrong_iv = "AAAAAAAAAAAAAAAAAAAAAA==";
        assert!(matches!(
            failure(decrypt(
                DEMO_DATA,
                wrong_iv,
                &key(DEMO_KEY),
                DEMO_APPID,
                DEMO_OPENID
            )),
            DecryptError::Garbled("UTF-8" | "JSON")
        ));
    }

    #[test]
    fn a_stale_key_fails_as_garbled_data() {
        assert!(matches!(
            failure(decrypt(
                DEMO_DATA,
                DEMO_IV,
                &key(RAW_DATA_KEY),
                DEMO_APPID,
                DEMO_OPENID
            )),
            DecryptError::Garbled(_)
        ));
    }

    #[test]
    fn lengths_and_base64_are_checked_before_decrypting() {
        let demo_key = key(DEMO_KEY);
        let ciphertext = STANDARD.decode(DEMO_DATA).expect("base64");
        let cut_mid_block = STANDARD.encode(&ciphertext[..ciphertext.len() - 5]);
        assert!(matches!(
            failure(decrypt(
                &cut_mid_block,
                DEMO_IV,
                &demo_key,
                DEMO_APPID,
                DEMO_OPENID
            )),
            DecryptError::Length(_)
        ));
        // Cut at a block boundary, the length is fine and the padding is what fails.
        let cut_one_block = STANDARD.encode(&ciphertext[..ciphertext.len() - 16]);
        assert_eq!(
            failure(decrypt(
                &cut_one_block,
                DEMO_IV,
                &demo_key,
                DEMO_APPID,
                DEMO_OPENID
            )),
            DecryptError::Garbled("padded correctly")
        );
        assert!(matches!(
            failure(decrypt("", DEMO_IV, &demo_key, DEMO_APPID, DEMO_OPENID)),
            DecryptError::Length(_)
        ));
        assert!(matches!(
            failure(decrypt(
                DEMO_DATA,
                "AAAAAAAAAAAAAAAAAAAA",
                &demo_key,
                DEMO_APPID,
                DEMO_OPENID
            )),
            DecryptError::Length(_)
        ));
        assert_eq!(
            failure(decrypt(
                "not*base64",
                DEMO_IV,
                &demo_key,
                DEMO_APPID,
                DEMO_OPENID
            )),
            DecryptError::Base64("encryptedData")
        );
        assert_eq!(
            failure(decrypt(
                DEMO_DATA,
                "r7BX%%",
                &demo_key,
                DEMO_APPID,
                DEMO_OPENID
            )),
            DecryptError::Base64("iv")
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever a client sends as encryptedData and iv, and whatever it decrypts to, the
        /// answer is the sealed object or a typed refusal; never a panic.
        #[test]
        fn any_encrypted_data_and_iv_decrypt_or_are_refused(
            data in "[A-Za-z0-9+/=\\s]{0,200}|.{0,100}",
            iv in "[A-Za-z0-9+/=]{0,30}|.{0,30}",
            key_bytes in proptest::prelude::any::<[u8; 16]>(),
        ) {
            let key = SessionKey::from_bytes(key_bytes);
            let _ = decrypt(&data, &iv, &key, DEMO_APPID, DEMO_OPENID);
        }

        /// Any ciphertext under a good iv, including bytes whose padding is wrong.
        #[test]
        fn any_ciphertext_unpads_or_is_refused(
            ciphertext in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
            iv in proptest::prelude::any::<[u8; 16]>(),
        ) {
            let _ = decrypt(
                &STANDARD.encode(&ciphertext),
                &STANDARD.encode(iv),
                &key(DEMO_KEY),
                DEMO_APPID,
                DEMO_OPENID,
            );
        }

        /// What WeChat seals for our app and this user comes back byte for byte.
        #[test]
        fn sealed_data_for_our_app_and_user_decrypts_to_the_same_bytes(
            nick in ".{0,40}",
            key_bytes in proptest::prelude::any::<[u8; 16]>(),
            iv in proptest::prelude::any::<[u8; 16]>(),
        ) {
            let plaintext = serde_json::json!({
                "openId": DEMO_OPENID,
                "nickName": nick,
                "watermark": { "appid": DEMO_APPID, "timestamp": 1 },
            })
            .to_string();
            let key = SessionKey::from_bytes(key_bytes);
            let sealed = STANDARD.encode(encrypt(plaintext.as_bytes(), &key, &iv));
            let data = decrypt(&sealed, &STANDARD.encode(iv), &key, DEMO_APPID, DEMO_OPENID)
                .expect("decrypts");
            proptest::prop_assert_eq!(data.get(), plaintext.as_str());
        }

        #[test]
        fn any_raw_data_and_signature_compare_without_panic_and_a_true_signature_matches(
            raw in ".{0,80}",
            signature in ".{0,50}",
        ) {
            let key = key(RAW_DATA_KEY);
            let _ = signature_matches(&raw, &signature, &key);
            proptest::prop_assert!(signature_matches(&raw, &raw_data_signature(&raw, &key), &key));
        }
    }

    #[test]
    fn our_encryption_matches_python_cryptography() {
        // The vector the integration tests use, made with Python's `cryptography`
        // (AES-128-CBC, PKCS7) under key bytes 0..16 and iv bytes 16..32.
        let plaintext = r#"{"openId":"oTestUser0001","nickName":"测试","gender":0,"watermark":{"timestamp":1800000000,"appid":"wx_test_appid"}}"#;
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8 + 16);
        let sealed = encrypt(plaintext.as_bytes(), &key("AAECAwQFBgcICQoLDA0ODw=="), &iv);
        assert_eq!(
            STANDARD.encode(sealed),
            "AEF1Q3woI5VkZ9H+FS6Do/rmTCB3Nos//6EH4m8C6uhqySl7QA9QvJ49RP2EJL6AhMYdQoRr9iIXXuol7ODJ6XfUaVJXn7l2IWfvonys5xjfKbOxoML3Nc1CO38IQI42xLMt2LhAXuocYgufe+1GOlTOpndD0nucBanMnGv/OHU="
        );
    }
}
