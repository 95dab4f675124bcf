//! The layering: built-in defaults, then the `WXLOGIN_CONFIG` file, then `WXLOGIN_*`
//! variables, read into the keys as spelled in TOML and turned into [`Settings`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::values::{
    invalid, parse_base_url, positive_ms, positive_secs, redis_url, tls, trusted_proxies,
};
use super::{
    ConfigError, LimitSettings, LogFormat, Mode, RedisMode, RedisSettings, ServerSettings,
    SessionSettings, Settings, StoreSettings, WeChatSettings, apps, backends, jwt, operator, web,
};

/// The defaults ship inside the binary, so it starts from any working directory
/// (a distroless container has no `config/` folder unless one is mounted).
const DEFAULTS: &str = include_str!("../../config/default.toml");
pub(super) const ENV_PREFIX: &str = "WXLOGIN_";
/// Names a TOML file whose keys override the defaults; not a setting itself.
const CONFIG_FILE_VAR: &str = "WXLOGIN_CONFIG";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoreKind {
    Memory,
    Redis,
}

/// The least share of the connections that `max_connections_per_client = 0` gives one
/// client: below it, a small deployment's cap would bite a busy NAT before any attacker.
const AUTO_MIN_PER_CLIENT: usize = 64;

/// The keys as they are spelled in TOML; each env var is `WXLOGIN_` + the key upper-cased.
#[derive(Deserialize)]
struct RawSettings {
    listen: SocketAddr,
    appid: Option<String>,
    secret: Option<SecretString>,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    apps: std::collections::BTreeMap<String, apps::RawApp>,
    wechat_base_url: String,
    wechat_open_base_url: String,
    public_url: String,
    wechat_connect_timeout_ms: u64,
    wechat_timeout_ms: u64,
    wechat_busy_retry_ms: u64,
    session_ttl_secs: u64,
    session_idle_secs: u64,
    session_max: u64,
    session_store: StoreKind,
    redis_url: Option<SecretString>,
    redis_mode: RedisMode,
    redis_timeout_ms: u64,
    redis_key_prefix: String,
    store_key: Option<SecretString>,
    store_key_file: Option<PathBuf>,
    store_old_keys_file: Option<PathBuf>,
    blocks_file: Option<PathBuf>,
    admin_token: Option<SecretString>,
    admin_token_file: Option<PathBuf>,
    admin_listen: String,
    backend_tokens: Option<SecretString>,
    backend_tokens_file: Option<PathBuf>,
    jwt_issuer: String,
    jwt_key_file: Option<PathBuf>,
    jwt_old_keys_file: Option<PathBuf>,
    jwt_ttl_secs: u64,
    blocked_message: String,
    log_format: LogFormat,
    shutdown_timeout_secs: u64,
    header_read_timeout_secs: u64,
    body_read_timeout_secs: u64,
    idle_timeout_secs: u64,
    max_connections: usize,
    max_connections_per_client: usize,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_reload_check_ms: u64,
    wechat_max_concurrent_calls: usize,
    rate_limit_per_min: u32,
    trusted_proxies: String,
    auth_cookie: String,
}

impl Settings {
    /// Loads settings from the defaults, the optional `WXLOGIN_CONFIG` file and the given
    /// environment (pass `std::env::vars_os()` in production, a fixed list in tests).
    pub fn load<I, K, V>(env: I, mode: Mode) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<std::ffi::OsString>,
        V: Into<std::ffi::OsString>,
    {
        let env = wxlogin_vars(env);
        let layers = layers(&env)?;
        let mut unknown = Vec::new();
        let raw: RawSettings = serde_ignored::deserialize(layers, |key| {
            let key = key.to_string();
            unknown.push(format!(
                "{ENV_PREFIX}{} ({key} in a config file)",
                key.to_ascii_uppercase()
            ));
        })?;
        raw.into_settings(mode, unknown, &env)
    }
}

/// The address the server listens on, from the same layers as [`Settings::load`], with
/// nothing else read or checked: what `wxlogin healthcheck` needs to find the server.
pub fn listen_addr<I, K, V>(env: I) -> Result<SocketAddr, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<std::ffi::OsString>,
    V: Into<std::ffi::OsString>,
{
    Ok(layers(&wxlogin_vars(env))?.get::<SocketAddr>("listen")?)
}

/// The defaults, then the `WXLOGIN_CONFIG` file if named, then the `WXLOGIN_*` variables
/// (but those that declare apps, which [`apps`] reads).
fn layers(env: &HashMap<String, String>) -> Result<config::Config, ConfigError> {
    let mut layers = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    if let Some(path) = env.get(CONFIG_FILE_VAR) {
        layers = layers.add_source(config::File::new(path, config::FileFormat::Toml));
    }
    for (name, value) in env {
        if name == CONFIG_FILE_VAR || apps::is_app_var(name) {
            continue;
        }
        if let Some(key) = name.strip_prefix(ENV_PREFIX) {
            layers = layers.set_override(key.to_ascii_lowercase(), value.as_str())?;
        }
    }
    Ok(layers.build()?)
}

/// Keeps the `WXLOGIN_*` variables whose name and value are valid UTF-8; `std::env::vars`
/// would panic on any other, and a stray non-UTF-8 variable is no reason not to start.
fn wxlogin_vars<I, K, V>(env: I) -> HashMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<std::ffi::OsString>,
    V: Into<std::ffi::OsString>,
{
    env.into_iter()
        .filter_map(|(k, v)| Some((k.into().into_string().ok()?, v.into().into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect()
}

impl RawSettings {
    fn into_settings(
        self,
        mode: Mode,
        unknown: Vec<String>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let ineffective = self.ineffective();
        let wechat = self.wechat(mode, env)?;
        let sessions = self.sessions()?;
        let server = self.server()?;
        let admin = operator::admin(self.admin_token, self.admin_token_file)?;
        let backends = backends::backends(self.backend_tokens, self.backend_tokens_file)?;
        let jwt = jwt::jwt(
            &self.jwt_issuer,
            self.jwt_key_file,
            self.jwt_old_keys_file,
            self.jwt_ttl_secs,
        )?;
        let private_listen =
            operator::private_listen(&self.admin_listen, admin.is_some(), backends.is_some())?;
        let auth_cookie = Some(self.auth_cookie.trim().to_owned()).filter(|c| !c.is_empty());
        let public_url =
            web::public_url(&self.public_url, &wechat.apps, auth_cookie.as_deref(), mode)?;
        Ok(Settings {
            listen: self.listen,
            wechat,
            sessions,
            log_format: self.log_format,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            limits: LimitSettings {
                per_ip_per_min: std::num::NonZeroU32::new(self.rate_limit_per_min),
                trusted_proxies: server.trusted_proxies.clone(),
            },
            server,
            auth_cookie,
            public_url,
            admin,
            backends,
            jwt,
            private_listen,
            blocked_message: match self.blocked_message.trim() {
                "" => return Err(invalid("blocked_message", "must not be empty")),
                message => message.to_owned(),
            },
            unknown,
            ineffective,
        })
    }

    /// The settings given that the others chosen make do nothing, each with why.
    fn ineffective(&self) -> Vec<String> {
        let given =
            |path: &Option<PathBuf>| path.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
        let mut ineffective = Vec::new();
        if self.session_store == StoreKind::Memory
            && (self.store_key.is_some()
                || given(&self.store_key_file)
                || given(&self.store_old_keys_file))
        {
            ineffective.push(
                "WXLOGIN_STORE_KEY_FILE (and WXLOGIN_STORE_KEY, WXLOGIN_STORE_OLD_KEYS_FILE) seal session_keys in Redis; the memory store never writes them anywhere"
                    .to_owned(),
            );
        }
        if self.jwt_issuer.trim().is_empty()
            && (given(&self.jwt_key_file) || given(&self.jwt_old_keys_file))
        {
            ineffective.push(
                "WXLOGIN_JWT_KEY_FILE (and WXLOGIN_JWT_OLD_KEYS_FILE) sign JWTs, which are off without WXLOGIN_JWT_ISSUER"
                    .to_owned(),
            );
        }
        if self.session_store == StoreKind::Redis && given(&self.blocks_file) {
            ineffective.push(
                "WXLOGIN_BLOCKS_FILE keeps the memory store's blocks; Redis keeps its own"
                    .to_owned(),
            );
        }
        ineffective
    }

    fn wechat(
        &self,
        mode: Mode,
        env: &HashMap<String, String>,
    ) -> Result<WeChatSettings, ConfigError> {
        let legacy = apps::Legacy {
            appid: self.appid.clone(),
            secret: self.secret.clone(),
            secret_file: self.secret_file.clone(),
        };
        Ok(WeChatSettings {
            apps: apps::apps(legacy, self.apps.clone(), env, mode)?,
            base_url: parse_base_url("wechat_base_url", &self.wechat_base_url)?,
            open_base_url: parse_base_url("wechat_open_base_url", &self.wechat_open_base_url)?,
            connect_timeout: positive_ms(
                "wechat_connect_timeout_ms",
                self.wechat_connect_timeout_ms,
            )?,
            timeout: positive_ms("wechat_timeout_ms", self.wechat_timeout_ms)?,
            busy_retry_delay: Duration::from_millis(self.wechat_busy_retry_ms),
            max_concurrent_calls: at_least_one(
                "wechat_max_concurrent_calls",
                self.wechat_max_concurrent_calls,
            )?,
        })
    }

    fn sessions(&self) -> Result<SessionSettings, ConfigError> {
        let store = match self.session_store {
            StoreKind::Memory => StoreSettings::Memory,
            StoreKind::Redis => StoreSettings::Redis(RedisSettings {
                url: redis_url(self.redis_url.clone(), self.redis_mode)?,
                mode: self.redis_mode,
                timeout: positive_ms("redis_timeout_ms", self.redis_timeout_ms)?,
                key_prefix: self.redis_key_prefix.clone(),
                store_keys: operator::store_keys(
                    self.store_key.clone(),
                    self.store_key_file.clone(),
                    self.store_old_keys_file.clone(),
                )?,
            }),
        };
        let ttl = positive_secs("session_ttl_secs", self.session_ttl_secs)?;
        let idle = match self.session_idle_secs {
            0 => None,
            secs if secs > ttl.as_secs() => {
                return Err(invalid(
                    "session_idle_secs",
                    "must be 0 (off) or at most session_ttl_secs",
                ));
            }
            secs => Some(Duration::from_secs(secs)),
        };
        Ok(SessionSettings {
            ttl,
            idle,
            max_sessions: at_least_one("session_max", self.session_max)?,
            store,
            blocks_file: self
                .blocks_file
                .clone()
                .filter(|path| !path.as_os_str().is_empty()),
        })
    }

    fn server(&self) -> Result<ServerSettings, ConfigError> {
        let max_connections = at_least_one("max_connections", self.max_connections)?;
        Ok(ServerSettings {
            header_read_timeout: positive_secs(
                "header_read_timeout_secs",
                self.header_read_timeout_secs,
            )?,
            body_read_timeout: positive_secs(
                "body_read_timeout_secs",
                self.body_read_timeout_secs,
            )?,
            idle_timeout: positive_secs("idle_timeout_secs", self.idle_timeout_secs)?,
            max_connections,
            max_connections_per_client: match self.max_connections_per_client {
                0 => (max_connections / 4).max(AUTO_MIN_PER_CLIENT),
                n => n,
            },
            trusted_proxies: trusted_proxies(&self.trusted_proxies)?,
            tls: tls(
                self.tls_cert_file.clone(),
                self.tls_key_file.clone(),
                self.tls_reload_check_ms,
            )?,
        })
    }
}

fn at_least_one<N: PartialEq + From<u8>>(key: &'static str, n: N) -> Result<N, ConfigError> {
    if n == N::from(0) {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(n)
}
