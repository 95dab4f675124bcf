use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::{IssuedSession, LatestSessionKey, Session, SessionToken, TokenHash};
use crate::clock::Clock;
use crate::config::SessionSettings;
use crate::wechat::{OpenId, SessionKey, WxSession};

/// Sessions in this process's memory: a bounded moka cache keyed by token hash. Past
/// `session_max` entries the least recently used are evicted.
#[derive(Clone)]
pub struct MemoryStore {
    sessions: Cache<TokenHash, Arc<Session>>,
    /// Each openid's newest session_key, shared with every session of that openid. A login
    /// refreshes the entry's TTL, so it outlives all of the openid's sessions. Should it be
    /// evicted under `session_max` pressure anyway, older sessions keep the key they had.
    keys: Cache<OpenId, Arc<LatestSessionKey>>,
    ttl: Duration,
    clock: Clock,
}

impl MemoryStore {
    pub fn new(settings: &SessionSettings, clock: Clock) -> Self {
        // moka's TTL frees memory; `expires_at` (checked on every read) is what decides
        // validity, so a session never outlives its TTL even between moka's sweeps.
        let sessions = Cache::builder()
            .max_capacity(settings.max_sessions)
            .time_to_live(settings.ttl)
            .build();
        let keys = Cache::builder()
            .max_capacity(settings.max_sessions)
            .time_to_live(settings.ttl)
            .build();
        Self {
            sessions,
            keys,
            ttl: settings.ttl,
            clock,
        }
    }

    pub fn create(&self, login: WxSession) -> IssuedSession {
        let token = SessionToken::generate();
        let session_key = self.newest_key(&login.openid, login.session_key);
        let session = Arc::new(Session {
            openid: login.openid,
            unionid: login.unionid,
            session_key,
            expires_at: self.clock.now() + self.ttl.as_secs(),
        });
        self.sessions.insert(token.hash(), Arc::clone(&session));
        IssuedSession {
            token,
            session,
            expires_in: self.ttl.as_secs(),
        }
    }

    /// Makes `key` the session_key of every live session of `openid`.
    fn newest_key(&self, openid: &OpenId, key: SessionKey) -> Arc<LatestSessionKey> {
        self.keys
            .entry_by_ref(openid)
            .and_upsert_with(|existing| match existing {
                Some(entry) => {
                    let shared = entry.into_value();
                    shared.replace(key);
                    shared
                }
                None => Arc::new(LatestSessionKey::new(key)),
            })
            .into_value()
    }

    pub fn get(&self, token: &SessionToken) -> Option<Arc<Session>> {
        let key = token.hash();
        let session = self.sessions.get(&key)?;
        if session.expires_at <= self.clock.now() {
            self.sessions.invalidate(&key);
            return None;
        }
        Some(session)
    }

    pub fn revoke(&self, token: &SessionToken) -> bool {
        let key = token.hash();
        self.sessions
            .remove(&key)
            .is_some_and(|s| s.expires_at > self.clock.now())
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// How many sessions are held, after moka has applied its pending evictions.
    pub fn live_count(&self) -> u64 {
        self.sessions.run_pending_tasks();
        self.sessions.entry_count()
    }
}

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
        assert_eq!(found.openid.as_ref(), "oA");
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
        store.sessions.run_pending_tasks();
        assert!(
            store.sessions.entry_count() <= 50,
            "{} entries",
            store.sessions.entry_count()
        );
    }
}
