mod admin;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::token::ShortTokenHash;
use super::{Block, CreateError, IssuedSession, Lifetime, Session, SessionToken, User};
use crate::clock::Clock;
use crate::config::SessionSettings;
use crate::domain::{AppName, WxSession};
use crate::telemetry::metrics::Metrics;

/// Sessions in this process's memory, in two bounded moka caches: sessions by (short) token
/// hash, and users by app and openid, so that a login finds the record its user's other sessions
/// share. moka bounds both (`session_max`, the least recently used going first), expires
/// both (the session TTL, or with sliding expiry each session's own deadline); every read
/// also checks `expires_at` against the store's clock, so a session is never served past
/// its end, whenever moka's housekeeping runs.
#[derive(Clone)]
pub struct MemoryStore(Arc<Caches>);

struct Caches {
    sessions: Cache<ShortTokenHash, Session>,
    /// Each user with a live session here. Sessions hold their user themselves, so should an
    /// entry be evicted under `session_max` pressure, older sessions keep the key they had.
    /// An entry lives one TTL from the user's latest login: as long as their newest session.
    users: Cache<UserKey, Arc<User>>,
    /// Operators' blocks, by `app openid`: few, and checked once per login.
    blocks: RwLock<HashMap<Box<str>, Block>>,
    lifetime: Lifetime,
    clock: Clock,
}

/// Expires each session at its own deadline, which a use may move (sliding expiry).
struct AtItsDeadline(Clock);

impl AtItsDeadline {
    fn left(&self, session: &Session) -> Duration {
        Duration::from_secs(session.expires_at.saturating_sub(self.0.now()))
    }
}

impl Expiry<ShortTokenHash, Session> for AtItsDeadline {
    fn expire_after_create(
        &self,
        _: &ShortTokenHash,
        session: &Session,
        _: Instant,
    ) -> Option<Duration> {
        Some(self.left(session))
    }

    fn expire_after_update(
        &self,
        _: &ShortTokenHash,
        session: &Session,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.left(session))
    }
}

/// A user's place in the index: the user record's own ids, hashed and compared by app and
/// openid, so the index holds no second copy of them.
#[derive(Clone)]
struct UserKey(Arc<str>);

impl Hash for UserKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        super::user_of(&self.0).hash(state);
    }
}

impl PartialEq for UserKey {
    fn eq(&self, other: &Self) -> bool {
        super::user_of(&self.0) == super::user_of(&other.0)
    }
}

impl Eq for UserKey {}

impl MemoryStore {
    pub fn new(settings: &SessionSettings, clock: Clock, metrics: Metrics) -> Self {
        let ttl = settings.ttl;
        let lifetime = Lifetime::new(ttl, settings.idle);
        let listener_clock = clock.clone();
        let sessions = Cache::builder()
            .max_capacity(settings.max_sessions)
            // moka's default, TinyLFU, admits a new entry into a full cache only if it looks
            // more popular than what it would evict: a new login's session does not, and
            // would be dropped at once. LRU makes room for it instead.
            .eviction_policy(EvictionPolicy::lru());
        // One TTL for all is cheaper for moka than a deadline per entry; only sliding
        // expiry needs those.
        let sessions = if lifetime.is_sliding() {
            sessions.expire_after(AtItsDeadline(clock.clone()))
        } else {
            sessions.time_to_live(ttl)
        };
        let sessions = sessions
            .eviction_listener(move |_, session: Session, cause| {
                // A session that our clock has ended was expired, whoever removed it: moka
                // (on its own clock), or a read that found it over (an explicit removal).
                let cause = match cause {
                    _ if session.expires_at <= listener_clock.now() => "expired",
                    RemovalCause::Expired => "expired",
                    RemovalCause::Size => "size",
                    RemovalCause::Explicit => "explicit",
                    // Only sliding expiry replaces a session, with itself under a later
                    // deadline: it lives on.
                    RemovalCause::Replaced => return,
                };
                metrics.session_evicted(cause);
            })
            .build();
        let users = Cache::builder()
            .max_capacity(settings.max_sessions)
            .eviction_policy(EvictionPolicy::lru())
            .time_to_live(ttl)
            .build();
        Self(Arc::new(Caches {
            sessions,
            users,
            blocks: RwLock::default(),
            lifetime,
            clock,
        }))
    }

    pub fn create(&self, app: &AppName, login: WxSession) -> Result<IssuedSession, CreateError> {
        let token = SessionToken::generate();
        let caches = &self.0;
        let now = caches.clock.now();
        let deadlines = caches.lifetime.at_login(now);
        let session = Session::new(caches.newest_user(app, login), deadlines);
        let key = token.hash().short();
        caches.sessions.insert(key, session.clone());
        // Checked after the insert: a block set meanwhile revokes by scanning the sessions,
        // and a scan that began before the insert may have missed this one.
        if let Some(Block { until, .. }) = caches.block_of(super::user_of(&session.user.ids), now) {
            caches.sessions.invalidate(&key);
            return Err(CreateError::Blocked { until });
        }
        Ok(IssuedSession {
            token,
            session,
            expires_in: deadlines.expires_at - now,
        })
    }

    pub fn get(&self, token: &SessionToken) -> Option<Session> {
        let key = token.hash().short();
        let session = self.0.sessions.get(&key)?;
        let now = self.now();
        if session.expires_at <= now {
            self.0.sessions.invalidate(&key);
            return None;
        }
        let Some(moved) = self.0.lifetime.extended(session.deadlines(), now) else {
            return Some(session);
        };
        // Moved only while it is there, never bringing back one revoked meanwhile (which
        // removes through the same per-key lock).
        let extended = Session {
            expires_at: moved,
            ..session
        };
        match self
            .0
            .sessions
            .entry(key)
            .and_compute_with(|entry| match entry {
                Some(_) => Op::Put(extended),
                None => Op::Nop,
            }) {
            CompResult::ReplacedWith(entry) | CompResult::Inserted(entry) => {
                Some(entry.into_value())
            }
            _ => None,
        }
    }

    pub fn revoke(&self, token: &SessionToken) -> bool {
        self.remove(token.hash().short())
    }

    /// Removes one session; returns whether it was live.
    fn remove(&self, key: ShortTokenHash) -> bool {
        let now = self.now();
        match self.0.sessions.entry(key).and_compute_with(|_| Op::Remove) {
            CompResult::Removed(entry) => entry.into_value().expires_at > now,
            _ => false,
        }
    }

    pub fn now(&self) -> u64 {
        self.0.clock.now()
    }

    /// How many sessions are held, as moka counts them once its pending housekeeping has
    /// run (for a metrics scrape, not for the request path).
    pub fn live_count(&self) -> u64 {
        self.0.sessions.run_pending_tasks();
        self.0.sessions.entry_count()
    }

    /// Runs moka's pending housekeeping now (evictions, counts), for tests and measurements.
    pub fn run_pending_tasks(&self) {
        self.0.sessions.run_pending_tasks();
        self.0.users.run_pending_tasks();
    }
}

impl Caches {
    /// The block on `user` (a [`super::user_key`]) that holds at `now`, if any.
    fn block_of(&self, user: &str, now: u64) -> Option<Block> {
        let blocks = self.blocks.read().unwrap_or_else(PoisonError::into_inner);
        blocks.get(user).filter(|block| block.until > now).cloned()
    }

    fn blocks_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, Block>> {
        self.blocks.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The user record that `login` makes current: the existing one with the new key, so
    /// that every live session of the openid moves to it, or a new one.
    fn newest_user(&self, app: &AppName, login: WxSession) -> Arc<User> {
        let candidate = User::new(app, login);
        let key = UserKey(Arc::clone(&candidate.ids));
        let entry = self.users.entry(key).and_upsert_with(|existing| {
            let existing = existing.map(moka::Entry::into_value);
            let Some(user) = existing else {
                return Arc::new(candidate);
            };
            if let Some(key) = candidate.known_session_key() {
                user.replace_session_key(key);
            }
            // A unionid can appear once the user follows a linked account: then the new
            // record takes over, and the old one's sessions keep the key just set.
            if user.unionid() == candidate.unionid() {
                user
            } else {
                Arc::new(candidate)
            }
        });
        entry.into_value()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::{OpenId, SessionKey};

    fn store(max_sessions: u64, clock: ManualClock) -> (MemoryStore, Metrics) {
        let settings = SessionSettings {
            ttl: Duration::from_secs(100),
            idle: None,
            max_sessions,
            store: crate::config::StoreSettings::Memory,
        };
        let metrics = Metrics::new();
        let store = MemoryStore::new(&settings, Clock::Manual(clock), metrics.clone());
        (store, metrics)
    }

    fn issue(store: &MemoryStore, app: &AppName, login: WxSession) -> IssuedSession {
        store.create(app, login).expect("not blocked")
    }

    fn app() -> AppName {
        AppName::default_app()
    }

    fn key_of(store: &MemoryStore, session: &Session) -> SessionKey {
        let _ = store;
        session.user.known_session_key().expect("a key in memory")
    }

    fn login(openid: &str) -> WxSession {
        login_with_key(openid, "AAECAwQFBgcICQoLDA0ODw==")
    }

    fn login_with_key(openid: &str, key: &str) -> WxSession {
        WxSession {
            openid: OpenId::parse(openid).expect("openid"),
            session_key: SessionKey::parse_base64(key).expect("key"),
            unionid: None,
        }
    }

    fn evicted(metrics: &Metrics, cause: &str) -> bool {
        metrics.render(None).contains(&format!(
            r#"wxlogin_sessions_evicted_total{{cause="{cause}"}}"#
        ))
    }

    #[test]
    fn a_new_login_gives_every_session_of_the_openid_the_new_session_key() {
        let (store, _) = store(10, ManualClock::starting_at(1000));
        let first = issue(
            &store,
            &app(),
            login_with_key("oA", "AAECAwQFBgcICQoLDA0ODw=="),
        );
        let other_user = issue(
            &store,
            &app(),
            login_with_key("oB", "AAECAwQFBgcICQoLDA0ODw=="),
        );
        let second = issue(
            &store,
            &app(),
            login_with_key("oA", "EBESExQVFhcYGRobHB0eHw=="),
        );

        let rotated = SessionKey::parse_base64("EBESExQVFhcYGRobHB0eHw==").expect("key");
        for token in [&first.token, &second.token] {
            let session = store.get(token).expect("live");
            assert_eq!(key_of(&store, &session), rotated);
        }
        let untouched = store.get(&other_user.token).expect("live");
        assert_eq!(
            key_of(&store, &untouched).bytes()[0],
            0,
            "another openid keeps its key"
        );
    }

    #[test]
    fn a_created_session_is_found_by_its_token_until_revoked() {
        let (store, metrics) = store(10, ManualClock::starting_at(1000));
        let issued = issue(&store, &app(), login("oA"));
        assert_eq!(issued.expires_in, 100);
        assert_eq!(issued.session.expires_at, 1100);

        let found = store.get(&issued.token).expect("live session");
        assert_eq!(found.openid(), "oA");
        assert!(store.get(&SessionToken::generate()).is_none());

        assert!(store.revoke(&issued.token));
        assert!(store.get(&issued.token).is_none());
        assert!(
            !store.revoke(&issued.token),
            "a second revoke finds nothing"
        );
        store.run_pending_tasks();
        assert!(evicted(&metrics, "explicit"));
    }

    #[test]
    fn a_session_is_gone_the_second_its_ttl_ends_and_counts_as_expired() {
        let clock = ManualClock::starting_at(1000);
        let (store, metrics) = store(10, clock.clone());
        let issued = issue(&store, &app(), login("oB"));

        clock.advance(Duration::from_secs(99));
        assert_eq!(
            store.get(&issued.token).map(|s| s.expires_in(store.now())),
            Some(1)
        );
        clock.advance(Duration::from_secs(1));
        assert!(store.get(&issued.token).is_none());
        store.run_pending_tasks();
        assert_eq!(store.live_count(), 0, "the expired session is removed");
        assert!(evicted(&metrics, "expired"));
        assert!(!evicted(&metrics, "explicit"));
    }

    #[test]
    fn a_full_store_evicts_instead_of_growing_and_counts_it() {
        let (store, metrics) = store(50, ManualClock::starting_at(1000));
        let mut newest = Vec::new();
        for i in 0..500 {
            let issued = issue(&store, &app(), login(&format!("o{i}")));
            store.run_pending_tasks();
            if i >= 490 {
                newest.push(issued.token);
            }
        }
        for token in &newest {
            assert!(
                store.get(token).is_some(),
                "a full store makes room for a new login, never refuses it"
            );
        }
        assert!(store.live_count() <= 50, "{} sessions", store.live_count());
        assert!(
            store.0.users.entry_count() <= 50,
            "{} users",
            store.0.users.entry_count()
        );
        assert!(evicted(&metrics, "size"));
    }

    #[test]
    fn a_unionid_that_appears_later_is_on_the_new_session_and_the_old_one_keeps_working() {
        let (store, _) = store(10, ManualClock::starting_at(1000));
        let before = issue(&store, &app(), login("oA"));
        let mut with_unionid = login_with_key("oA", "EBESExQVFhcYGRobHB0eHw==");
        with_unionid.unionid = crate::domain::UnionId::parse("uA");
        let after = issue(&store, &app(), with_unionid);

        let new = store.get(&after.token).expect("live");
        assert_eq!(new.unionid(), Some("uA"));
        assert_eq!(new.openid(), "oA");
        let old = store.get(&before.token).expect("live");
        assert_eq!(old.unionid(), None);
        assert_eq!(
            key_of(&store, &old),
            key_of(&store, &new),
            "the old session has the new key"
        );
    }

    #[test]
    fn one_openid_in_two_apps_is_two_users_who_never_share_a_key() {
        let (store, _) = store(10, ManualClock::starting_at(1000));
        let club = AppName::parse("club").expect("a name");
        let in_shop = issue(
            &store,
            &app(),
            login_with_key("oSame", "AAECAwQFBgcICQoLDA0ODw=="),
        );
        let in_club = issue(
            &store,
            &club,
            login_with_key("oSame", "EBESExQVFhcYGRobHB0eHw=="),
        );

        let shop_session = store.get(&in_shop.token).expect("live");
        let club_session = store.get(&in_club.token).expect("live");
        assert_eq!(shop_session.app(), "default");
        assert_eq!(club_session.app(), "club");
        assert_eq!(
            key_of(&store, &shop_session).bytes()[0],
            0,
            "club's login left shop's key"
        );
        assert_eq!(key_of(&store, &club_session).bytes()[0], 0x10);
    }

    #[test]
    fn a_user_with_several_sessions_has_one_shared_record() {
        let (store, _) = store(10, ManualClock::starting_at(1000));
        let first = issue(&store, &app(), login("oShared"));
        let second = issue(&store, &app(), login("oShared"));
        store.run_pending_tasks();
        assert_eq!(store.live_count(), 2);
        assert_eq!(store.0.users.entry_count(), 1);
        assert!(Arc::ptr_eq(&first.session.user, &second.session.user));
    }
}
