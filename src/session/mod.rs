//! Sessions: what a token stands for, and the stores that keep them. Backends sit behind
//! the [`SessionStore`] enum and are chosen in one place, at start-up.

mod lifetime;
mod memory;
mod operator;
mod pending;
pub mod redis;
mod sealing;
mod token;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

pub use lifetime::{Deadlines, Lifetime};
pub use memory::{BlocksFile, BlocksFileError, MemoryStore};
pub use operator::{Block, UserSummary};
pub use pending::PENDING_LOGIN_TTL;
pub use redis::RedisStore;
pub use sealing::{KeyMismatches, Sealer};
pub use token::{SessionToken, TokenHash};

use crate::clock::Clock;
use crate::config::SessionSettings;
use crate::domain::{AppName, OpenId, SessionKey, UnionId, WxSession};
use crate::redis_conn::StoreError;
use crate::telemetry::metrics::Metrics;

/// Who a session belongs to: one WeChat user of one app, as WeChat named them at login.
/// Typed from the edge on: nothing re-parses it after the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId {
    pub app: AppName,
    pub openid: OpenId,
}

/// One WeChat user of one app as a store knows them: who they are, and the newest
/// session_key WeChat issued. Each `code2Session` call makes WeChat issue a new key and
/// invalidate the old one, so every live session of the user must move to the new key at
/// once: a store gives all of them one `User` (shared by `Arc`), and a login replaces its key.
pub struct User {
    id: UserId,
    /// Only when the mini-program is bound to an Open Platform account.
    unionid: Option<UnionId>,
    /// Always known in memory. A session read from Redis leaves the key in the user's
    /// record there, to be read only by the routes that need it; this holds what the
    /// session's own record had, if it was written before there were user records.
    session_key: Mutex<Option<SessionKey>>,
}

impl User {
    pub fn new(app: &AppName, login: WxSession) -> Self {
        Self::with_key(
            UserId {
                app: app.clone(),
                openid: login.openid,
            },
            login.unionid,
            login.session_key,
        )
    }

    fn with_key(id: UserId, unionid: Option<UnionId>, session_key: Option<SessionKey>) -> Self {
        Self {
            id,
            unionid,
            session_key: Mutex::new(session_key),
        }
    }

    pub fn id(&self) -> &UserId {
        &self.id
    }

    /// The app the user logged in to.
    pub fn app(&self) -> &AppName {
        &self.id.app
    }

    pub fn openid(&self) -> &OpenId {
        &self.id.openid
    }

    pub fn unionid(&self) -> Option<&UnionId> {
        self.unionid.as_ref()
    }

    /// The newest session_key WeChat gave this user, if this record holds it (see
    /// [`SessionStore::session_key`]). It never leaves the server.
    fn known_session_key(&self) -> Option<SessionKey> {
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
            .unwrap_or_else(PoisonError::into_inner) = Some(key);
    }
}

/// `app openid`: how Redis's unionid index names a user.
fn user_key(user: &UserId) -> String {
    [user.app.as_ref(), " ", user.openid.as_ref()].concat()
}

/// Shows no more of the ids than [`OpenId`]'s own `Debug` does, and no key.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User({} {:?})", self.id.app, self.id.openid)
    }
}

/// A live session: whose it is, and until when. Cloning one is cheap.
#[derive(Debug, Clone)]
pub struct Session {
    user: Arc<User>,
    /// When it expires unless used (with sliding expiry), or at all, and its login plus the
    /// TTL, which no use extends: seconds since the Unix epoch. Held in 32 bits (enough
    /// until 2106) since the memory store keeps a million of them; read as [`Deadlines`].
    expires_at: u32,
    ends_at: u32,
}

/// A deadline as a session holds it: past 2106, the last second it can say.
fn held(deadline: u64) -> u32 {
    u32::try_from(deadline).unwrap_or(u32::MAX)
}

impl Session {
    pub fn new(user: Arc<User>, deadlines: Deadlines) -> Self {
        Self {
            user,
            expires_at: held(deadlines.expires_at),
            ends_at: held(deadlines.ends_at),
        }
    }

    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            expires_at: self.expires_at.into(),
            ends_at: self.ends_at.into(),
        }
    }

    /// When it expires unless used (with sliding expiry), or at all.
    pub fn expires_at(&self) -> u64 {
        self.expires_at.into()
    }

    /// Its login plus the TTL.
    pub fn ends_at(&self) -> u64 {
        self.ends_at.into()
    }

    /// The same session, under a later deadline (sliding expiry).
    fn expiring_at(&self, deadline: u64) -> Self {
        Self {
            expires_at: held(deadline),
            ..self.clone()
        }
    }

    pub fn user(&self) -> &User {
        &self.user
    }

    /// The app the session belongs to.
    pub fn app(&self) -> &AppName {
        self.user.app()
    }

    pub fn openid(&self) -> &OpenId {
        self.user.openid()
    }

    pub fn unionid(&self) -> Option<&UnionId> {
        self.user.unionid()
    }

    /// Seconds left at `now`; 0 once expired.
    pub fn expires_in(&self, now: u64) -> u64 {
        self.expires_at().saturating_sub(now)
    }
}

/// What a login hands back to the client: the new token and what it stands for.
#[derive(Debug)]
pub struct IssuedSession {
    pub token: SessionToken,
    pub session: Session,
    pub expires_in: u64,
}

/// Why no session was created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An operator blocked the user until then (seconds since the Unix epoch).
    #[error("the user is blocked")]
    Blocked { until: u64 },
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

    /// Starts a session in `app` for a user WeChat has just vouched for, under a fresh
    /// token, and gives the user's other live sessions in that app the new session_key;
    /// unless an operator blocked the user.
    pub async fn create(
        &self,
        app: &AppName,
        login: WxSession,
    ) -> Result<IssuedSession, CreateError> {
        match self {
            Self::Memory(store) => store.create(app, login),
            Self::Redis(store) => store.create(app, login).await,
        }
    }

    /// The newest session_key of the session's user, for verifying and decrypting that
    /// user's data: in memory at hand, in Redis one read of the user's record.
    pub async fn session_key(&self, session: &Session) -> Result<SessionKey, StoreError> {
        match self {
            Self::Memory(_) => session
                .user()
                .known_session_key()
                .ok_or(StoreError::Corrupt("a session without a session_key")),
            Self::Redis(store) => store.session_key(session).await,
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

    /// When the session's user logged in: its end, less the TTL.
    pub fn logged_in_at(&self, session: &Session) -> u64 {
        let lifetime = match self {
            Self::Memory(store) => &store.0.lifetime,
            Self::Redis(store) => &store.lifetime,
        };
        session.ends_at().saturating_sub(lifetime.ttl_secs())
    }

    /// The live session a JWT's `sid` names ([`TokenHash::session_id`]), as [`Self::get`].
    pub async fn find(&self, hash: &TokenHash) -> Result<Option<Session>, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.find(hash)),
            Self::Redis(store) => store.find(hash).await,
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
            Self::Redis(store) => store.redis.probe().await,
        }
    }

    /// Whether the store took its last write (or probe), without asking it again: what a
    /// login checks before it spends the user's code at WeChat.
    pub fn writable(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(store) => store.redis.writable(),
        }
    }

    /// The sealed session_keys this process could not open since start (Redis only).
    pub fn key_mismatches(&self) -> Option<KeyMismatches> {
        match self {
            Self::Memory(_) => None,
            Self::Redis(store) => store.key_mismatches(),
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
            Self::Memory(store) => store.0.clock.now(),
            Self::Redis(store) => store.clock.now(),
        }
    }
}
