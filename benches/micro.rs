//! Micro-benchmarks of the work a request does besides I/O: token generation and hashing,
//! the memory store, the open-data crypto (on WeChat's documented examples), and signing
//! and verifying a JWT.
//!
//! cargo bench --bench micro

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use wxlogin::clock::Clock;
use wxlogin::config::{JwtSettings, KeyFile};
use wxlogin::config::{SessionSettings, StoreSettings};
use wxlogin::domain::{AppName, OpenId, SessionKey, WxSession};
use wxlogin::jwt::{JwtIssuer, Subject};
use wxlogin::session::{MemoryStore, SessionToken};
use wxlogin::telemetry::metrics::Metrics;
use wxlogin::wechat::open_data::documented_examples::*;
use wxlogin::wechat::open_data::{decrypt, signature_matches};

fn key(base64: &str) -> SessionKey {
    SessionKey::parse_base64(base64).expect("a valid session_key")
}

fn tokens(c: &mut Criterion) {
    c.bench_function("token/generate", |b| b.iter(SessionToken::generate));
    let token = SessionToken::generate();
    c.bench_function("token/parse+hash", |b| {
        b.iter(|| SessionToken::parse(black_box(token.expose())).map(|t| t.hash()))
    });
}

fn memory_store(c: &mut Criterion) {
    let settings = SessionSettings {
        ttl: Duration::from_secs(3600),
        idle: None,
        max_sessions: 1_000_000,
        store: StoreSettings::Memory,
        blocks_file: None,
    };
    let app = AppName::default_app();
    let store = MemoryStore::new(&settings, Clock::System, Metrics::new());
    let login = || WxSession {
        openid: OpenId::parse("oBenchUser0000000000000000000").expect("an openid"),
        session_key: Some(key(DEMO_KEY)),
        profile: None,
        unionid: None,
    };
    c.bench_function("memory_store/create", |b| {
        b.iter(|| store.create(&app, login()).is_ok())
    });
    let token = store.create(&app, login()).expect("no block").token;
    c.bench_function("memory_store/get", |b| {
        b.iter(|| store.get(black_box(&token)))
    });
}

fn open_data(c: &mut Criterion) {
    let raw_key = key(RAW_DATA_KEY);
    c.bench_function("open_data/verify_signature", |b| {
        b.iter(|| signature_matches(black_box(RAW_DATA), RAW_DATA_SIGNATURE, &raw_key))
    });
    let demo_key = key(DEMO_KEY);
    c.bench_function("open_data/decrypt", |b| {
        b.iter(|| {
            decrypt(
                black_box(DEMO_DATA),
                DEMO_IV,
                &demo_key,
                DEMO_APPID,
                DEMO_OPENID,
            )
            .expect("decrypts")
        })
    });
}

fn jwts(c: &mut Criterion) {
    const NOW: u64 = 1_800_000_000;
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .expect("a key")
        .serialize_pem();
    let issuer = JwtIssuer::new(&JwtSettings {
        issuer: "https://login.example.com".to_owned(),
        key: KeyFile {
            var: "WXLOGIN_JWT_KEY_FILE",
            path: "bench.pem".into(),
            pem: pem.into(),
        },
        old_keys: None,
        ttl: Duration::from_secs(300),
    })
    .expect("the key");
    let subject = || Subject {
        openid: "oKx7d0Fs5aBcDeFgHiJkLmNoPqRs",
        unionid: Some("uQ8a9b0c1d2e3f4g5h6i7j8k9l0m"),
        app: "default",
        appid: "wx1234567890abcdef",
        audience: "wx1234567890abcdef",
        sid: "q5mPz3vW8yXn2kLr7tJh4gFd6sAa1bCc9eEo0iUuYy".to_owned(),
    };
    c.bench_function("jwt/issue", |b| {
        b.iter(|| issuer.issue(subject(), NOW, NOW + 3600).expect("signed"))
    });
    let token = issuer
        .issue(subject(), NOW, NOW + 3600)
        .expect("signed")
        .token;
    c.bench_function("jwt/verify", |b| {
        b.iter(|| issuer.verify(black_box(&token), NOW + 1).expect("valid"))
    });
}

criterion_group!(benches, tokens, memory_store, open_data, jwts);
criterion_main!(benches);
