//! The access_token shared by every replica through Redis. One replica refreshes at a time,
//! under a lock that expires (`SET NX PX`), so a replica that dies mid-refresh cannot wedge
//! the others; the rest poll briefly for the token it writes.

use std::time::Duration;

use rand::Rng;
use redis::Script;

use super::{
    AccessToken, DAY_SECS, FORCE_REFRESH_PER_DAY, FORCE_REFRESH_SPACING_SECS, Grant, HandedOut,
    cache_for, fetch_replacing, within_wait_limit,
};
use crate::redis_conn::Redis;
use crate::wechat::client::WeChatClient;
use crate::wechat::error::WeChatError;

/// How often a replica that is not refreshing looks for the token another one writes.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Deletes the lock only if this replica still holds it: after expiry, another may.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

pub struct SharedAccessTokens {
    wechat: WeChatClient,
    redis: Redis,
    /// `access_token:<appid>`: the token, with a Redis TTL that ends where its use should.
    token_key: String,
    lock_key: String,
    force_spacing_key: String,
    force_count_key: String,
    wait_limit: Duration,
}

impl SharedAccessTokens {
    pub fn new(wechat: WeChatClient, redis: Redis, wait_limit: Duration) -> Self {
        let base = redis.key(&format!("access_token:{}", wechat.appid()));
        Self {
            token_key: base.clone(),
            lock_key: format!("{base}:lock"),
            force_spacing_key: format!("{base}:forced"),
            force_count_key: format!("{base}:forced_today"),
            wechat,
            redis,
            wait_limit,
        }
    }

    /// A token other than `rejected` (any token, when `None`), from Redis or, by this
    /// replica holding the lock, from WeChat.
    pub async fn obtain(&self, rejected: Option<&AccessToken>) -> Result<AccessToken, WeChatError> {
        Ok(self.obtain_reporting(rejected).await?.0)
    }

    /// As [`SharedAccessTokens::obtain`], with how long Redis keeps it and whether this
    /// call fetched it.
    pub async fn hand_out(&self, rejected: Option<&AccessToken>) -> Result<HandedOut, WeChatError> {
        let (token, refreshed) = self.obtain_reporting(rejected).await?;
        let left_ms: i64 = self
            .redis
            .query(redis::cmd("PTTL").arg(&self.token_key))
            .await
            .map_err(WeChatError::TokenStore)?;
        Ok(HandedOut {
            token,
            expires_in: u64::try_from(left_ms / 1000).unwrap_or(0),
            refreshed,
        })
    }

    async fn obtain_reporting(
        &self,
        rejected: Option<&AccessToken>,
    ) -> Result<(AccessToken, bool), WeChatError> {
        within_wait_limit(self.wait_limit, async {
            loop {
                if let Some(token) = self.read().await?.filter(|t| Some(t) != rejected) {
                    return Ok((token, false));
                }
                let owner = format!("{:016x}", rand::rng().next_u64());
                if self.try_lock(&owner).await? {
                    let refreshed = self.refresh_locked(rejected).await;
                    // Best effort: if this fails, the lock expires by itself.
                    let _ = self
                        .redis
                        .write::<i64>(Script::new(UNLOCK).key(&self.lock_key).arg(&owner))
                        .await;
                    return refreshed;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        })
        .await
    }

    async fn refresh_locked(
        &self,
        rejected: Option<&AccessToken>,
    ) -> Result<(AccessToken, bool), WeChatError> {
        // The replica before us may have written a token while we waited for the lock.
        if let Some(token) = self.read().await?.filter(|t| Some(t) != rejected) {
            return Ok((token, false));
        }
        let grant = fetch_replacing(&self.wechat, rejected, async || {
            self.wait_for_forced_refresh().await
        })
        .await?;
        self.write(&grant).await?;
        tracing::info!(
            expires_in = grant.expires_in,
            "fetched a new access_token for all replicas"
        );
        Ok((grant.token, true))
    }

    async fn read(&self) -> Result<Option<AccessToken>, WeChatError> {
        let token: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(&self.token_key))
            .await
            .map_err(WeChatError::TokenStore)?;
        Ok(token.map(AccessToken::from))
    }

    async fn write(&self, grant: &Grant) -> Result<(), WeChatError> {
        let ttl_ms = cache_for(grant.expires_in).max(1) * 1000;
        self.redis
            .write::<()>(
                redis::cmd("SET")
                    .arg(&self.token_key)
                    .arg(grant.token.expose())
                    .arg("PX")
                    .arg(ttl_ms),
            )
            .await
            .map_err(WeChatError::TokenStore)
    }

    async fn try_lock(&self, owner: &str) -> Result<bool, WeChatError> {
        let set: Option<String> = self
            .redis
            .write(
                redis::cmd("SET")
                    .arg(&self.lock_key)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(self.wait_limit)),
            )
            .await
            .map_err(WeChatError::TokenStore)?;
        Ok(set.is_some())
    }

    /// Counts a forced refresh for the whole app and answers `None`, if WeChat's limits (20
    /// a day, 30 s apart) allow one now; else the seconds until they will.
    async fn wait_for_forced_refresh(&self) -> Result<Option<u64>, WeChatError> {
        let spaced: Option<String> = self
            .redis
            .write(
                redis::cmd("SET")
                    .arg(&self.force_spacing_key)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(FORCE_REFRESH_SPACING_SECS),
            )
            .await
            .map_err(WeChatError::TokenStore)?;
        if spaced.is_none() {
            return self.seconds_left(&self.force_spacing_key).await.map(Some);
        }
        let count: i64 = self
            .redis
            .write(redis::cmd("INCR").arg(&self.force_count_key))
            .await
            .map_err(WeChatError::TokenStore)?;
        if count == 1 {
            self.redis
                .write::<i64>(
                    redis::cmd("EXPIRE")
                        .arg(&self.force_count_key)
                        .arg(DAY_SECS),
                )
                .await
                .map_err(WeChatError::TokenStore)?;
        }
        if count <= i64::from(FORCE_REFRESH_PER_DAY) {
            return Ok(None);
        }
        self.seconds_left(&self.force_count_key).await.map(Some)
    }

    /// How long until `key` expires, at least a second.
    async fn seconds_left(&self, key: &str) -> Result<u64, WeChatError> {
        let ttl: i64 = self
            .redis
            .query(redis::cmd("TTL").arg(key))
            .await
            .map_err(WeChatError::TokenStore)?;
        Ok(u64::try_from(ttl).unwrap_or(0).max(1))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
