//! The operator's view of the Redis store. A user's keys share one slot, so each action on
//! them is one script; the sessions themselves live wherever their hashes put them, and
//! are deleted (or counted) after, all at once.

use super::RedisStore;
use crate::domain::{AppName, OpenId, UnionId};
use crate::redis_conn::StoreError;
use crate::session::{Block, UserId, UserSummary};

/// The user's unionid, block and indexed sessions. KEYS: the user, the user's sessions,
/// the block. ARGV: now.
pub(super) const USER: &str = r"
local unionid = redis.call('HGET', KEYS[1], 'unionid') or ''
local block = redis.call('HMGET', KEYS[3], 'until', 'reason')
local sessions = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
return {unionid, block[1] or '', block[2] or '', sessions}
";

/// Empties the user's index and returns what it held. KEYS: the user's sessions.
pub(super) const TAKE_SESSIONS: &str = r"
local sessions = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return sessions
";

/// Sets a block, then empties the user's index and returns what it held: in one script,
/// so no login indexes a session between the two. KEYS: the block, the user's sessions.
/// ARGV: until, reason, seconds from now to until.
pub(super) const BLOCK: &str = r"
redis.call('HSET', KEYS[1], 'until', ARGV[1], 'reason', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local sessions = redis.call('ZRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return sessions
";

impl RedisStore {
    /// Two round trips: the user's keys (one script), then whether each indexed session is
    /// still there (an idle one may have expired, or been logged out).
    pub async fn user(&self, user: &UserId) -> Result<UserSummary, StoreError> {
        let now = self.clock.now();
        let keys = self.user_keys(&user.app, &user.openid);
        let mut lookup = self.scripts.user.prepare_invoke();
        lookup
            .key(&keys.record)
            .key(&keys.sessions)
            .key(&keys.block)
            .arg(now);
        let (unionid, until, reason, mut sessions): (String, String, String, Vec<String>) =
            self.redis.query(&lookup).await?;
        sessions.extend(self.old_sessions(&user.app, &user.openid).await?);
        // A pass may have copied some from the old index and not yet taken them out.
        sessions.sort_unstable();
        sessions.dedup();
        let live: Vec<i64> = self
            .redis
            .query_each(self.on_each_session("EXISTS", &sessions))
            .await?;
        let block = until
            .parse::<u64>()
            .ok()
            .filter(|&until| until > now)
            .map(|until| Block { until, reason });
        Ok(UserSummary {
            unionid: Some(unionid).filter(|u| !u.is_empty()),
            sessions: live.iter().filter(|&&n| n > 0).count() as u64,
            block,
        })
    }

    /// The old index first: the upgrade pass indexes a session in the new one before it
    /// takes it out of the old, so in this order none moving meanwhile is missed.
    pub async fn revoke_user(&self, user: &UserId) -> Result<u64, StoreError> {
        let mut sessions = self.take_old_sessions(&user.app, &user.openid).await?;
        let keys = self.user_keys(&user.app, &user.openid);
        let mut take = self.scripts.take_sessions.prepare_invoke();
        take.key(&keys.sessions);
        sessions.extend(self.redis.remove::<Vec<String>>(&take).await?);
        self.delete_sessions(&sessions).await
    }

    /// The users the unionid's index names, each revoked in their app.
    pub async fn revoke_unionid(&self, unionid: &UnionId) -> Result<u64, StoreError> {
        let members: Vec<String> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg(self.unionid_key(unionid.as_ref())))
            .await?;
        let mut revoked = 0;
        for member in members {
            let Some((app, openid)) = member.split_once(' ') else {
                continue;
            };
            let (Some(app), Some(openid)) = (AppName::parse(app), OpenId::parse(openid)) else {
                continue;
            };
            revoked += self.revoke_user(&UserId { app, openid }).await?;
        }
        Ok(revoked)
    }

    /// The old index first, as in [`RedisStore::revoke_user`]. No login writes the old
    /// layout any more (but a replica of the previous release during a rolling upgrade,
    /// which knows no blocks), so taking it before the block is as good as after.
    pub async fn block(&self, user: &UserId, block: Block) -> Result<u64, StoreError> {
        let mut sessions = self.take_old_sessions(&user.app, &user.openid).await?;
        let keys = self.user_keys(&user.app, &user.openid);
        let mut set = self.scripts.block.prepare_invoke();
        set.key(&keys.block)
            .key(&keys.sessions)
            .arg(block.until)
            .arg(&block.reason)
            .arg(block.until.saturating_sub(self.clock.now()).max(1));
        sessions.extend(self.redis.write::<Vec<String>>(&set).await?);
        self.delete_sessions(&sessions).await
    }

    pub async fn unblock(&self, user: &UserId) -> Result<bool, StoreError> {
        let keys = self.user_keys(&user.app, &user.openid);
        let removed: i64 = self
            .redis
            .remove(redis::cmd("DEL").arg(&keys.block))
            .await?;
        Ok(removed > 0)
    }

    /// Deletes sessions by hash, all at once; returns how many were there.
    async fn delete_sessions(&self, hashes: &[String]) -> Result<u64, StoreError> {
        let deleted: Vec<i64> = self
            .redis
            .remove_each(self.on_each_session("DEL", hashes))
            .await?;
        Ok(deleted.iter().filter(|&&n| n > 0).count() as u64)
    }

    /// `command` on the key of each session in `hashes`.
    fn on_each_session(&self, command: &str, hashes: &[String]) -> Vec<redis::Cmd> {
        hashes
            .iter()
            .map(|hash| {
                redis::cmd(command)
                    .arg(self.session_record_key(hash))
                    .to_owned()
            })
            .collect()
    }
}
