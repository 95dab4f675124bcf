//! The operator's view of the memory store. Sessions are indexed by token only, so finding
//! a user's takes a scan of them all: done on a blocking thread, never on the runtime. A
//! scan finds every session of the user, whatever became of the user's own index entry
//! (evicted, or replaced when a unionid appeared, which leaves the older sessions with a
//! record that has none).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Caches, MemoryStore};
use crate::domain::UnionId;
use crate::redis_conn::StoreError;
use crate::session::token::ShortTokenHash;
use crate::session::{Block, Session, User, UserId, UserSummary};

impl MemoryStore {
    pub async fn user(&self, user: &UserId) -> UserSummary {
        let now = self.0.clock.now();
        let sessions = self.sessions_of(user.clone()).await;
        let live: Vec<&Session> = sessions
            .iter()
            .map(|(_, session)| session)
            .filter(|session| session.expires_at() > now)
            .collect();
        // The unionid of the newest session that has one: sessions from before WeChat sent
        // it have none, and sessions of one second are in no particular order.
        let unionid = live
            .iter()
            .filter_map(|session| Some((session.ends_at(), session.unionid()?)))
            .max_by_key(|(ends_at, _)| *ends_at)
            .map(|(_, unionid)| unionid.as_ref().to_owned());
        UserSummary {
            unionid,
            sessions: live.len() as u64,
            block: self.0.block_of(user, now),
        }
    }

    pub async fn revoke_user(&self, user: &UserId) -> u64 {
        let found = self.sessions_of(user.clone()).await;
        self.remove_all(found)
    }

    /// Ends the sessions of every user a session of whom carries `unionid`, those from before
    /// WeChat sent it included: two scans, the people first, then their sessions.
    pub async fn revoke_unionid(&self, unionid: &UnionId) -> u64 {
        let unionid = unionid.clone();
        let people: HashSet<UserId> = self
            .sessions_where(move |user| user.unionid() == Some(&unionid))
            .await
            .into_iter()
            .map(|(_, session)| session.user().id().clone())
            .collect();
        let found = self
            .sessions_where(move |user| people.contains(user.id()))
            .await;
        self.remove_all(found)
    }

    /// Blocks the user and ends their sessions, once the block is in the blocks file. If
    /// the file cannot be written, the block holds in this process all the same (and the
    /// sessions end), and the error says it will not outlive it.
    pub async fn block(&self, user: &UserId, block: Block) -> Result<u64, StoreError> {
        let file = self
            .0
            .blocks_file
            .as_ref()
            .ok_or(StoreError::BlocksNotDurable)?;
        let now = self.0.clock.now();
        let saved = file
            .save_after(|| {
                let mut blocks = self.0.blocks_mut();
                blocks.retain(|_, block| block.until > now);
                blocks.insert(user.clone(), block);
                listed(&blocks)
            })
            .await;
        let revoked = self.revoke_user(user).await;
        saved.map_err(StoreError::BlocksNotSaved)?;
        Ok(revoked)
    }

    pub async fn unblock(&self, user: &UserId) -> Result<bool, StoreError> {
        let Some(file) = &self.0.blocks_file else {
            return Ok(false);
        };
        let now = self.0.clock.now();
        let mut lifted = false;
        file.save_after(|| {
            let mut blocks = self.0.blocks_mut();
            lifted = blocks.remove(user).is_some_and(|block| block.until > now);
            listed(&blocks)
        })
        .await
        .map_err(StoreError::BlocksNotSaved)?;
        Ok(lifted)
    }

    /// Removes the sessions found; returns how many were live.
    fn remove_all(&self, found: Vec<(Arc<ShortTokenHash>, Session)>) -> u64 {
        found
            .into_iter()
            .map(|(key, _)| u64::from(self.remove(*key)))
            .sum()
    }

    /// Every session of the user.
    async fn sessions_of(&self, id: UserId) -> Vec<(Arc<ShortTokenHash>, Session)> {
        self.sessions_where(move |user| *user.id() == id).await
    }

    /// Every session whose user `matches`, from a scan on a blocking thread.
    async fn sessions_where(
        &self,
        matches: impl Fn(&User) -> bool + Send + 'static,
    ) -> Vec<(Arc<ShortTokenHash>, Session)> {
        let caches: Arc<Caches> = Arc::clone(&self.0);
        let scan = tokio::task::spawn_blocking(move || {
            caches
                .sessions
                .iter()
                .filter(|(_, session)| matches(&session.user))
                .collect::<Vec<_>>()
        });
        match scan.await {
            Ok(found) => found,
            // A scan that panicked is a bug: the request answers 500, as for any panic.
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
}

fn listed(blocks: &HashMap<UserId, Block>) -> Vec<(UserId, Block)> {
    blocks
        .iter()
        .map(|(user, block)| (user.clone(), block.clone()))
        .collect()
}
