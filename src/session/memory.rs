use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::{Clock, IssuedSession, Session, SessionToken, TokenHash};
use crate::config::SessionSettings;
use crate::wechat::WxSession;

/// Sessions in this process's memory: a bounded moka cache keyed by token hash. Past
/// `session_max` entries the least recently used are evicted.
#[derive(Clone)]
pub struct MemoryStore {
    sessions: Cache<TokenHash, Arc<Session>>,
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
        Self {
            sessions,
            ttl: settings.ttl,
            clock,
        }
    }

    pub fn create(&self, login: WxSession) -> IssuedSession {
        let token = SessionToken::generate();
        let session = Arc::new(Session {
            openid: login.openid,
            unionid: login.unionid,
            session_key: login.session_key,
            expires_at: self.clock.now() + self.ttl.as_secs(),
        });
        self.sessions.insert(token.hash(), Arc::clone(&session));
        IssuedSession {
            token,
            session,
            expires_in: self.ttl.as_secs(),
        }
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
}
