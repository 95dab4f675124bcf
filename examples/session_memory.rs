//! Bulk-loads sessions straight into the memory store, without HTTP or WeChat, and reports
//! resident memory per session and the cost of a lookup at that size. Beside the real store
//! it can load a bare cache with 16- or 32-byte keys and no value: the floor that the
//! cache's own per-entry bookkeeping sets, for moka (which the store used to be built on)
//! and for quick_cache (which it is built on now).
//!
//! cargo run --release --example session_memory -- 1000000

use std::hint::black_box;
use std::time::{Duration, Instant};

use wxlogin::clock::Clock;
use wxlogin::config::{SessionSettings, StoreSettings};
use wxlogin::session::{MemoryStore, SessionToken};
use wxlogin::wechat::{OpenId, SessionKey, UnionId, WxSession};

/// Tokens kept for the lookup phase: few enough not to weigh on the RSS figure.
const SAMPLED_TOKENS: usize = 10_000;
const LOOKUPS: usize = 1_000_000;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |arg| arg.parse().expect("a session count"));
    let what = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "store".to_owned());
    match what.as_str() {
        "store" => store(n),
        "moka-floor" => moka_floor(n),
        "quick-cache-floor" => quick_cache_floor(n),
        other => panic!("unknown mode {other}: store, moka-floor or quick-cache-floor"),
    }
}

fn store(n: u64) {
    let settings = SessionSettings {
        ttl: Duration::from_secs(7 * 24 * 3600),
        // Room to spare: this measures holding n sessions, not evicting them.
        max_sessions: n * 2,
        store: StoreSettings::Memory,
    };
    let before = rss_bytes();
    let store = MemoryStore::new(&settings, Clock::System);
    let every = (n as usize / SAMPLED_TOKENS).max(1);
    let mut sampled = Vec::with_capacity(SAMPLED_TOKENS + 1);
    let key = SessionKey::parse_base64("AAECAwQFBgcICQoLDA0ODw==").expect("a key");
    for i in 0..n {
        // WeChat's openids are 28 characters, unionids 29: each session a different user.
        let login = WxSession {
            openid: OpenId::parse(&format!("o{i:0>27}")).expect("an openid"),
            session_key: key,
            unionid: UnionId::parse(&format!("u{i:0>28}")),
        };
        let issued = store.create(login);
        if (i as usize).is_multiple_of(every) {
            sampled.push(issued.token.clone());
        }
    }
    let live = store.live_count();
    let per_session = (rss_bytes() - before) as f64 / live as f64;
    let lookup = time_lookups(&sampled, |token| store.get(token).is_some());
    // The minute's sweep walks every session, expired or not: how long it holds a thread.
    let sweep = Instant::now();
    store.sweep_expired();
    let sweep = sweep.elapsed();
    println!(
        "store: {live} sessions, {per_session:.0} B of RSS per session, {:.0} ns per lookup, \
         {:.1} ms per sweep",
        lookup.as_nanos() as f64 / LOOKUPS as f64,
        sweep.as_secs_f64() * 1e3
    );
}

fn moka_floor(n: u64) {
    let before = rss_bytes();
    let cache: moka::sync::Cache<[u8; 32], ()> = moka::sync::Cache::builder()
        .max_capacity(n)
        .time_to_live(Duration::from_secs(7 * 24 * 3600))
        .build();
    for i in 0..n {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&i.to_le_bytes());
        cache.insert(key, ());
    }
    cache.run_pending_tasks();
    let live = cache.entry_count();
    let per_entry = (rss_bytes() - before) as f64 / live as f64;
    println!(
        "moka alone (32-byte key, no value): {live} entries, {per_entry:.0} B of RSS per entry"
    );
}

fn quick_cache_floor(n: u64) {
    let before = rss_bytes();
    let cache: quick_cache::sync::Cache<[u8; 16], ()> =
        quick_cache::sync::Cache::new(usize::try_from(n * 2).expect("a usize"));
    for i in 0..n {
        // quick_cache's default hasher is fine with keys this regular; moka's test above
        // uses the same shape.
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&i.to_le_bytes());
        cache.insert(key, ());
    }
    let live = cache.len();
    let per_entry = (rss_bytes() - before) as f64 / live as f64;
    println!(
        "quick_cache alone (16-byte key, no value): {live} entries, {per_entry:.0} B of RSS per entry"
    );
}

fn time_lookups(tokens: &[SessionToken], get: impl Fn(&SessionToken) -> bool) -> Duration {
    let started = Instant::now();
    for i in 0..LOOKUPS {
        assert!(black_box(get(&tokens[i % tokens.len()])));
    }
    started.elapsed()
}

/// Resident set size, from /proc/self/statm (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("the resident field");
    pages * 4096
}
