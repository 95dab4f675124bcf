//! The credentials of the team's other backends, which fetch the apps' access_tokens from
//! wxlogin: `WXLOGIN_BACKEND_TOKENS` (or `_FILE`), a list of `NAME=TOKEN` pairs separated
//! by commas or newlines. Each name is the backend's, in audit lines and metrics; several
//! let an operator rotate one backend's credential alone.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, MIN_ADMIN_TOKEN_CHARS};

/// One backend's name and credential.
#[derive(Debug, Clone)]
pub struct BackendCredential {
    pub name: String,
    pub token: SecretString,
}

/// The backend routes, on when at least one credential is configured.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    pub credentials: Vec<BackendCredential>,
}

pub(super) fn backends(
    tokens: Option<SecretString>,
    tokens_file: Option<PathBuf>,
) -> Result<Option<BackendSettings>, ConfigError> {
    let Some((list, var)) = super::values::resolve_secret(
        tokens,
        tokens_file,
        "WXLOGIN_BACKEND_TOKENS",
        "WXLOGIN_BACKEND_TOKENS_FILE",
    )?
    else {
        return Ok(None);
    };
    let credentials = parse(list.expose_secret(), var)?;
    Ok((!credentials.is_empty()).then_some(BackendSettings { credentials }))
}

/// The pairs in `list`; an error names `var` and the entry's name (or its position), never
/// a token.
fn parse(list: &str, var: &'static str) -> Result<Vec<BackendCredential>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { key: var, reason };
    let mut credentials: Vec<BackendCredential> = Vec::new();
    let entries = list
        .split([',', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty() && !entry.starts_with('#'));
    for (n, entry) in entries.enumerate() {
        let Some((name, token)) = entry.split_once('=') else {
            return Err(invalid(format!("entry {} is not NAME=TOKEN", n + 1)));
        };
        let (name, token) = (name.trim(), token.trim());
        let valid_name = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(invalid(format!(
                "entry {}: a name is 1 to 32 of a-z, 0-9, _ and -",
                n + 1
            )));
        }
        if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            return Err(invalid(format!(
                "the token of {name} must be at least 32 characters: make one with `head -c 32 /dev/urandom | base64`"
            )));
        }
        if credentials.iter().any(|known| known.name == name) {
            return Err(invalid(format!("{name} is named twice")));
        }
        credentials.push(BackendCredential {
            name: name.to_owned(),
            token: SecretString::from(token),
        });
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn pairs_are_read_by_comma_or_line_and_errors_name_the_entry_never_the_token() {
        let list = format!("messages={TOKEN},\n# the QR service\nqr-codes = {TOKEN}x\n");
        let read = parse(&list, "WXLOGIN_BACKEND_TOKENS").expect("two");
        let names: Vec<&str> = read.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["messages", "qr-codes"]);
        assert!(!format!("{read:?}").contains(TOKEN), "Debug hides tokens");

        for (bad, says) in [
            ("messages=short-token".to_owned(), "messages"),
            (format!("Messages={TOKEN}"), "entry 1"),
            (format!("a={TOKEN},{TOKEN}"), "entry 2"),
            (format!("a={TOKEN},a={TOKEN}x"), "a is named twice"),
        ] {
            let err = parse(&bad, "WXLOGIN_BACKEND_TOKENS_FILE").expect_err(&bad);
            let text = err.to_string();
            assert!(text.contains("WXLOGIN_BACKEND_TOKENS_FILE"), "{text}");
            assert!(text.contains(says), "{text}");
            assert!(
                !text.contains("short-token") && !text.contains("AAECAw"),
                "{text}"
            );
        }
        assert!(backends(None, None).expect("off").is_none());
    }
}
