//! What wxlogin runs with, once loaded and checked: typed, with secrets as `SecretString`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{AdminSettings, BackendSettings, ConfiguredApp, JwtSettings, StoreKeySettings};

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
    /// wxlogin's own base URL as browsers reach it (`WXLOGIN_PUBLIC_URL`), without a
    /// trailing slash: where WeChat's consent page sends them back. Set whenever an app
    /// has redirect URIs (in development mode, once the server is bound).
    pub public_url: Option<String>,
    /// The admin API; `None`: off, and every `/admin` route answers 404.
    pub admin: Option<AdminSettings>,
    /// The other backends' credentials; `None`: off, and every backend route answers 404.
    pub backends: Option<BackendSettings>,
    /// Short-lived JWTs in exchange for a session; `None`: off, and their routes answer 404.
    pub jwt: Option<JwtSettings>,
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
    /// Where WeChat's consent pages are, without a trailing slash:
    /// `https://open.weixin.qq.com`.
    pub open_base_url: String,
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
