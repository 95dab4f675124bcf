//! The operator's levers: the admin API (its token and, if wanted, a listener of its own)
//! and the keys that seal session_keys at rest in Redis.

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;
use super::values::invalid;

/// Anything shorter is guessable from a log of failed attempts; 32 base64 characters
/// hold 192 bits.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// The admin API, on when a token is configured.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// What `Authorization: Bearer` must carry on every `/admin` request.
    pub token: SecretString,
}

/// The AES-256-GCM keys session_keys are sealed with in Redis, as base64 of 32 bytes each
/// (checked here, decoded where they are used).
#[derive(Debug, Clone, Default)]
pub struct StoreKeySettings {
    /// Seals every session_key written; `None`: they are written as WeChat gave them.
    pub current: Option<SecretString>,
    /// Earlier keys, for reading what they sealed until it is written again.
    pub old: Vec<SecretString>,
}

/// Where the admin API, the backend routes and `/metrics` are served instead of the public
/// listener (`WXLOGIN_ADMIN_LISTEN`), if anywhere: only while one of the first two is on.
pub(super) fn private_listen(
    listen: &str,
    admin_on: bool,
    backends_on: bool,
) -> Result<Option<SocketAddr>, ConfigError> {
    let listen = match listen.trim() {
        "" => return Ok(None),
        addr => addr.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "WXLOGIN_ADMIN_LISTEN",
                "expected an address to bind, such as 127.0.0.1:9090",
            )
        })?,
    };
    if !admin_on && !backends_on {
        return Err(invalid(
            "WXLOGIN_ADMIN_LISTEN",
            "is set, but neither the admin API nor the backend routes are on: set WXLOGIN_ADMIN_TOKEN_FILE or WXLOGIN_BACKEND_TOKENS_FILE",
        ));
    }
    Ok(Some(listen))
}

pub(super) fn admin(
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
) -> Result<Option<AdminSettings>, ConfigError> {
    let token = super::values::resolve_secret(
        token,
        token_file,
        "WXLOGIN_ADMIN_TOKEN",
        "WXLOGIN_ADMIN_TOKEN_FILE",
    )?;
    let Some((token, var)) = token else {
        return Ok(None);
    };
    if token.expose_secret().chars().count() < MIN_ADMIN_TOKEN_CHARS {
        return Err(invalid(
            var,
            "must be at least 32 characters: make one with `head -c 32 /dev/urandom | base64`",
        ));
    }
    Ok(Some(AdminSettings { token }))
}

pub(super) fn store_keys(
    key: Option<SecretString>,
    key_file: Option<PathBuf>,
    old_keys_file: Option<PathBuf>,
) -> Result<StoreKeySettings, ConfigError> {
    let current = super::values::resolve_secret(
        key,
        key_file,
        "WXLOGIN_STORE_KEY",
        "WXLOGIN_STORE_KEY_FILE",
    )?;
    if let Some((key, var)) = &current
        && !is_key(key.expose_secret())
    {
        return Err(invalid(var, NOT_A_KEY));
    }
    let old = match old_keys_file.filter(|p| !p.as_os_str().is_empty()) {
        None => Vec::new(),
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
                    var: "WXLOGIN_STORE_OLD_KEYS_FILE".to_owned(),
                    path,
                    source,
                })?;
            old_keys(&text)?
        }
    };
    Ok(StoreKeySettings {
        current: current.map(|(key, _)| key),
        old,
    })
}

const NOT_A_KEY: &str =
    "expected 32 random bytes in base64, as `head -c 32 /dev/urandom | base64` makes";

/// One key per line; blank lines and `#` comments are skipped.
fn old_keys(text: &str) -> Result<Vec<SecretString>, ConfigError> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !is_key(line) {
            // The line number, never the line: it may be a key with a typo.
            return Err(ConfigError::Invalid {
                key: "WXLOGIN_STORE_OLD_KEYS_FILE",
                reason: format!("line {}: {NOT_A_KEY}", n + 1),
            });
        }
        keys.push(SecretString::from(line));
    }
    Ok(keys)
}

fn is_key(text: &str) -> bool {
    STANDARD
        .decode(text.trim())
        .is_ok_and(|bytes| bytes.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn the_admin_api_is_off_without_a_token_and_refuses_a_short_one() {
        assert!(admin(None, None).expect("off").is_none());
        let short = admin(Some("tooshort-tooshort".into()), None).expect_err("short");
        assert!(short.to_string().contains("WXLOGIN_ADMIN_TOKEN"), "{short}");
        assert!(short.to_string().contains("32 characters"), "{short}");
        assert!(!short.to_string().contains("tooshort"), "{short}");

        let listen_alone = private_listen("127.0.0.1:9090", false, false).expect_err("no token");
        assert!(
            listen_alone
                .to_string()
                .contains("WXLOGIN_ADMIN_TOKEN_FILE")
        );
        for (admin_on, backends_on) in [(true, false), (false, true)] {
            let listen = private_listen("127.0.0.1:9090", admin_on, backends_on).expect("valid");
            assert_eq!(listen.map(|a| a.port()), Some(9090));
        }

        let on = admin(Some(KEY.into()), None).expect("valid").expect("on");
        assert!(!format!("{on:?}").contains(KEY), "Debug hides the token");
    }

    #[test]
    fn store_keys_must_be_32_bytes_of_base64_and_errors_never_show_them() {
        assert!(store_keys(Some(KEY.into()), None, None).is_ok());
        let err = store_keys(Some("c2hvcnQ=".into()), None, None).expect_err("short");
        assert!(err.to_string().contains("head -c 32"), "{err}");
        assert!(!err.to_string().contains("c2hvcnQ"), "{err}");

        let keys = old_keys(&format!("# retired 2026-11\n{KEY}\n\n")).expect("one key");
        assert_eq!(keys.len(), 1);
        let err = old_keys(&format!("{KEY}\nnot-a-key\n")).expect_err("line 2");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(!err.to_string().contains("not-a-key"), "{err}");
    }
}
