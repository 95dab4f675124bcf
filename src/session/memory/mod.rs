mod admin;
mod blocks_file;
mod users;

pub use blocks_file::{BlocksFile, BlocksFileError};

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::token::ShortTokenHash;
use super::{
    Block, CreateError, IssuedSession, Lifetime, Session, SessionToken, TokenHash, UserId,
};
use crate::clock::Clock;
use crate::config::SessionSettings;
use crate::domain::{AppName, WxSession};
use crate::telemetry::metrics::Metrics;
use users::UserIndex;

/// Sessions in this process's memory: one bounded moka cache of sessions by (short) token
/// hash, which owns every lifetime (the session TTL, or with sliding expiry each session's
/// own deadline; the least recently used going first when full), and an index of the users
/// those sessions belong to, so that a login finds the record its user's other sessions
/// share. Every read also checks `expires_at` against the store's clock, so a session is
/// never served past its end, whenever moka's housekeeping runs.
#[derive(Clone)]
pub struct MemoryStore(pub(super) Arc<Caches>);

pub(super) struct Caches {
    sessions: Cache<ShortTokenHash, Session>,
    /// Web logins under way, by the hash of their state (see `pending`).
    pub(super) pending: Cache<Box<str>, std::sync::Arc<str>>,
    /// The user records the live sessions hold, by app and openid; a user leaves it with
    /// their last session.
    users: Arc<UserIndex>,
    /// Operators' blocks: few, and checked once per login.
    blocks: RwLock<HashMap<UserId, Block>>,
    /// Where the blocks outlive the process; without it, blocks are refused.
    blocks_file: Option<BlocksFile>,
    pub(super) lifetime: Lifetime,
    pub(super) clock: Clock,
}

/// Expires each session at its own deadline, which a use may move (sliding expiry).
struct AtItsDeadline(Clock);

impl AtItsDeadline {
    fn left(&self, session: &Session) -> Duration {
        Duration::from_secs(session.expires_at().saturating_sub(self.0.now()))
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

impl MemoryStore {
    /// A store that refuses operators' blocks, having nowhere to keep them.
    pub fn new(settings: &SessionSettings, clock: Clock, metrics: Metrics) -> Self {
        Self::build(settings, clock, metrics, None)
    }

    /// A store that keeps operators' blocks in `file`, starting with `blocks` (read from it).
    pub fn with_blocks_file(
        settings: &SessionSettings,
        clock: Clock,
        metrics: Metrics,
        file: BlocksFile,
        blocks: HashMap<UserId, Block>,
    ) -> Self {
        Self::build(settings, clock, metrics, Some((file, blocks)))
    }

    fn build(
        settings: &SessionSettings,
        clock: Clock,
        metrics: Metrics,
        blocks: Option<(BlocksFile, HashMap<UserId, Block>)>,
    ) -> Self {
        let ttl = settings.ttl;
        let lifetime = Lifetime::new(ttl, settings.idle);
        let listener_clock = clock.clone();
        let users = Arc::new(UserIndex::default());
        let listener_users = Arc::clone(&users);
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
                    _ if session.expires_at() <= listener_clock.now() => "expired",
                    RemovalCause::Expired => "expired",
                    RemovalCause::Size => "size",
                    RemovalCause::Explicit => "explicit",
                    // Only sliding expiry replaces a session, with itself under a later
                    // deadline: it lives on.
                    RemovalCause::Replaced => return,
                };
                listener_users.session_gone(&session.user);
                metrics.session_evicted(cause);
            })
            .build();
        let (blocks_file, blocks) = blocks.map_or((None, HashMap::new()), |(file, blocks)| {
            (Some(file), blocks)
        });
        let pending = Cache::builder()
            .max_capacity(super::pending::MAX_PENDING_LOGINS)
            .time_to_live(super::PENDING_LOGIN_TTL)
            .build();
        Self(Arc::new(Caches {
            sessions,
            pending,
            users,
            blocks: RwLock::new(blocks),
            blocks_file,
            lifetime,
            clock,
        }))
    }

    pub fn create(&self, app: &AppName, login: WxSession) -> Result<IssuedSession, CreateError> {
        let token = SessionToken::generate();
        let caches = &self.0;
        let now = caches.clock.now();
        let deadlines = caches.lifetime.at_login(now);
        let session = Session::new(caches.users.newest(app, login), deadlines);
        let key = token.hash().short();
        caches.sessions.insert(key, session.clone());
        // Checked after the insert: a block set meanwhile revokes by scanning the sessions,
        // and a scan that began before the insert may have missed this one.
        if let Some(Block { until, .. }) = caches.block_of(session.user.id(), now) {
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
        self.find(&token.hash())
    }

    /// The live session stored under `hash`, as [`MemoryStore::get`].
    pub fn find(&self, hash: &TokenHash) -> Option<Session> {
        let key = hash.short();
        let session = self.0.sessions.get(&key)?;
        let now = self.0.clock.now();
        if session.expires_at() <= now {
            self.0.sessions.invalidate(&key);
            return None;
        }
        let Some(moved) = self.0.lifetime.extended(session.deadlines(), now) else {
            return Some(session);
        };
        // Moved only while it is there, never bringing back one revoked meanwhile (which
        // removes through the same per-key lock).
        let extended = session.expiring_at(moved);
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
        let now = self.0.clock.now();
        match self.0.sessions.entry(key).and_compute_with(|_| Op::Remove) {
            CompResult::Removed(entry) => entry.into_value().expires_at() > now,
            _ => false,
        }
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
    }

    /// Takes out of the user index the users whose last session went while a request still
    /// held it (the eviction listener leaves those); run now and then, off the request path.
    pub fn sweep_users(&self) -> usize {
        self.0.users.sweep()
    }
}

impl Caches {
    /// The block on `user` that holds at `now`, if any.
    fn block_of(&self, user: &UserId, now: u64) -> Option<Block> {
        let blocks = self.blocks.read().unwrap_or_else(PoisonError::into_inner);
        blocks.get(user).filter(|block| block.until > now).cloned()
    }

    fn blocks_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<UserId, Block>> {
        self.blocks.write().unwrap_or_else(PoisonError::into_inner)
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
            blocks_file: None,
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

    /// Two session_keys WeChat might issue, one after the other.
    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODw==";
    const KEY_B: &str = "EBESExQVFhcYGRobHB0eHw==";

    fn login(openid: &str) -> WxSession {
        login_with_key(openid, KEY_A)
    }

    fn login_with_key(openid: &str, key: &str) -> WxSession {
        WxSession {
            openid: OpenId::parse(openid).expect("openid"),
            session_key: Some(SessionKey::parse_base64(key).expect("key")),
            profile: None,
            unionid: None,
        }
    }

    /// Whether `freed` comes true once moka has let go of the sessions removed: its hash
    /// table drops a removed value through crossbeam's epochs, which another thread's pin
    /// (another test's cache) can hold back for a moment after `run_pending_tasks`.
    fn once_freed(store: &MemoryStore, mut freed: impl FnMut() -> bool) -> bool {
        (0..100_000).any(|_| {
            store.run_pending_tasks();
            let done = freed();
            if !done {
                std::thread::yield_now();
            }
            done
        })
    }

    fn evicted(metrics: &Metrics, cause: &str) -> bool {
        metrics.render(None).contains(&format!(
            r#"wxlogin_sessions_evicted_total{{cause="{cause}"}}"#
        ))
    }

    #[test]
    fn a_new_login_gives_every_session_of_the_openid_the_new_session_key() {
        let (store, _) = store(10, ManualClock::starting_at(1000));
        let first = issue(&store, &app(), login_with_key("oA", KEY_A));
        let other_user = issue(&store, &app(), login_with_key("oB", KEY_A));
        let second = issue(&store, &app(), login_with_key("oA", KEY_B));

        let rotated = SessionKey::parse_base64(KEY_B).expect("key");
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
        assert_eq!(issued.session.expires_at(), 1100);

        let found = store.get(&issued.token).expect("live session");
        assert_eq!(found.openid().as_ref(), "oA");
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
            store
                .get(&issued.token)
                .map(|s| s.expires_in(store.0.clock.now())),
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
        assert!(store.0.users.len() <= 50, "{} users", store.0.users.len());
        assert!(evicted(&metrics, "size"));
    }

    #[test]
    fn a_unionid_that_appears_later_is_on_the_new_session_and_the_old_one_keeps_working() {
        let (store, _) = store(10, ManualClock::starting_at(1000));
        let before = issue(&store, &app(), login("oA"));
        let mut with_unionid = login_with_key("oA", KEY_B);
        with_unionid.unionid = crate::domain::UnionId::parse("uA");
        let after = issue(&store, &app(), with_unionid);

        let new = store.get(&after.token).expect("live");
        assert_eq!(new.unionid().map(AsRef::as_ref), Some("uA"));
        assert_eq!(new.openid().as_ref(), "oA");
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
        let in_shop = issue(&store, &app(), login_with_key("oSame", KEY_A));
        let in_club = issue(&store, &club, login_with_key("oSame", KEY_B));

        let shop_session = store.get(&in_shop.token).expect("live");
        let club_session = store.get(&in_club.token).expect("live");
        assert_eq!(shop_session.app().as_ref(), "default");
        assert_eq!(club_session.app().as_ref(), "club");
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
        assert_eq!(store.0.users.len(), 1);
        assert!(Arc::ptr_eq(&first.session.user, &second.session.user));
    }

    #[test]
    fn a_user_leaves_the_index_with_their_last_session_and_not_before() {
        let (store, _) = store(10, ManualClock::starting_at(1000));
        let first = issue(&store, &app(), login("oA")).token;
        let second = issue(&store, &app(), login("oA")).token;
        assert!(store.revoke(&first));
        store.run_pending_tasks();
        assert_eq!(store.0.users.len(), 1, "the user still has a session");
        let third = {
            let issued = issue(&store, &app(), login("oA"));
            let live = store.get(&second).expect("live");
            assert!(
                Arc::ptr_eq(&issued.session.user, &live.user),
                "a login finds the record the user's live session holds"
            );
            issued.token
        };
        assert!(store.revoke(&second));
        store.run_pending_tasks();
        assert_eq!(store.0.users.len(), 1, "the third session is live");
        let other = issue(&store, &app(), login("oB")).token;
        assert!(store.revoke(&third));
        assert!(store.revoke(&other));
        assert!(
            once_freed(&store, || store.0.users.len() == 0),
            "{} users",
            store.0.users.len()
        );
    }

    #[test]
    fn a_user_whose_last_session_went_while_a_request_held_it_is_swept() {
        let (store, _) = store(10, ManualClock::starting_at(1000));
        let issued = issue(&store, &app(), login("oA"));
        let held = store.get(&issued.token).expect("live");
        drop(issued.session);
        assert!(store.revoke(&issued.token));
        store.run_pending_tasks();
        assert_eq!(store.0.users.len(), 1, "a request still holds the session");
        drop(held);
        let mut swept = 0;
        assert!(once_freed(&store, || {
            swept += store.sweep_users();
            swept == 1
        }));
        assert_eq!(store.0.users.len(), 0);
    }

    /// The stolen-account runbook: a person who logged in before WeChat sent a unionid, and
    /// again after, is found by it, and every session of theirs ends.
    #[tokio::test]
    async fn a_unionid_finds_and_revokes_the_sessions_from_before_it_appeared_too() {
        let (store, _) = store(10, ManualClock::starting_at(1000));
        let before = issue(&store, &app(), login("oA")).token;
        let mut with_unionid = login_with_key("oA", KEY_B);
        with_unionid.unionid = crate::domain::UnionId::parse("uA");
        let after = issue(&store, &app(), with_unionid).token;
        let bystander = issue(&store, &app(), login("oB")).token;
        let openid = OpenId::parse("oA").expect("openid");

        let summary = store.user(&UserId { app: app(), openid }).await;
        assert_eq!(summary.unionid.as_deref(), Some("uA"));
        assert_eq!(summary.sessions, 2);

        let unionid = crate::domain::UnionId::parse("uA").expect("unionid");
        assert_eq!(store.revoke_unionid(&unionid).await, 2);
        assert!(
            store.get(&before).is_none(),
            "the session from before the unionid"
        );
        assert!(store.get(&after).is_none());
        assert!(store.get(&bystander).is_some());
    }
}
