use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use quick_cache::OptionsBuilder;
use quick_cache::sync::{Cache, EntryAction, EntryResult};

use super::token::ShortTokenHash;
use super::{IssuedSession, Session, SessionToken, User};
use crate::clock::Clock;
use crate::config::SessionSettings;
use crate::wechat::WxSession;

/// How often expired sessions are swept out. Validity does not wait for it: every read
/// checks `expires_at`, so the sweep only gives the memory back.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A table's shards. A sweep holds each shard's lock while it walks it, and a walk of a
/// million sessions takes about 65 ms: in 64 shards, a lookup waits for one shard's
/// millisecond at most. (quick_cache's default, four per core, made that 16 ms on one.)
const SHARDS: usize = 64;

/// Sessions in this process's memory, in two bounded `quick_cache` tables: sessions by
/// (short) token hash, and users by openid, so that a login finds the user's other sessions'
/// shared record. Past `session_max` entries the coldest are evicted. quick_cache keeps
/// about 50 bytes of its own per entry, where moka keeps over 300 (see BENCHMARKS.md).
#[derive(Clone)]
pub struct MemoryStore(Arc<Tables>);

struct Tables {
    sessions: Cache<ShortTokenHash, Session>,
    /// Each user with a session here. An entry is only an index: sessions hold their user
    /// themselves, so should one be evicted under `session_max` pressure, older sessions
    /// keep the key they had.
    users: Cache<ByOpenId, ()>,
    ttl: Duration,
    clock: Clock,
}

impl MemoryStore {
    pub fn new(settings: &SessionSettings, clock: Clock) -> Self {
        let capacity = usize::try_from(settings.max_sessions).unwrap_or(usize::MAX);
        Self(Arc::new(Tables {
            sessions: table(capacity),
            users: table(capacity),
            ttl: settings.ttl,
            clock,
        }))
    }

    pub fn create(&self, login: WxSession) -> IssuedSession {
        let token = SessionToken::generate();
        let tables = &self.0;
        let session = Session::new(
            tables.newest_user(login),
            tables.clock.now() + tables.ttl.as_secs(),
        );
        tables
            .sessions
            .insert(token.hash().short(), session.clone());
        IssuedSession {
            token,
            session,
            expires_in: tables.ttl.as_secs(),
        }
    }

    pub fn get(&self, token: &SessionToken) -> Option<Session> {
        let key = token.hash().short();
        let session = self.0.sessions.get(&key)?;
        if session.expires_at <= self.now() {
            self.0.sessions.remove(&key);
            return None;
        }
        Some(session)
    }

    pub fn revoke(&self, token: &SessionToken) -> bool {
        let now = self.now();
        self.0
            .sessions
            .remove(&token.hash().short())
            .is_some_and(|(_, session)| session.expires_at > now)
    }

    pub fn now(&self) -> u64 {
        self.0.clock.now()
    }

    /// How many sessions are held, counting expired ones not yet swept.
    pub fn live_count(&self) -> u64 {
        self.0.sessions.len() as u64
    }

    /// Drops expired sessions, then the users left with none.
    pub fn sweep_expired(&self) {
        let now = self.now();
        self.0
            .sessions
            .retain(|_, session| session.expires_at > now);
        // The index's own reference is the last one once no session (and no login under
        // way, which holds one too) refers to the user.
        self.0
            .users
            .retain(|user, ()| Arc::strong_count(&user.0) > 1);
    }

    /// Sweeps every [`SWEEP_EVERY`] for as long as the store lives. Needs a tokio runtime.
    pub fn spawn_sweeper(&self) {
        crate::periodic::spawn_every(SWEEP_EVERY, &self.0, |tables| {
            // A walk of every session: on the blocking pool, not on a worker that has
            // requests to serve meanwhile.
            tokio::task::spawn_blocking(move || Self(tables).sweep_expired());
        });
    }
}

/// A quick_cache table of `capacity` entries in [`SHARDS`] shards (fewer for a small one).
fn table<K, V>(capacity: usize) -> Cache<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone,
{
    let options = OptionsBuilder::new()
        .estimated_items_capacity(capacity)
        .weight_capacity(capacity as u64)
        .shards(SHARDS)
        .build()
        .expect("the weight capacity is set");
    Cache::with_options(
        options,
        Default::default(),
        Default::default(),
        Default::default(),
    )
}

impl Tables {
    /// The user record that `login` makes current: the existing one with the new key, so
    /// that every live session of the openid moves to it, or a new one.
    fn newest_user(&self, login: WxSession) -> Arc<User> {
        let candidate = ByOpenId(Arc::new(User::new(login)));
        let key = candidate.0.session_key();
        let found = self.users.entry(&candidate, None, |existing, ()| {
            existing.0.replace_session_key(key);
            // A unionid can appear once the user follows a linked account: the new
            // record takes over, and the old one's sessions keep the key just set.
            if existing.0.unionid() == candidate.0.unionid() {
                EntryAction::Retain(Arc::clone(&existing.0))
            } else {
                EntryAction::Remove
            }
        });
        match found {
            EntryResult::Retained(user) => user,
            EntryResult::Vacant(guard) => {
                // Fails only if the placeholder was evicted meanwhile: the user is then
                // unindexed, as if evicted a moment later.
                let _ = guard.insert(());
                candidate.0
            }
            EntryResult::Removed(..) => {
                self.users.insert(candidate.clone(), ());
                candidate.0
            }
            // Never asked for, and without a timeout there is no Timeout.
            EntryResult::Replaced(..) | EntryResult::Timeout => candidate.0,
        }
    }
}

/// A user, hashed and compared by openid, so the index holds no second copy of it.
#[derive(Clone)]
struct ByOpenId(Arc<User>);

impl Hash for ByOpenId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.openid().hash(state);
    }
}

impl PartialEq for ByOpenId {
    fn eq(&self, other: &Self) -> bool {
        self.0.openid() == other.0.openid()
    }
}

impl Eq for ByOpenId {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::wechat::{OpenId, SessionKey};

    fn store(max_sessions: u64, clock: ManualClock) -> MemoryStore {
        let settings = SessionSettings {
            ttl: Duration::from_secs(100),
            max_sessions,
            store: crate::config::StoreSettings::Memory,
        };
        MemoryStore::new(&settings, Clock::Manual(clock))
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

    #[test]
    fn a_new_login_gives_every_session_of_the_openid_the_new_session_key() {
        let store = store(10, ManualClock::starting_at(1000));
        let first = store.create(login_with_key("oA", "AAECAwQFBgcICQoLDA0ODw=="));
        let other_user = store.create(login_with_key("oB", "AAECAwQFBgcICQoLDA0ODw=="));
        let second = store.create(login_with_key("oA", "EBESExQVFhcYGRobHB0eHw=="));

        let rotated = SessionKey::parse_base64("EBESExQVFhcYGRobHB0eHw==").expect("key");
        for token in [&first.token, &second.token] {
            let session = store.get(token).expect("live");
            assert_eq!(session.session_key(), rotated);
        }
        let untouched = store.get(&other_user.token).expect("live");
        assert_eq!(
            untouched.session_key().bytes()[0],
            0,
            "another openid keeps its key"
        );
    }

    #[test]
    fn a_created_session_is_found_by_its_token_until_revoked() {
        let store = store(10, ManualClock::starting_at(1000));
        let issued = store.create(login("oA"));
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
    }

    #[test]
    fn a_session_is_gone_the_second_its_ttl_ends() {
        let clock = ManualClock::starting_at(1000);
        let store = store(10, clock.clone());
        let issued = store.create(login("oB"));

        clock.advance(Duration::from_secs(99));
        assert_eq!(
            store.get(&issued.token).map(|s| s.expires_in(store.now())),
            Some(1)
        );
        clock.advance(Duration::from_secs(1));
        assert!(store.get(&issued.token).is_none());
    }

    #[test]
    fn the_store_never_holds_more_than_session_max() {
        let store = store(50, ManualClock::starting_at(1000));
        for i in 0..500 {
            store.create(login(&format!("o{i}")));
        }
        assert!(store.live_count() <= 50, "{} sessions", store.live_count());
        assert!(store.0.users.len() <= 50, "{} users", store.0.users.len());
    }

    #[test]
    fn a_sweep_frees_expired_sessions_and_the_users_left_without_one() {
        let clock = ManualClock::starting_at(1000);
        let store = store(10, clock.clone());
        // Only the tokens are kept: an issued session holds its user too.
        let old = store.create(login("oOld")).token;
        clock.advance(Duration::from_secs(50));
        let young = store.create(login("oYoung")).token;

        clock.advance(Duration::from_secs(50));
        store.sweep_expired();
        assert_eq!(store.live_count(), 1);
        assert_eq!(store.0.users.len(), 1, "oOld has no session left");
        assert!(store.get(&old).is_none());
        assert!(store.get(&young).is_some());

        // A user with a session left stays indexed, so a new login still rotates its key.
        let again = store.create(login_with_key("oYoung", "EBESExQVFhcYGRobHB0eHw=="));
        let rotated = store.get(&young).expect("live").session_key();
        assert_eq!(rotated, again.session.session_key());
        assert_eq!(rotated.bytes()[0], 0x10);
    }

    #[test]
    fn a_unionid_that_appears_later_is_on_the_new_session_and_the_old_one_keeps_working() {
        let store = store(10, ManualClock::starting_at(1000));
        let before = store.create(login("oA"));
        let mut with_unionid = login_with_key("oA", "EBESExQVFhcYGRobHB0eHw==");
        with_unionid.unionid = crate::wechat::UnionId::parse("uA");
        let after = store.create(with_unionid);

        let new = store.get(&after.token).expect("live");
        assert_eq!(new.unionid(), Some("uA"));
        assert_eq!(new.openid(), "oA");
        let old = store.get(&before.token).expect("live");
        assert_eq!(old.unionid(), None);
        assert_eq!(
            old.session_key(),
            new.session_key(),
            "the old session has the new key"
        );
    }
}
