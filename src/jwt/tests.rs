use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;

use super::*;
use crate::config::KeyFile;

const ISSUER: &str = "https://login.example.com";
const NOW: u64 = 1_800_000_000;

fn p256_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .expect("a key")
        .serialize_pem()
}

fn file(var: &'static str, pem: &str) -> KeyFile {
    KeyFile {
        var,
        path: PathBuf::from(format!("/keys/{var}.pem")),
        pem: SecretString::from(pem.to_owned()),
    }
}

fn issuer(key: &str, old: Option<&str>) -> Result<JwtIssuer, KeyError> {
    JwtIssuer::new(&JwtSettings {
        issuer: ISSUER.to_owned(),
        key: file("WXLOGIN_JWT_KEY_FILE", key),
        old_keys: old.map(|pem| file("WXLOGIN_JWT_OLD_KEYS_FILE", pem)),
        ttl: Duration::from_secs(300),
    })
}

fn subject() -> Subject<'static> {
    Subject {
        openid: "oUser",
        unionid: Some("uPerson"),
        app: "default",
        appid: "wx123",
        audience: "wx123",
        sid: "c2Vzc2lvbg".to_owned(),
    }
}

fn parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let bytes = URL_SAFE_NO_PAD
            .decode(parts.next().expect("a part"))
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (next(), next())
}

#[test]
fn a_jwt_carries_the_claims_and_verifies_until_it_expires() {
    let jwt = issuer(&p256_pem(), None).expect("keys");
    let issued = jwt.issue(subject(), NOW, NOW + 7 * 86400).expect("signed");
    assert_eq!(issued.expires_in, 300);
    let (header, claims) = parts(&issued.token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(
        header["kid"],
        jwt.jwks().keys[0].common.key_id.clone().expect("kid")
    );
    assert_eq!(claims["sub"], "oUser");
    assert_eq!(claims["aud"], "wx123");
    assert_eq!(claims["exp"], NOW + 300);
    assert_eq!(claims["unionid"], "uPerson");
    let verified = jwt.verify(&issued.token, NOW + 299).expect("valid");
    assert_eq!(verified.sid, "c2Vzc2lvbg");
    assert!(jwt.verify(&issued.token, NOW + 300).is_none(), "expired");
    assert!(
        jwt.verify(&issued.token, NOW - 1).is_none(),
        "not yet valid"
    );
}

#[test]
fn a_jwt_never_outlives_its_session() {
    let jwt = issuer(&p256_pem(), None).expect("keys");
    let issued = jwt.issue(subject(), NOW, NOW + 42).expect("signed");
    assert_eq!(issued.expires_in, 42);
    assert_eq!(parts(&issued.token).1["exp"], NOW + 42);
}

#[test]
fn after_a_rotation_the_old_keys_jwts_still_verify_and_new_ones_name_the_new_key() {
    let (old_pem, new_pem) = (p256_pem(), p256_pem());
    let before = issuer(&old_pem, None).expect("keys");
    let old_jwt = before
        .issue(subject(), NOW, NOW + 3600)
        .expect("signed")
        .token;
    let after = issuer(&new_pem, Some(&old_pem)).expect("keys");
    assert_eq!(after.jwks().keys.len(), 2);
    assert!(after.verify(&old_jwt, NOW + 1).is_some());
    let new_jwt = after
        .issue(subject(), NOW, NOW + 3600)
        .expect("signed")
        .token;
    assert_ne!(parts(&new_jwt).0["kid"], parts(&old_jwt).0["kid"]);
    assert!(
        before.verify(&new_jwt, NOW + 1).is_none(),
        "the old issuer knows no new key"
    );
}

#[test]
fn forged_jwts_do_not_verify() {
    let jwt = issuer(&p256_pem(), None).expect("keys");
    let genuine = jwt.issue(subject(), NOW, NOW + 3600).expect("signed").token;
    let (header, claims) = parts(&genuine);
    let encode = |value: &serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());

    let mut none = header.clone();
    none["alg"] = "none".into();
    let unsigned = format!("{}.{}.", encode(&none), encode(&claims));
    assert!(jwt.verify(&unsigned, NOW + 1).is_none(), "alg none");

    // HS256 keyed with the public key, as published: the classic confusion.
    let mut hs = header.clone();
    hs["alg"] = "HS256".into();
    let signed = format!("{}.{}", encode(&hs), encode(&claims));
    let public = serde_json::to_string(&jwt.jwks().keys[0]).expect("JSON");
    let mut mac = Hmac::<Sha256>::new_from_slice(public.as_bytes()).expect("any key");
    mac.update(signed.as_bytes());
    let forged = format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert!(
        jwt.verify(&forged, NOW + 1).is_none(),
        "HS256 with the public key"
    );

    let mut other = claims.clone();
    other["sub"] = "oSomeoneElse".into();
    let (head, _) = genuine.split_once('.').expect("parts");
    let signature = genuine.rsplit('.').next().expect("a signature");
    let tampered = format!("{head}.{}.{signature}", encode(&other));
    assert!(jwt.verify(&tampered, NOW + 1).is_none(), "claims changed");

    let stranger = issuer(&p256_pem(), None).expect("keys");
    let foreign = stranger
        .issue(subject(), NOW, NOW + 3600)
        .expect("signed")
        .token;
    assert!(jwt.verify(&foreign, NOW + 1).is_none(), "another key");
    assert!(jwt.verify("not.a.jwt", NOW).is_none());
}

#[test]
fn a_key_file_without_a_p256_private_key_is_refused_naming_the_file_never_the_key() {
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .expect("a key")
        .serialize_pem();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .expect("a key")
        .serialize_pem();
    for pem in [p384.as_str(), ed.as_str(), "hello", ""] {
        let err = issuer(pem, None).err().expect("refused").to_string();
        assert!(
            err.starts_with("WXLOGIN_JWT_KEY_FILE /keys/WXLOGIN_JWT_KEY_FILE.pem:"),
            "{err}"
        );
        if let Some(body) = pem.lines().nth(1) {
            assert!(!err.contains(body), "never the key: {err}");
        }
    }
    let two = format!("{}{}", p256_pem(), p256_pem());
    assert!(issuer(&two, None).is_err(), "one signing key");
    let err = issuer(&p256_pem(), Some("junk"))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.starts_with("WXLOGIN_JWT_OLD_KEYS_FILE"), "{err}");
}
