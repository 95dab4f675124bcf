//! What an operator can do to one user's sessions, in either store: look the user up,
//! revoke every session (in one app, or in every app by unionid), and block logins for a
//! while. Every replica sees it at once: Redis is shared, and the memory store has no
//! other replica.

use super::{SessionStore, UserId};
use crate::domain::UnionId;
use crate::redis_conn::StoreError;

/// An operator's block on a user's logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Seconds since the Unix epoch; the block lifts by itself then.
    pub until: u64,
    /// For operators only: never shown to the user.
    pub reason: String,
}

/// One user of one app, as the store knows them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UserSummary {
    pub unionid: Option<String>,
    /// Live sessions.
    pub sessions: u64,
    pub block: Option<Block>,
}

impl SessionStore {
    pub async fn user(&self, user: &UserId) -> Result<UserSummary, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.user(user).await),
            Self::Redis(store) => store.user(user).await,
        }
    }

    /// Ends every session of the user; returns how many were live.
    pub async fn revoke_user(&self, user: &UserId) -> Result<u64, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.revoke_user(user).await),
            Self::Redis(store) => store.revoke_user(user).await,
        }
    }

    /// Ends every session of the person `unionid` names, in every app.
    pub async fn revoke_unionid(&self, unionid: &UnionId) -> Result<u64, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.revoke_unionid(unionid).await),
            Self::Redis(store) => store.revoke_unionid(unionid).await,
        }
    }

    /// Blocks the user's logins in their app until `block.until` and ends their sessions;
    /// returns how many were live. A block set again replaces the one before.
    pub async fn block(&self, user: &UserId, block: Block) -> Result<u64, StoreError> {
        match self {
            Self::Memory(store) => store.block(user, block).await,
            Self::Redis(store) => store.block(user, block).await,
        }
    }

    /// Lifts a block; returns whether there was one.
    pub async fn unblock(&self, user: &UserId) -> Result<bool, StoreError> {
        match self {
            Self::Memory(store) => store.unblock(user).await,
            Self::Redis(store) => store.unblock(user).await,
        }
    }
}
