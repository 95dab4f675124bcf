//! The parsers of single values: secrets and their `_FILE` variables, URLs, address
//! lists, durations. Each error names the setting, never a secret's value.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, RedisMode, TlsSettings};

/// Reads a secret from its variable (`secret_var`) or from the file its `_FILE` variable
/// names (Docker and Kubernetes mount secrets as files, usually with a trailing newline),
/// with the variable it came from, for the errors about its value.
pub(super) fn resolve_secret<'v>(
    secret: Option<SecretString>,
    file: Option<PathBuf>,
    secret_var: &'v str,
    file_var: &'v str,
) -> Result<Option<(SecretString, &'v str)>, ConfigError> {
    use secrecy::ExposeSecret;
    let secret = secret.filter(|s| !s.expose_secret().trim().is_empty());
    let file = file.filter(|path| !path.as_os_str().is_empty());
    match (secret, file) {
        (Some(_), Some(_)) => Err(ConfigError::ConflictingSecret {
            secret_var: secret_var.to_owned(),
            file_var: file_var.to_owned(),
        }),
        (Some(secret), None) => Ok(Some((secret, secret_var))),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let contents =
                std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
                    var: file_var.to_owned(),
                    path: path.clone(),
                    source,
                })?;
            let trimmed = contents.trim();
            if trimmed.is_empty() {
                return Err(ConfigError::EmptySecretFile {
                    var: file_var.to_owned(),
                    path,
                });
            }
            Ok(Some((SecretString::from(trimmed), file_var)))
        }
    }
}

/// HTTPS needs both files, or neither.
pub(super) fn tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    reload_check_ms: u64,
) -> Result<Option<TlsSettings>, ConfigError> {
    let given = |path: Option<PathBuf>| path.filter(|p| !p.as_os_str().is_empty());
    match (given(cert), given(key)) {
        (None, None) => Ok(None),
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsSettings {
            cert_file,
            key_file,
            reload_check: positive_ms("tls_reload_check_ms", reload_check_ms)?,
        })),
        (Some(_), None) => Err(invalid(
            "WXLOGIN_TLS_KEY_FILE",
            "is needed with WXLOGIN_TLS_CERT_FILE to serve HTTPS",
        )),
        (None, Some(_)) => Err(invalid(
            "WXLOGIN_TLS_CERT_FILE",
            "is needed with WXLOGIN_TLS_KEY_FILE to serve HTTPS",
        )),
    }
}

/// Checks that the Redis URL (each seed's, in cluster mode) parses, without ever putting
/// it in the message: it may hold a password.
pub(super) fn redis_url(
    url: Option<SecretString>,
    mode: RedisMode,
) -> Result<SecretString, ConfigError> {
    use secrecy::ExposeSecret;
    let url = url
        .filter(|u| !u.expose_secret().trim().is_empty())
        .ok_or(ConfigError::MissingRedisUrl)?;
    let parses = |one: &str| redis::Client::open(one.trim()).is_ok();
    match mode {
        RedisMode::Standalone if parses(url.expose_secret()) => Ok(url),
        RedisMode::Standalone if url.expose_secret().split(',').all(parses) => Err(invalid(
            "WXLOGIN_REDIS_URL",
            "lists several nodes: set WXLOGIN_REDIS_MODE=cluster to use a Redis Cluster",
        )),
        RedisMode::Standalone => Err(invalid(
            "WXLOGIN_REDIS_URL",
            "expected redis://[user:password@]host:port[/db] or rediss://…",
        )),
        RedisMode::Cluster => match cluster_seeds(&url).iter().position(|seed| !parses(seed)) {
            None => Ok(url),
            Some(n) => Err(invalid(
                "WXLOGIN_REDIS_URL",
                &format!(
                    "seed {} is not a node URL: expected redis://[user:password@]host:port or rediss://…, separated by commas",
                    n + 1
                ),
            )),
        },
    }
}

/// The seed nodes of a cluster URL list, in order.
pub fn cluster_seeds(url: &SecretString) -> Vec<&str> {
    use secrecy::ExposeSecret;
    url.expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .collect()
}

pub(super) fn trusted_proxies(list: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        "trusted_proxies",
                        &format!("{item:?} is neither an IP address nor a network like 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

pub(super) fn parse_base_url(key: &'static str, raw: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(raw).map_err(|e| {
        invalid(
            key,
            &format!("{e} (expected e.g. https://api.weixin.qq.com)"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(invalid(key, "must be an http(s) URL without a query"));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

pub(super) fn positive_ms(key: &'static str, ms: u64) -> Result<Duration, ConfigError> {
    match ms {
        0 => Err(invalid(key, "must be at least 1")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

pub(super) fn positive_secs(key: &'static str, secs: u64) -> Result<Duration, ConfigError> {
    positive_ms(key, secs).map(|_| Duration::from_secs(secs))
}

pub(super) fn invalid(key: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    }
}
