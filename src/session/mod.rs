//! Sessions: what a token stands for, and the stores that keep them. Backends sit behind
//! the [`SessionStore`] enum and are chosen in one place, at start-up.

mod memory;
pub mod redis;
mod token;

use std::sync::{Arc, Mutex, PoisonError};

pub use memory::MemoryStore;
pub use redis::{Redis, RedisStore, StoreError};
pub use token::{SessionToken, TokenHash};

use crate::clock::Clock;
use crate::config::SessionSettings;
use crate::wechat::{OpenId, SessionKey, UnionId, WxSession};

/// One logged-in user, as the store keeps it.
#[derive(Debug)]
pub struct Session {
    pub openid: OpenId,
    pub unionid: Option<UnionId>,
    /// Shared by all of this openid's sessions in a store (see [`LatestSessionKey`]).
    session_key: Arc<LatestSessionKey>,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Session {
    /// The newest session_key WeChat gave this user, for verifying and decrypting the
    /// user's data. It never leaves the server.
    pub fn session_key(&self) -> SessionKey {
        self.session_key.get()
    }

    /// Seconds left at `now`; 0 once expired.
    pub fn expires_in(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }
}

/// The session_key of one openid. Each `code2Session` call makes WeChat issue a new key
/// and invalidate the old one, so every live session of the openid must move to the new
/// key at once: they all share this cell, and a login replaces its content.
#[derive(Debug)]
pub struct LatestSessionKey(Mutex<SessionKey>);

impl LatestSessionKey {
    pub fn new(key: SessionKey) -> Self {
        Self(Mutex::new(key))
    }

    pub fn get(&self) -> SessionKey {
        // A 16-byte copy cannot be left half-done, so a poisoned lock still holds a whole key.
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn replace(&self, key: SessionKey) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

/// What a login hands back to the client: the new token and what it stands for.
#[derive(Debug)]
pub struct IssuedSession {
    pub token: SessionToken,
    pub session: Arc<Session>,
    pub expires_in: u64,
}

#[derive(Clone)]
pub enum SessionStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl SessionStore {
    pub fn memory(settings: &SessionSettings, clock: Clock) -> Self {
        Self::Memory(MemoryStore::new(settings, clock))
    }

    /// Starts a session for a user WeChat has just vouched for, under a fresh token, and
    /// gives the user's other live sessions the new session_key.
    pub async fn create(&self, login: WxSession) -> Result<IssuedSession, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.create(login)),
            Self::Redis(store) => store.create(login).await,
        }
    }

    /// The live session behind `token`, if there is one: `None` for unknown, expired and
    /// revoked tokens alike.
    pub async fn get(&self, token: &SessionToken) -> Result<Option<Arc<Session>>, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.get(token)),
            Self::Redis(store) => store.get(token).await,
        }
    }

    /// Ends the session behind `token`. Returns whether there was a live one.
    pub async fn revoke(&self, token: &SessionToken) -> Result<bool, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.revoke(token)),
            Self::Redis(store) => store.revoke(token).await,
        }
    }

    /// Whether the store can serve requests: always, in memory; Redis must answer a PING.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(store) => store.ping().await,
        }
    }

    /// How many sessions this process holds: known for the memory store only. Redis keeps
    /// the count (its `session:*` keys), shared by every replica.
    pub fn live_count(&self) -> Option<u64> {
        match self {
            Self::Memory(store) => Some(store.live_count()),
            Self::Redis(_) => None,
        }
    }

    /// The current time as this store sees it, for computing `expires_in`.
    pub fn now(&self) -> u64 {
        match self {
            Self::Memory(store) => store.now(),
            Self::Redis(store) => store.now(),
        }
    }
}
