//! Short-lived signed JWTs for gateways that only trust JWTs: on when
//! `WXLOGIN_JWT_ISSUER` is set. The signing key and the keys still published after a
//! rotation come from files, which is how replicas share them; what the files hold is
//! checked at start-up by the `jwt` module, which names the file, never the key.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::ConfigError;
use super::values::invalid;

/// The longest a JWT may live: a JWT cannot be revoked, so it must be short.
pub const MAX_JWT_TTL_SECS: u64 = 3600;

#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// An https URL without a trailing slash: the `iss` of every JWT, and the base of the
    /// metadata's URLs.
    pub issuer: String,
    /// The signing key: a PKCS#8 PEM file (`WXLOGIN_JWT_KEY_FILE`), as read.
    pub key: KeyFile,
    /// Keys still published for verification after a rotation (`WXLOGIN_JWT_OLD_KEYS_FILE`).
    pub old_keys: Option<KeyFile>,
    pub ttl: Duration,
}

/// A file of PEM keys, and its path for the errors about what it holds.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub var: &'static str,
    pub path: PathBuf,
    pub pem: SecretString,
}

pub(super) fn jwt(
    issuer: &str,
    key_file: Option<PathBuf>,
    old_keys_file: Option<PathBuf>,
    ttl_secs: u64,
) -> Result<Option<JwtSettings>, ConfigError> {
    let issuer = issuer.trim();
    if issuer.is_empty() {
        return Ok(None);
    }
    let url = reqwest::Url::parse(issuer).map_err(|e| {
        invalid(
            "WXLOGIN_JWT_ISSUER",
            &format!("{e} (expected e.g. https://login.example.com)"),
        )
    })?;
    if url.scheme() != "https" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "WXLOGIN_JWT_ISSUER",
            "must be an https URL without a query or fragment (RFC 8414 §2)",
        ));
    }
    if !(1..=MAX_JWT_TTL_SECS).contains(&ttl_secs) {
        return Err(invalid(
            "WXLOGIN_JWT_TTL_SECS",
            &format!(
                "must be 1 to {MAX_JWT_TTL_SECS} seconds: a JWT cannot be revoked, so it lives briefly"
            ),
        ));
    }
    let key = key_file
        .filter(|path| !path.as_os_str().is_empty())
        .ok_or_else(|| {
            invalid(
                "WXLOGIN_JWT_KEY_FILE",
                "is required with WXLOGIN_JWT_ISSUER: a P-256 private key in PKCS#8 PEM, as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` makes",
            )
        })?;
    let old_keys = old_keys_file.filter(|path| !path.as_os_str().is_empty());
    Ok(Some(JwtSettings {
        issuer: issuer.trim_end_matches('/').to_owned(),
        key: read("WXLOGIN_JWT_KEY_FILE", key)?,
        old_keys: old_keys
            .map(|path| read("WXLOGIN_JWT_OLD_KEYS_FILE", path))
            .transpose()?,
        ttl: Duration::from_secs(ttl_secs),
    }))
}

fn read(var: &'static str, path: PathBuf) -> Result<KeyFile, ConfigError> {
    let pem = std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
        var: var.to_owned(),
        path: path.clone(),
        source,
    })?;
    if pem.trim().is_empty() {
        return Err(ConfigError::EmptySecretFile {
            var: var.to_owned(),
            path,
        });
    }
    Ok(KeyFile {
        var,
        path,
        pem: SecretString::from(pem),
    })
}
