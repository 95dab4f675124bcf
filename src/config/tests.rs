//! Loading as a whole: the layers, the defaults, each setting's checks, and what start-up
//! says about settings that are wrong, unknown or ineffective.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::testing::{load, temp_file, with};
use super::values::trusted_proxies;
use super::*;

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
    let redis = with(&base, &[("WXLOGIN_SESSION_STORE", "redis")]);
    let err = load(&redis).expect_err("no URL");
    assert!(err.to_string().contains("WXLOGIN_REDIS_URL"), "{err}");

    let bad = with(&redis, &[("WXLOGIN_REDIS_URL", "http://user:hunter2@x")]);
    let err = load(&bad).expect_err("not a Redis URL");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let url = "rediss://user:hunter2@redis.internal:6380/2";
    let good = with(&redis, &[("WXLOGIN_REDIS_URL", url)]);
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
    let redis = with(
        &memory,
        &[
            ("WXLOGIN_SESSION_STORE", "redis"),
            ("WXLOGIN_REDIS_URL", "redis://127.0.0.1:6379"),
        ],
    );
    let s = load(&redis).expect("settings");
    assert!(
        names(&s.ineffective, "WXLOGIN_BLOCKS_FILE"),
        "{:?}",
        s.ineffective
    );
}

#[test]
fn a_store_key_with_the_memory_store_is_reported_as_doing_nothing() {
    let base = [("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s")];
    assert!(load(&base).expect("settings").ineffective.is_empty());
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let keyed = with(&base, &[("WXLOGIN_STORE_KEY", key)]);
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
    let on = with(&base, &[("WXLOGIN_SESSION_IDLE_SECS", "1800")]);
    assert_eq!(
        load(&on).expect("settings").sessions.idle,
        Some(Duration::from_secs(1800))
    );
    let longer = with(
        &base,
        &[
            ("WXLOGIN_SESSION_IDLE_SECS", "7200"),
            ("WXLOGIN_SESSION_TTL_SECS", "3600"),
        ],
    );
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
    let listed = with(&redis, &[("WXLOGIN_REDIS_URL", seeds)]);
    let err = load(&listed).expect_err("standalone takes one URL");
    assert!(
        err.to_string().contains("WXLOGIN_REDIS_MODE=cluster"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let cluster = with(&listed, &[("WXLOGIN_REDIS_MODE", "cluster")]);
    let s = load(&cluster).expect("settings");
    let StoreSettings::Redis(settings) = &s.sessions.store else {
        panic!("a Redis store");
    };
    assert_eq!(settings.mode, RedisMode::Cluster);
    assert_eq!(cluster_seeds(&settings.url).len(), 2);

    let one_bad = with(
        &redis,
        &[
            ("WXLOGIN_REDIS_MODE", "cluster"),
            (
                "WXLOGIN_REDIS_URL",
                "redis://10.0.0.1:6379,http://:hunter2@x",
            ),
        ],
    );
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

    let defaults = load(&[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s")]).expect("settings");
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

#[test]
fn a_store_key_that_is_not_a_key_is_named_by_the_variable_that_gave_it() {
    let given = [
        ("WXLOGIN_APPID", "wx1"),
        ("WXLOGIN_SECRET", "s"),
        ("WXLOGIN_SESSION_STORE", "redis"),
        ("WXLOGIN_REDIS_URL", "redis://127.0.0.1:6379"),
        ("WXLOGIN_STORE_KEY", "not-a-key-but-secret"),
    ];
    let err = load(&given)
        .expect_err("not 32 bytes of base64")
        .to_string();
    assert!(err.contains("WXLOGIN_STORE_KEY:"), "{err}");
    assert!(!err.contains("WXLOGIN_STORE_KEY_FILE"), "{err}");
    assert!(
        !err.contains("not-a-key-but-secret"),
        "never the value: {err}"
    );
}

#[test]
fn jwts_are_off_without_an_issuer_and_a_key_file_alone_is_reported_as_doing_nothing() {
    let base = [("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "s")];
    let s = load(&base).expect("settings");
    assert!(s.jwt.is_none());
    let (_dir, key) = temp_file("jwt.pem", "-----BEGIN PRIVATE KEY-----\n");
    let key = key.display().to_string();
    let keyed = with(&base, &[("WXLOGIN_JWT_KEY_FILE", key.as_str())]);
    let s = load(&keyed).expect("settings");
    assert!(s.jwt.is_none());
    assert!(
        names(&s.ineffective, "WXLOGIN_JWT_ISSUER"),
        "{:?}",
        s.ineffective
    );
    let on = with(
        &keyed,
        &[("WXLOGIN_JWT_ISSUER", "https://login.example.com/")],
    );
    let jwt = load(&on).expect("settings").jwt.expect("on");
    assert_eq!(jwt.issuer, "https://login.example.com", "no trailing slash");
    assert_eq!(jwt.ttl, Duration::from_secs(300));
}

/// Whether one of `lines` names `setting`.
fn names(lines: &[String], setting: &str) -> bool {
    lines.iter().any(|line| line.contains(setting))
}
