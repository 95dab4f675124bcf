//! Bulk-loads sessions straight into the memory store, without HTTP or WeChat, and reports
//! resident memory per session and the cost of a lookup at that size. Its `moka-floor`
//! mode loads a bare moka cache with the store's settings (a 16-byte key, no value, a
//! TTL): the floor that moka's own per-entry bookkeeping sets under each of the store's
//! two caches.
//!
//! cargo run --release --example session_memory -- 1000000 [store|sliding|moka-floor] [users]
//!
//! `sliding` is the store with sliding expiry on (a deadline per entry in moka). Both store
//! modes also time one admin revocation, which scans every session.
//!
//! `users` (default: as many as sessions) spreads the sessions over that many users, to
//! show that a user with several sessions pays for the shared record once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use wxlogin::clock::Clock;
use wxlogin::config::{SessionSettings, StoreSettings};
use wxlogin::domain::{AppName, OpenId, SessionKey, UnionId, WxSession};
use wxlogin::session::{MemoryStore, SessionToken, UserId};
use wxlogin::telemetry::metrics::Metrics;

/// The service's own allocator (see `src/main.rs`), so that the bytes counted are the ones
/// it would spend.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tokens kept for the lookup phase: few enough not to weigh on the RSS figure.
const SAMPLED_TOKENS: usize = 10_000;
const LOOKUPS: usize = 1_000_000;
const TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map_or(1_000_000, |arg| arg.parse().expect("a session count"));
    let what = args.next().unwrap_or_else(|| "store".to_owned());
    let users: u64 = args
        .next()
        .map_or(n, |arg| arg.parse().expect("a user count"));
    match what.as_str() {
        "store" => store(n, users.max(1), None),
        "sliding" => store(n, users.max(1), Some(Duration::from_secs(1800))),
        "moka-floor" => moka_floor(n),
        other => panic!("unknown mode {other}: store, sliding or moka-floor"),
    }
}

fn store(n: u64, users: u64, idle: Option<Duration>) {
    let settings = SessionSettings {
        ttl: TTL,
        idle,
        // Room to spare: this measures holding n sessions, not evicting them.
        max_sessions: n * 2,
        store: StoreSettings::Memory,
        blocks_file: None,
    };
    let before = rss_bytes();
    let app = AppName::default_app();
    let store = MemoryStore::new(&settings, Clock::System, Metrics::new());
    let every = (n as usize / SAMPLED_TOKENS).max(1);
    let mut sampled = Vec::with_capacity(SAMPLED_TOKENS + 1);
    let key = SessionKey::parse_base64("AAECAwQFBgcICQoLDA0ODw==").expect("a key");
    for i in 0..n {
        // WeChat's openids are 28 characters, unionids 29.
        let user = i % users;
        let login = WxSession {
            openid: OpenId::parse(&format!("o{user:0>27}")).expect("an openid"),
            session_key: Some(key),
            profile: None,
            unionid: UnionId::parse(&format!("u{user:0>28}")),
        };
        let issued = store.create(&app, login).expect("no block");
        if (i as usize).is_multiple_of(every) {
            sampled.push(issued.token.clone());
        }
    }
    store.run_pending_tasks();
    let live = store.live_count();
    let per_session = (rss_bytes() - before) as f64 / live as f64;
    let lookup = time_lookups(&sampled, |token| store.get(token).is_some());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let user = UserId {
        app: app.clone(),
        openid: OpenId::parse(&format!("o{:0>27}", 0)).expect("an openid"),
    };
    let started = Instant::now();
    let revoked = runtime.block_on(store.revoke_user(&user));
    let revocation = started.elapsed();
    println!(
        "store{}: {live} sessions of {users} users, {per_session:.0} B of RSS per session, \
         {:.0} ns per lookup; revoking one user ({revoked} sessions) scanned them all in {:.0} ms",
        if idle.is_some() {
            " (sliding expiry)"
        } else {
            ""
        },
        lookup.as_nanos() as f64 / LOOKUPS as f64,
        revocation.as_secs_f64() * 1e3,
    );
}

fn moka_floor(n: u64) {
    let before = rss_bytes();
    let cache: moka::sync::Cache<[u8; 16], ()> = moka::sync::Cache::builder()
        .max_capacity(n * 2)
        .time_to_live(TTL)
        .build();
    for i in 0..n {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&i.to_le_bytes());
        cache.insert(key, ());
    }
    cache.run_pending_tasks();
    let live = cache.entry_count();
    let per_entry = (rss_bytes() - before) as f64 / live as f64;
    println!(
        "moka alone (16-byte key, no value, TTL): {live} entries, {per_entry:.0} B of RSS per entry"
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
