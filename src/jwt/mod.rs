//! Short-lived JWTs that stand for a live session, for gateways that only trust JWTs
//! (Envoy's `jwt_authn`, Istio, Kong): signed here with ES256, verified by anyone with the
//! JWKS. The session stays the source of truth: a JWT never outlives it, and introspection
//! answers a JWT of a revoked session inactive at once. This module signs and verifies;
//! whether a session lives is the session store's to say.

mod keys;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwtSettings;
pub use keys::{ALGORITHM, KeyError, Keys};

/// What a JWT says. `sid` names the session the way the stores do (the base64url SHA-256
/// of its token), which no one can work the token out from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user's openid in the app.
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    /// The app's name in wxlogin's configuration.
    pub app: String,
    pub appid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    pub sid: String,
}

/// Whom a JWT is for: the session's user, app and id.
pub struct Subject<'a> {
    pub openid: &'a str,
    pub unionid: Option<&'a str>,
    pub app: &'a str,
    pub appid: &'a str,
    pub audience: &'a str,
    pub sid: String,
}

/// A signed JWT, and the seconds it lives.
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
}

/// Signs JWTs for sessions, and checks the ones it signed. Built once, at start-up.
pub struct JwtIssuer {
    issuer: String,
    ttl_secs: u64,
    keys: Keys,
}

impl JwtIssuer {
    pub fn new(settings: &JwtSettings) -> Result<Self, KeyError> {
        Ok(Self {
            issuer: settings.issuer.clone(),
            ttl_secs: settings.ttl.as_secs(),
            keys: Keys::load(&settings.key, settings.old_keys.as_ref())?,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A JWT for `subject` at `now`, ending with the TTL or the session, whichever is
    /// first (`session_expires_at` is after `now`: the session is live).
    pub fn issue(
        &self,
        subject: Subject<'_>,
        now: u64,
        session_expires_at: u64,
    ) -> Result<Issued, jsonwebtoken::errors::Error> {
        let exp = session_expires_at.min(now + self.ttl_secs);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.openid.to_owned(),
            aud: subject.audience.to_owned(),
            iat: now,
            nbf: now,
            exp,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            app: subject.app.to_owned(),
            appid: subject.appid.to_owned(),
            unionid: subject.unionid.map(str::to_owned),
            sid: subject.sid,
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.keys.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.keys.signing)?;
        Ok(Issued {
            token,
            expires_in: exp - now,
        })
    }

    /// The claims of a JWT this issuer signed, with one of its published keys, that is
    /// valid at `now`; `None` for anything else: another algorithm (`none`, HS256 keyed
    /// with the public key), an unknown key, a bad signature, another issuer, expired.
    pub fn verify(&self, token: &str, now: u64) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != ALGORITHM {
            return None;
        }
        let key = self.keys.find(header.kid.as_deref()?)?;
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&self.issuer]);
        // The audience is the app's, whichever it is; the times are checked against the
        // clock the stores keep.
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["iss", "sub", "aud", "exp", "nbf"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .ok()?
            .claims;
        (claims.nbf <= now && now < claims.exp).then_some(claims)
    }

    /// Every public key, current and old, as a JWK Set.
    pub fn jwks(&self) -> JwkSet {
        self.keys.jwks()
    }
}

#[cfg(test)]
mod tests;
