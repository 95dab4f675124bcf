//! Sessions: what a token stands for, and the stores that keep them. Backends sit behind
//! the [`SessionStore`] enum and are chosen in one place, at start-up.

mod memory;
pub mod redis;
mod token;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use token::{SessionToken, TokenHash};

use crate::clock::Clock;
use crate::config::SessionSettings;
use crate::domain::{SessionKey, WxSession};
use crate::redis_conn::StoreError;
use crate::telemetry::metrics::Metrics;

/// One WeChat user as a store knows them: the ids, and the newest session_key WeChat
/// issued. Each `code2Session` call makes WeChat issue a new key and invalidate the old
/// one, so every live session of the user must move to the new key at once: a store gives
/// all of them one `User`, and a login replaces its key.
pub struct User {
    /// `openid` or `openid unionid`: one allocation, not two, for the million-user case,
    /// shared with the memory store's index. Both parsed as [`OpenId`] and [`UnionId`] on
    /// the way in, so neither holds a space.
    ids: Arc<str>,
    session_key: Mutex<SessionKey>,
}

impl User {
    pub fn new(login: WxSession) -> Self {
        let ids = match &login.unionid {
            Some(unionid) => [login.openid.as_ref(), " ", unionid.as_ref()].concat(),
            None => login.openid.as_ref().to_owned(),
        };
        Self {
            ids: ids.into(),
            session_key: Mutex::new(login.session_key),
        }
    }

    pub fn openid(&self) -> &str {
        openid_of(&self.ids)
    }

    pub fn unionid(&self) -> Option<&str> {
        self.ids.split_once(' ').map(|(_, unionid)| unionid)
    }

    /// The newest session_key WeChat gave this user, for verifying and decrypting the
    /// user's data. It never leaves the server.
    pub fn session_key(&self) -> SessionKey {
        // A 16-byte copy cannot be left half-done, so a poisoned lock still holds a whole key.
        *self
            .session_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn replace_session_key(&self, key: SessionKey) {
        *self
            .session_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = key;
    }
}

/// The openid in a user's `ids`.
fn openid_of(ids: &str) -> &str {
    ids.split_once(' ').map_or(ids, |(openid, _)| openid)
}

/// Shows no more of the ids than [`OpenId`]'s own `Debug` does, and no key.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let openid = self.openid();
        write!(f, "User({}…)", openid.get(..4).unwrap_or(openid))
    }
}

/// A live session: whose it is, and until when. Cloning one is cheap.
#[derive(Debug, Clone)]
pub struct Session {
    user: Arc<User>,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Session {
    pub fn new(user: Arc<User>, expires_at: u64) -> Self {
        Self { user, expires_at }
    }

    pub fn openid(&self) -> &str {
        self.user.openid()
    }

    pub fn unionid(&self) -> Option<&str> {
        self.user.unionid()
    }

    /// See [`User::session_key`].
    pub fn session_key(&self) -> SessionKey {
        self.user.session_key()
    }

    /// Seconds left at `now`; 0 once expired.
    pub fn expires_in(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }
}

/// What a login hands back to the client: the new token and what it stands for.
#[derive(Debug)]
pub struct IssuedSession {
    pub token: SessionToken,
    pub session: Session,
    pub expires_in: u64,
}

#[derive(Clone)]
pub enum SessionStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl SessionStore {
    /// The in-memory store; `metrics` counts its evictions.
    pub fn memory(settings: &SessionSettings, clock: Clock, metrics: Metrics) -> Self {
        Self::Memory(MemoryStore::new(settings, clock, metrics))
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
    pub async fn get(&self, token: &SessionToken) -> Result<Option<Session>, StoreError> {
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

    /// Whether the store can take a session now: always, in memory; Redis must take a small
    /// write (`/readyz` asks this).
    pub async fn probe(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(store) => store.probe().await,
        }
    }

    /// Whether the store took its last write (or probe), without asking it again: what a
    /// login checks before it spends the user's code at WeChat.
    pub fn writable(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(store) => store.writable(),
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
