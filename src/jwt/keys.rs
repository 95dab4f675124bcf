//! The signing key and the keys still published after a rotation: ES256 on P-256, read
//! from PKCS#8 PEM files, each named by its RFC 7638 thumbprint.

use std::path::PathBuf;

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use secrecy::ExposeSecret;

use crate::config::KeyFile;

/// The one algorithm wxlogin signs with, and the only one it verifies.
pub const ALGORITHM: Algorithm = Algorithm::ES256;

/// A key file that holds no usable key. Names the file and the cause, never the key.
#[derive(Debug, thiserror::Error)]
#[error("{var} {}: {cause}", path.display())]
pub struct KeyError {
    var: &'static str,
    path: PathBuf,
    cause: &'static str,
}

/// A key others verify with: its public half as a JWK, and what checks a signature.
pub struct PublicKey {
    pub kid: String,
    pub jwk: Jwk,
    pub decoding: DecodingKey,
}

/// The current key, which signs, and every key published.
pub struct Keys {
    pub signing: EncodingKey,
    pub kid: String,
    /// The current key's public half first, then the old ones.
    pub published: Vec<PublicKey>,
}

impl Keys {
    pub fn load(current: &KeyFile, old: Option<&KeyFile>) -> Result<Self, KeyError> {
        let blocks = pem_blocks(current)?;
        let [block] = &blocks[..] else {
            return Err(error(
                current,
                "holds more than one key: the signing key is one",
            ));
        };
        if block.tag() != "PRIVATE KEY" {
            return Err(error(current, NOT_A_PRIVATE_KEY));
        }
        let signing = EncodingKey::from_ec_der(block.contents());
        let jwk = Jwk::from_encoding_key(&signing, ALGORITHM)
            .map_err(|_| error(current, NOT_A_PRIVATE_KEY))?;
        let current_key = published(jwk).ok_or_else(|| error(current, NOT_A_PRIVATE_KEY))?;
        let mut keys = Self {
            signing,
            kid: current_key.kid.clone(),
            published: vec![current_key],
        };
        if let Some(old) = old {
            for block in pem_blocks(old)? {
                let jwk = match block.tag() {
                    "PRIVATE KEY" => Jwk::from_encoding_key(
                        &EncodingKey::from_ec_der(block.contents()),
                        ALGORITHM,
                    ),
                    "PUBLIC KEY" => DecodingKey::from_ec_pem(pem::encode(&block).as_bytes())
                        .and_then(|key| Jwk::from_decoding_key(&key, Some(ALGORITHM))),
                    _ => return Err(error(old, NOT_AN_OLD_KEY)),
                };
                let key = jwk
                    .ok()
                    .and_then(published)
                    .ok_or_else(|| error(old, NOT_AN_OLD_KEY))?;
                if keys.published.iter().all(|known| known.kid != key.kid) {
                    keys.published.push(key);
                }
            }
        }
        Ok(keys)
    }

    /// The public keys as a JWK Set (RFC 7517 §5).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.published.iter().map(|key| key.jwk.clone()).collect(),
        }
    }

    pub fn find(&self, kid: &str) -> Option<&PublicKey> {
        self.published.iter().find(|key| key.kid == kid)
    }
}

const NOT_A_PRIVATE_KEY: &str =
    "is not a P-256 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)";
const NOT_AN_OLD_KEY: &str =
    "holds something other than P-256 keys in PEM (PKCS#8 private keys or SPKI public keys)";

fn pem_blocks(file: &KeyFile) -> Result<Vec<pem::Pem>, KeyError> {
    let blocks = pem::parse_many(file.pem.expose_secret().as_bytes())
        .map_err(|_| error(file, "is not PEM"))?;
    if blocks.is_empty() {
        return Err(error(file, "holds no PEM block"));
    }
    Ok(blocks)
}

/// A P-256 public key, named by its thumbprint, ready to publish and to verify with.
fn published(mut jwk: Jwk) -> Option<PublicKey> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    let AlgorithmParameters::EllipticCurve(params) = &jwk.algorithm else {
        return None;
    };
    if params.curve != EllipticCurve::P256 {
        return None;
    }
    let decoding = DecodingKey::from_ec_components(&params.x, &params.y).ok()?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256).ok()?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Some(PublicKey { kid, jwk, decoding })
}

fn error(file: &KeyFile, cause: &'static str) -> KeyError {
    KeyError {
        var: file.var,
        path: file.path.clone(),
        cause,
    }
}
