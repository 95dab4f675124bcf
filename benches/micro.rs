//! Micro-benchmarks of the work a request does besides I/O: token generation and hashing,
//! the memory store, and the open-data crypto. Inputs are WeChat's documented examples.
//!
//! cargo bench --bench micro

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use wxlogin::clock::Clock;
use wxlogin::config::{SessionSettings, StoreSettings};
use wxlogin::session::{MemoryStore, SessionToken};
use wxlogin::wechat::open_data::{decrypt, signature_matches};
use wxlogin::wechat::{OpenId, SessionKey, WxSession};

/// WeChat's documented signature example.
const RAW_DATA: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
const RAW_DATA_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
const RAW_DATA_SIGNATURE: &str = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";
/// WeChat's documented decryption example (WXBizDataCrypt's demo data).
const DEMO_APPID: &str = "wx4f4bc4dec97d474b";
const DEMO_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const DEMO_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
const DEMO_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

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
        max_sessions: 1_000_000,
        store: StoreSettings::Memory,
    };
    let store = MemoryStore::new(&settings, Clock::System);
    let login = || WxSession {
        openid: OpenId::parse("oBenchUser0000000000000000000").expect("an openid"),
        session_key: key(DEMO_KEY),
        unionid: None,
    };
    c.bench_function("memory_store/create", |b| b.iter(|| store.create(login())));
    let token = store.create(login()).token;
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
        b.iter(|| decrypt(black_box(DEMO_DATA), DEMO_IV, &demo_key, DEMO_APPID).expect("decrypts"))
    });
}

criterion_group!(benches, tokens, memory_store, open_data);
criterion_main!(benches);
