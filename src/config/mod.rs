//! Typed settings, layered: built-in defaults (`config/default.toml`), then an optional
//! TOML file named by `WXLOGIN_CONFIG`, then `WXLOGIN_*` environment variables.
//! `settings` holds the types, `loading` the layering, `values` the parsers of single values;
//! the apps, the operator's secrets and the backends' credentials have a file each.

mod apps;
mod backends;
mod jwt;
mod loading;
mod operator;
mod settings;
mod values;
mod web;

use std::path::PathBuf;

pub use apps::describe as describe_apps;
pub use backends::{BackendCredential, BackendSettings};
pub use jwt::{JwtSettings, KeyFile, MAX_JWT_TTL_SECS};
pub use loading::listen_addr;
pub use operator::{AdminSettings, MIN_ADMIN_TOKEN_CHARS, StoreKeySettings};
pub use settings::{
    LimitSettings, LogFormat, Mode, RedisMode, RedisSettings, ServerSettings, SessionSettings,
    Settings, StoreSettings, TlsSettings, WeChatSettings,
};
pub use values::cluster_seeds;

pub use crate::domain::{ConfiguredApp, Credentials};

/// The appid `--dev` runs under, against the built-in emulator. Shaped like a real one, and
/// obviously not one.
pub const DEV_APPID: &str = "wx0000000000000dev";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "missing {}: set {} in the environment, or run `wxlogin --dev` to use the built-in WeChat emulator",
        .0.join(" and "),
        if .0.len() == 1 { "it" } else { "them" }
    )]
    MissingCredentials(Vec<&'static str>),
    #[error("set only one of {secret_var} and {file_var}")]
    ConflictingSecret {
        secret_var: String,
        file_var: String,
    },
    #[error("cannot read {var} {path}: {source}")]
    SecretFile {
        var: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{var} {path} is empty")]
    EmptySecretFile { var: String, path: PathBuf },
    #[error("app {app} {reason}")]
    InvalidApp { app: String, reason: String },
    #[error("missing WXLOGIN_REDIS_URL: it is required with WXLOGIN_SESSION_STORE=redis")]
    MissingRedisUrl,
    #[error("invalid {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("invalid configuration: {0}")]
    Layers(#[from] config::ConfigError),
}

#[cfg(test)]
mod tests;

/// What the tests of every part of the configuration load settings with.
#[cfg(test)]
mod testing {
    use std::path::PathBuf;

    use super::{ConfigError, Mode, Settings};

    pub(super) fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(vars.iter().map(|(k, v)| (*k, *v)), Mode::Production)
    }

    /// `base` with `more` after it: a test's variables on top of another's.
    pub(super) fn with<'a>(
        base: &[(&'a str, &'a str)],
        more: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        [base, more].concat()
    }

    /// Writes `contents` to a file in a fresh directory of its own; returns both paths.
    pub(super) fn temp_file(name: &str, contents: &str) -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("wxlogin-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        (dir, path)
    }
}
