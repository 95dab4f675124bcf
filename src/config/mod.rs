//! Typed settings, layered: built-in defaults (`config/default.toml`), then an optional
//! TOML file named by `WXLOGIN_CONFIG`, then `WXLOGIN_*` environment variables.

mod apps;
mod backends;
mod operator;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

pub use apps::describe as describe_apps;
pub use backends::{BackendCredential, BackendSettings};
pub use operator::{AdminSettings, MIN_ADMIN_TOKEN_CHARS, StoreKeySettings};

pub use crate::domain::{ConfiguredApp, Credentials};

/// The defaults ship inside the binary, so it starts from any working directory
/// (a distroless container has no `config/` folder unless one is mounted).
const DEFAULTS: &str = include_str!("../../config/default.toml");
const ENV_PREFIX: &str = "WXLOGIN_";
/// Names a TOML file whose keys override the defaults; not a setting itself.
const CONFIG_FILE_VAR: &str = "WXLOGIN_CONFIG";

/// The appid `--dev` runs under, against the built-in emulator. Shaped like a real one, and
/// obviously not one.
pub const DEV_APPID: &str = "wx0000000000000dev";

/// Whether WeChat is the real one or the built-in emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real WeChat: the app's credentials are required.
    Production,
    /// The built-in emulator: credentials are made up at start-up. Only ever chosen explicitly.
    Development,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub wechat: WeChatSettings,
    pub sessions: SessionSettings,
    pub log_format: LogFormat,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    pub server: ServerSettings,
    pub limits: LimitSettings,
    /// The cookie `GET /auth` also reads the session token from, for gateways in front of
    /// browsers (web views); `None` means the bearer header only.
    pub auth_cookie: Option<String>,
    /// The admin API; `None`: off, and every `/admin` route answers 404.
    pub admin: Option<AdminSettings>,
    /// The other backends' credentials; `None`: off, and every backend route answers 404.
    pub backends: Option<BackendSettings>,
    /// Where the admin API, the backend routes and `/metrics` are served instead of the
    /// public listener (`WXLOGIN_ADMIN_LISTEN`).
    pub private_listen: Option<SocketAddr>,
    /// What a blocked user's login is answered with. Never the operator's reason.
    pub blocked_message: String,
    /// Settings that were given but mean nothing to wxlogin: typos, or settings of another
    /// version. They are reported at start-up rather than ignored in silence.
    pub unknown: Vec<String>,
    /// Settings that were given but do nothing with the others chosen (a store key with the
    /// memory store, say), each with why: reported at start-up too.
    pub ineffective: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct WeChatSettings {
    /// Without a trailing slash: `https://api.weixin.qq.com`.
    pub base_url: String,
    /// The mini-programs served, in name order; at least one.
    pub apps: Vec<ConfiguredApp>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub busy_retry_delay: Duration,
    /// WeChat calls allowed in flight at once; past it, requests are shed with a 503.
    pub max_concurrent_calls: usize,
}

/// How the HTTP server treats connections: what a slow, idle or greedy client may hold.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// A request's whole header must arrive within this, or the connection is closed.
    pub header_read_timeout: Duration,
    /// A request's whole body must arrive within this (from its header), or it is
    /// answered `408 request_timeout`.
    pub body_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// Open connections at most; at the cap, the longest-idle one makes room, and a new
    /// connection is refused only when every one is busy.
    pub max_connections: usize,
    /// One client's share: open connections from one address (per /64 for IPv6) or,
    /// behind a trusted proxy, requests in progress for one forwarded address.
    pub max_connections_per_client: usize,
    /// The peers whose connections carry many clients, named in `X-Forwarded-For`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// HTTPS, when a certificate and key are configured.
    pub tls: Option<TlsSettings>,
}

/// The certificate chain and key to serve HTTPS with, as PEM files. They are read again
/// on SIGHUP, and when either file changes.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files are checked for a change.
    pub reload_check: Duration,
}

/// Inbound rate limiting, per client IP.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Login and phone-number requests per client IP per minute, refilled continuously,
    /// with a whole minute's worth as the burst. `None`: no limit.
    pub per_ip_per_min: Option<std::num::NonZeroU32>,
    /// Peers whose `X-Forwarded-For` is believed: the gateway, the load balancer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The absolute lifetime of a session, from its login.
    pub ttl: Duration,
    /// With sliding expiry, how long a session may go unused; never past `ttl`.
    pub idle: Option<Duration>,
    /// The memory store's bound; Redis is bounded by its own `maxmemory`.
    pub max_sessions: u64,
    pub store: StoreSettings,
    /// Where the memory store keeps operators' blocks across restarts; without it, the
    /// memory store refuses blocks. Redis keeps its own.
    pub blocks_file: Option<PathBuf>,
}

/// Where sessions and the access_token live.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    Memory,
    Redis(RedisSettings),
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub mode: RedisMode,
    /// Holds the password, if any: kept out of `Debug` output and logs. In cluster mode,
    /// one or more seed nodes, separated by commas.
    pub url: SecretString,
    pub timeout: Duration,
    pub key_prefix: String,
    /// What session_keys are sealed with at rest.
    pub store_keys: StoreKeySettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoreKind {
    Memory,
    Redis,
}

/// One Redis (or a proxy that hides a cluster), or a Redis Cluster that wxlogin talks to
/// node by node, following its redirections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    Standalone,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

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
        let legacy = apps::Legacy {
            appid: self.appid,
            secret: self.secret,
            secret_file: self.secret_file,
        };
        let apps = apps::apps(legacy, self.apps, env, mode)?;
        let base_url = parse_base_url(&self.wechat_base_url)?;
        let mut ineffective = Vec::new();
        let given =
            |path: &Option<PathBuf>| path.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
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
        let max_connections = match self.max_connections {
            0 => return Err(invalid("max_connections", "must be at least 1")),
            n => n,
        };
        let trusted_proxies = trusted_proxies(&self.trusted_proxies)?;
        let admin = operator::admin(self.admin_token, self.admin_token_file)?;
        let backends = backends::backends(self.backend_tokens, self.backend_tokens_file)?;
        let private_listen =
            operator::private_listen(&self.admin_listen, admin.is_some(), backends.is_some())?;
        let blocks_file = self.blocks_file.filter(|path| !path.as_os_str().is_empty());
        if self.session_store == StoreKind::Redis && blocks_file.is_some() {
            ineffective.push(
                "WXLOGIN_BLOCKS_FILE keeps the memory store's blocks; Redis keeps its own"
                    .to_owned(),
            );
        }
        let store = match self.session_store {
            StoreKind::Memory => StoreSettings::Memory,
            StoreKind::Redis => StoreSettings::Redis(RedisSettings {
                url: redis_url(self.redis_url, self.redis_mode)?,
                mode: self.redis_mode,
                timeout: positive_ms("redis_timeout_ms", self.redis_timeout_ms)?,
                key_prefix: self.redis_key_prefix,
                store_keys: operator::store_keys(
                    self.store_key,
                    self.store_key_file,
                    self.store_old_keys_file,
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
        Ok(Settings {
            listen: self.listen,
            wechat: WeChatSettings {
                base_url,
                apps,
                connect_timeout: positive_ms(
                    "wechat_connect_timeout_ms",
                    self.wechat_connect_timeout_ms,
                )?,
                timeout: positive_ms("wechat_timeout_ms", self.wechat_timeout_ms)?,
                busy_retry_delay: Duration::from_millis(self.wechat_busy_retry_ms),
                max_concurrent_calls: match self.wechat_max_concurrent_calls {
                    0 => return Err(invalid("wechat_max_concurrent_calls", "must be at least 1")),
                    n => n,
                },
            },
            sessions: SessionSettings {
                ttl,
                idle,
                max_sessions: match self.session_max {
                    0 => return Err(invalid("session_max", "must be at least 1")),
                    n => n,
                },
                store,
                blocks_file,
            },
            log_format: self.log_format,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            server: ServerSettings {
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
                trusted_proxies: trusted_proxies.clone(),
                tls: tls(
                    self.tls_cert_file,
                    self.tls_key_file,
                    self.tls_reload_check_ms,
                )?,
            },
            limits: LimitSettings {
                per_ip_per_min: std::num::NonZeroU32::new(self.rate_limit_per_min),
                trusted_proxies,
            },
            auth_cookie: Some(self.auth_cookie.trim().to_owned()).filter(|c| !c.is_empty()),
            admin,
            backends,
            private_listen,
            blocked_message: match self.blocked_message.trim() {
                "" => return Err(invalid("blocked_message", "must not be empty")),
                message => message.to_owned(),
            },
            unknown,
            ineffective,
        })
    }
}

/// Reads a secret from its variable (`secret_var`) or from the file its `_FILE` variable
/// names (Docker and Kubernetes mount secrets as files, usually with a trailing newline).
fn resolve_secret(
    secret: Option<SecretString>,
    file: Option<PathBuf>,
    secret_var: &str,
    file_var: &str,
) -> Result<Option<SecretString>, ConfigError> {
    use secrecy::ExposeSecret;
    let secret = secret.filter(|s| !s.expose_secret().trim().is_empty());
    let file = file.filter(|path| !path.as_os_str().is_empty());
    match (secret, file) {
        (Some(_), Some(_)) => Err(ConfigError::ConflictingSecret {
            secret_var: secret_var.to_owned(),
            file_var: file_var.to_owned(),
        }),
        (Some(secret), None) => Ok(Some(secret)),
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
            Ok(Some(SecretString::from(trimmed)))
        }
    }
}

/// HTTPS needs both files, or neither.
fn tls(
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
fn redis_url(url: Option<SecretString>, mode: RedisMode) -> Result<SecretString, ConfigError> {
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

fn trusted_proxies(list: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
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

fn parse_base_url(raw: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(raw).map_err(|e| {
        invalid(
            "wechat_base_url",
            &format!("{e} (expected e.g. https://api.weixin.qq.com)"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(invalid(
            "wechat_base_url",
            "must be an http(s) URL without a query",
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

fn positive_ms(key: &'static str, ms: u64) -> Result<Duration, ConfigError> {
    match ms {
        0 => Err(invalid(key, "must be at least 1")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

fn positive_secs(key: &'static str, secs: u64) -> Result<Duration, ConfigError> {
    positive_ms(key, secs).map(|_| Duration::from_secs(secs))
}

fn invalid(key: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(vars.iter().map(|(k, v)| (*k, *v)), Mode::Production)
    }

    /// Writes `contents` to a file in a fresh directory of its own; returns both paths.
    fn temp_file(name: &str, contents: &str) -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("wxlogin-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        (dir, path)
    }

    #[test]
    fn defaults_apply_when_only_credentials_are_set() {
        let s = load(&[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s3cr3t")]).expect("settings");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.wechat.base_url, "https://api.weixin.qq.com");
        assert_eq!(s.sessions.ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(
            s.wechat.apps[0].credentials.secret.expose_secret(),
            "s3cr3t"
        );
        assert_eq!(s.wechat.apps[0].name.as_ref(), "default");
        assert!(matches!(s.sessions.store, StoreSettings::Memory));
    }

    #[test]
    fn the_redis_store_needs_a_url_and_never_echoes_it() {
        let base = [("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s")];
        let redis = [base.as_slice(), &[("WXLOGIN_SESSION_STORE", "redis")]].concat();
        let err = load(&redis).expect_err("no URL");
        assert!(err.to_string().contains("WXLOGIN_REDIS_URL"), "{err}");

        let bad = [
            redis.as_slice(),
            &[("WXLOGIN_REDIS_URL", "http://user:hunter2@x")],
        ]
        .concat();
        let err = load(&bad).expect_err("not a Redis URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let good = [
            redis.as_slice(),
            &[(
                "WXLOGIN_REDIS_URL",
                "rediss://user:hunter2@redis.internal:6380/2",
            )],
        ]
        .concat();
        let s = load(&good).expect("settings");
        let StoreSettings::Redis(settings) = &s.sessions.store else {
            panic!("a Redis store");
        };
        assert_eq!(settings.key_prefix, "wxlogin:");
        assert!(!format!("{s:?}").contains("hunter2"), "Debug hides the URL");
    }

    #[test]
    fn a_blocks_file_is_kept_for_the_memory_store_and_reported_as_doing_nothing_with_redis() {
        let memory = [
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "s"),
            ("WXLOGIN_BLOCKS_FILE", "/var/lib/wxlogin/blocks.json"),
        ];
        let s = load(&memory).expect("settings");
        assert_eq!(
            s.sessions.blocks_file.as_deref(),
            Some(std::path::Path::new("/var/lib/wxlogin/blocks.json"))
        );
        assert!(s.ineffective.is_empty(), "{:?}", s.ineffective);
        let redis = [
            memory.as_slice(),
            &[
                ("WXLOGIN_SESSION_STORE", "redis"),
                ("WXLOGIN_REDIS_URL", "redis://127.0.0.1:6379"),
            ],
        ]
        .concat();
        let s = load(&redis).expect("settings");
        assert!(
            s.ineffective
                .iter()
                .any(|line| line.contains("WXLOGIN_BLOCKS_FILE")),
            "{:?}",
            s.ineffective
        );
    }

    #[test]
    fn a_store_key_with_the_memory_store_is_reported_as_doing_nothing() {
        let base = [("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s")];
        assert!(load(&base).expect("settings").ineffective.is_empty());
        let keyed = [
            base.as_slice(),
            &[(
                "WXLOGIN_STORE_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )],
        ]
        .concat();
        let s = load(&keyed).expect("settings");
        assert_eq!(s.ineffective.len(), 1);
        assert!(
            s.ineffective[0].contains("memory store"),
            "{:?}",
            s.ineffective
        );
        assert!(!s.ineffective[0].contains("AAECAw"), "never the key");
    }

    #[test]
    fn sliding_expiry_is_off_by_default_and_never_longer_than_the_ttl() {
        let base = [("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s")];
        assert_eq!(load(&base).expect("settings").sessions.idle, None);
        let on = [base.as_slice(), &[("WXLOGIN_SESSION_IDLE_SECS", "1800")]].concat();
        assert_eq!(
            load(&on).expect("settings").sessions.idle,
            Some(Duration::from_secs(1800))
        );
        let longer = [
            base.as_slice(),
            &[
                ("WXLOGIN_SESSION_IDLE_SECS", "7200"),
                ("WXLOGIN_SESSION_TTL_SECS", "3600"),
            ],
        ]
        .concat();
        let err = load(&longer).expect_err("idle past the TTL");
        assert!(err.to_string().contains("session_idle_secs"), "{err}");
    }

    #[test]
    fn cluster_mode_takes_a_seed_list_and_standalone_mode_says_when_it_got_one() {
        let redis = [
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "s"),
            ("WXLOGIN_SESSION_STORE", "redis"),
        ];
        let seeds = "redis://:hunter2@10.0.0.1:6379, redis://:hunter2@10.0.0.2:6379";
        let listed = [redis.as_slice(), &[("WXLOGIN_REDIS_URL", seeds)]].concat();
        let err = load(&listed).expect_err("standalone takes one URL");
        assert!(
            err.to_string().contains("WXLOGIN_REDIS_MODE=cluster"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let cluster = [listed.as_slice(), &[("WXLOGIN_REDIS_MODE", "cluster")]].concat();
        let s = load(&cluster).expect("settings");
        let StoreSettings::Redis(settings) = &s.sessions.store else {
            panic!("a Redis store");
        };
        assert_eq!(settings.mode, RedisMode::Cluster);
        assert_eq!(cluster_seeds(&settings.url).len(), 2);

        let one_bad = [
            redis.as_slice(),
            &[
                ("WXLOGIN_REDIS_MODE", "cluster"),
                (
                    "WXLOGIN_REDIS_URL",
                    "redis://10.0.0.1:6379,http://:hunter2@x",
                ),
            ],
        ]
        .concat();
        let err = load(&one_bad).expect_err("a seed that is not a node URL");
        assert!(err.to_string().contains("seed 2"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn environment_overrides_defaults_and_trailing_slash_is_dropped() {
        let s = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "s"),
            ("WXLOGIN_LISTEN", "0.0.0.0:9000"),
            ("WXLOGIN_WECHAT_BASE_URL", "http://127.0.0.1:1234/"),
            ("WXLOGIN_SESSION_TTL_SECS", "60"),
            ("WXLOGIN_SESSION_MAX", "10"),
            ("WXLOGIN_LOG_FORMAT", "json"),
        ])
        .expect("settings");
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.wechat.base_url, "http://127.0.0.1:1234");
        assert_eq!(s.sessions.ttl, Duration::from_secs(60));
        assert_eq!(s.sessions.max_sessions, 10);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn missing_credentials_name_every_missing_variable() {
        let err = load(&[]).expect_err("must fail").to_string();
        assert!(err.contains("WXLOGIN_APPID"), "{err}");
        assert!(err.contains("WXLOGIN_SECRET"), "{err}");

        let err =
            load(&[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "  ")]).expect_err("must fail");
        assert!(err.to_string().contains("WXLOGIN_SECRET"), "{err}");
        assert!(!err.to_string().contains("WXLOGIN_APPID"), "{err}");
    }

    #[test]
    fn development_mode_needs_no_credentials() {
        let s =
            Settings::load(Vec::<(String, String)>::new(), Mode::Development).expect("settings");
        assert_eq!(s.wechat.apps[0].credentials.appid, DEV_APPID);
    }

    #[test]
    fn secret_file_is_read_and_its_trailing_newline_dropped() {
        let (dir, path) = temp_file("secret", "from-file\n");
        let path_str = path.to_str().expect("utf-8 path");

        let s =
            load(&[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET_FILE", path_str)]).expect("settings");
        assert_eq!(
            s.wechat.apps[0].credentials.secret.expose_secret(),
            "from-file"
        );

        let both = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "x"),
            ("WXLOGIN_SECRET_FILE", path_str),
        ]);
        assert!(matches!(both, Err(ConfigError::ConflictingSecret { .. })));

        let missing = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET_FILE", "/nonexistent/wxlogin"),
        ]);
        assert!(matches!(missing, Err(ConfigError::SecretFile { .. })));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn config_file_named_by_wxlogin_config_overrides_defaults_and_env_overrides_it() {
        let (dir, path) = temp_file(
            "override.toml",
            "session_max = 42\nlisten = \"127.0.0.1:7000\"\n",
        );
        let s = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "s"),
            ("WXLOGIN_CONFIG", path.to_str().expect("utf-8 path")),
            ("WXLOGIN_LISTEN", "127.0.0.1:7001"),
        ])
        .expect("settings");
        assert_eq!(s.sessions.max_sessions, 42);
        assert_eq!(s.listen.to_string(), "127.0.0.1:7001");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_app_named_like_another_apps_appid_is_refused_naming_both() {
        let err = load(&[
            ("WXLOGIN_APP_WXAAAAAAAAAAAAAAA1_APPID", "wxaaaaaaaaaaaaaaa4"),
            (
                "WXLOGIN_APP_WXAAAAAAAAAAAAAAA1_SECRET",
                "first-secret-value",
            ),
            ("WXLOGIN_APP_SHOP_APPID", "wxaaaaaaaaaaaaaaa1"),
            ("WXLOGIN_APP_SHOP_SECRET", "second-secret-value"),
        ])
        .expect_err("/apps/wxaaaaaaaaaaaaaaa1/ could mean either app");
        let err = err.to_string();
        assert!(err.contains("wxaaaaaaaaaaaaaaa1"), "{err}");
        assert!(err.contains("shop"), "{err}");
        assert!(!err.contains("secret-value"), "{err}");
    }

    #[test]
    fn invalid_values_are_rejected_with_the_key_named() {
        let base = [("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s")];
        for (var, value, key) in [
            ("WXLOGIN_SESSION_TTL_SECS", "0", "session_ttl_secs"),
            ("WXLOGIN_SESSION_MAX", "0", "session_max"),
            ("WXLOGIN_WECHAT_TIMEOUT_MS", "0", "wechat_timeout_ms"),
            ("WXLOGIN_WECHAT_BASE_URL", "not a url", "wechat_base_url"),
            ("WXLOGIN_WECHAT_BASE_URL", "ftp://x", "wechat_base_url"),
            ("WXLOGIN_SESSION_TTL_SECS", "soon", "session_ttl_secs"),
            ("WXLOGIN_LOG_FORMAT", "xml", "log_format"),
        ] {
            let mut vars = base.to_vec();
            vars.push((var, value));
            let err = load(&vars).expect_err(var).to_string();
            assert!(err.contains(key), "{var}={value}: {err}");
        }
    }

    #[test]
    fn limits_parse_addresses_and_networks_and_zero_turns_the_rate_limit_off() {
        let s = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "s"),
            ("WXLOGIN_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ::1"),
            ("WXLOGIN_RATE_LIMIT_PER_MIN", "0"),
        ])
        .expect("settings");
        let proxies: Vec<String> = s
            .limits
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
        assert_eq!(s.limits.per_ip_per_min, None);

        let defaults =
            load(&[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s")]).expect("settings");
        assert!(
            defaults
                .limits
                .per_ip_per_min
                .is_some_and(|n| n.get() >= 600)
        );
        assert!(defaults.limits.trusted_proxies.is_empty());
        assert_eq!(defaults.auth_cookie, None);

        let err = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "s"),
            ("WXLOGIN_TRUSTED_PROXIES", "10.0.0.0/8,gateway"),
        ])
        .expect_err("not an address");
        assert!(err.to_string().contains("trusted_proxies"), "{err}");
        assert!(err.to_string().contains("gateway"), "{err}");
    }

    #[test]
    fn unknown_settings_are_reported_not_silently_dropped() {
        let s = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "s"),
            ("WXLOGIN_SESSION_TTL", "60"),
        ])
        .expect("settings");
        assert_eq!(
            s.unknown,
            ["WXLOGIN_SESSION_TTL (session_ttl in a config file)"]
        );
        assert_eq!(
            s.sessions.ttl,
            Duration::from_secs(7 * 24 * 3600),
            "the default still applies"
        );

        let known = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "s"),
            ("WXLOGIN_SESSION_MAX", "5"),
        ]);
        assert!(known.expect("settings").unknown.is_empty());
    }

    /// Every setting a deployment can give, with values of the kinds it has.
    const KEYS: &[&str] = &[
        "WXLOGIN_LISTEN",
        "WXLOGIN_WECHAT_BASE_URL",
        "WXLOGIN_WECHAT_TIMEOUT_MS",
        "WXLOGIN_SESSION_TTL_SECS",
        "WXLOGIN_SESSION_MAX",
        "WXLOGIN_SESSION_STORE",
        "WXLOGIN_REDIS_URL",
        "WXLOGIN_LOG_FORMAT",
        "WXLOGIN_RATE_LIMIT_PER_MIN",
        "WXLOGIN_TRUSTED_PROXIES",
        "WXLOGIN_MAX_CONNECTIONS",
        "WXLOGIN_IDLE_TIMEOUT_SECS",
        "WXLOGIN_TLS_CERT_FILE",
        "WXLOGIN_AUTH_COOKIE",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever value a setting is given, loading answers settings or an error naming
        /// what is wrong; never a panic.
        #[test]
        fn any_value_of_any_setting_loads_or_is_refused(
            key in proptest::sample::select(KEYS),
            value in proptest::prop_oneof![
                ".{0,40}",
                "[0-9]{1,25}",
                proptest::prelude::Just("-1".to_owned()),
                proptest::prelude::Just("18446744073709551616".to_owned()),
                proptest::prelude::Just("redis://[::1".to_owned()),
            ],
        ) {
            let loaded = load(&[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s"), (key, &value)]);
            if let Err(err) = loaded {
                proptest::prop_assert!(!err.to_string().is_empty());
            }
        }

        #[test]
        fn any_trusted_proxy_list_parses_to_networks_or_names_the_bad_item(list in "[0-9a-f.:/, ]{0,40}|.{0,40}") {
            if let Err(err) = trusted_proxies(&list) {
                proptest::prop_assert!(err.to_string().contains("trusted_proxies"));
            }
        }
    }

    #[test]
    fn apps_come_from_a_file_and_the_environment_with_secrets_from_the_environment_only() {
        let (dir, path) = temp_file(
            "apps.toml",
            "[apps.shop]\nappid = \"wx_shop\"\n[apps.club]\nappid = \"wx_club_file\"\n",
        );
        let (secret_dir, secret_file) = temp_file("shop-secret", "shop-secret\n");
        let s = load(&[
            ("WXLOGIN_CONFIG", path.to_str().expect("utf-8")),
            (
                "WXLOGIN_APP_SHOP_SECRET_FILE",
                secret_file.to_str().expect("utf-8"),
            ),
            ("WXLOGIN_APP_CLUB_APPID", "wx_club"),
            ("WXLOGIN_APP_CLUB_SECRET", "club-secret"),
            ("WXLOGIN_APP_MINI_GAME_APPID", "wx_game"),
            ("WXLOGIN_APP_MINI_GAME_SECRET", "game-secret"),
        ])
        .expect("settings");
        let apps: Vec<(&str, &str, &str)> = s
            .wechat
            .apps
            .iter()
            .map(|a| {
                (
                    a.name.as_ref(),
                    a.credentials.appid.as_str(),
                    a.credentials.secret.expose_secret(),
                )
            })
            .collect();
        assert_eq!(
            apps,
            [
                ("club", "wx_club", "club-secret"),
                ("mini_game", "wx_game", "game-secret"),
                ("shop", "wx_shop", "shop-secret"),
            ],
            "the environment overrides the file's appid; names in order"
        );
        assert!(s.unknown.is_empty(), "{:?}", s.unknown);
        assert_eq!(
            describe_apps(&s.wechat.apps),
            "club=wx_club, mini_game=wx_game, shop=wx_shop"
        );
        assert!(!format!("{s:?}").contains("club-secret"));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::remove_dir_all(&secret_dir).ok();
    }

    #[test]
    fn start_up_names_the_app_and_the_variable_when_an_app_is_declared_wrong() {
        let (dir, with_secret) = temp_file(
            "secret-in-file.toml",
            "[apps.shop]\nappid = \"wx1\"\nsecret = \"oops\"\n",
        );
        for (vars, says) in [
            (
                vec![("WXLOGIN_APP_SHOP_APPID", "wx1")],
                vec!["shop", "WXLOGIN_APP_SHOP_SECRET"],
            ),
            (
                vec![("WXLOGIN_APP_SHOP_SECRET", "s")],
                vec!["shop", "WXLOGIN_APP_SHOP_APPID"],
            ),
            (
                vec![
                    ("WXLOGIN_APP_SHOP_APPID", "wx1"),
                    ("WXLOGIN_APP_SHOP_SECRET", "s"),
                    ("WXLOGIN_APP_CLUB_APPID", "wx1"),
                    ("WXLOGIN_APP_CLUB_SECRET", "t"),
                ],
                vec!["shop", "club", "wx1"],
            ),
            (
                vec![("WXLOGIN_APP_SHOP-1_APPID", "wx1")],
                vec!["WXLOGIN_APP_SHOP-1_APPID", "[a-z0-9_]"],
            ),
            (
                vec![("WXLOGIN_APP_SHOP_APP_ID", "wx1")],
                vec!["WXLOGIN_APP_SHOP_APP_ID"],
            ),
            (
                vec![("WXLOGIN_CONFIG", with_secret.to_str().expect("utf-8"))],
                vec!["shop", "config file", "WXLOGIN_APP_SHOP_SECRET"],
            ),
            (
                vec![
                    ("WXLOGIN_APPID", "wx1"),
                    ("WXLOGIN_SECRET", "s"),
                    ("WXLOGIN_APP_DEFAULT_APPID", "wx2"),
                    ("WXLOGIN_APP_DEFAULT_SECRET", "t"),
                ],
                vec!["default", "twice"],
            ),
            (
                vec![
                    ("WXLOGIN_APP_SHOP_APPID", "wx1"),
                    ("WXLOGIN_APP_SHOP_SECRET", "s"),
                    ("WXLOGIN_APP_SHOP_SECRET_FILE", "/run/secrets/shop"),
                ],
                vec!["WXLOGIN_APP_SHOP_SECRET", "WXLOGIN_APP_SHOP_SECRET_FILE"],
            ),
            (vec![], vec!["WXLOGIN_APPID", "WXLOGIN_SECRET"]),
        ] {
            let err = load(&vars).expect_err("start-up must fail").to_string();
            for word in says {
                assert!(err.contains(word), "{vars:?}: {err}");
            }
            assert!(!err.contains("oops"), "no secret in the message: {err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn development_mode_makes_up_a_secret_for_every_declared_app() {
        let s = Settings::load(
            [
                ("WXLOGIN_APP_SHOP_APPID", "wx_shop"),
                ("WXLOGIN_APP_CLUB_APPID", "wx_club"),
            ],
            Mode::Development,
        )
        .expect("settings");
        let appids: Vec<&str> = s
            .wechat
            .apps
            .iter()
            .map(|a| a.credentials.appid.as_str())
            .collect();
        assert_eq!(appids, ["wx_club", "wx_shop"]);
        let secrets: Vec<&str> = s
            .wechat
            .apps
            .iter()
            .map(|a| a.credentials.secret.expose_secret())
            .collect();
        assert_ne!(secrets[0], secrets[1]);
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let s = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "hunter2-very-secret"),
        ])
        .expect("settings");
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2-very-secret"), "{debug}");
        assert!(debug.contains("wx1"));
    }
}
