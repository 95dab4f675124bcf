//! Sessions in the layout of the release before per-user records: a session hash that
//! holds its own session_key and no app, listed in `openid:<openid>`. That release had no
//! cluster mode, so they live on a single Redis only. Until they expire, an operator's
//! actions on a user of the `default` app walk that index too, and passes from start-up
//! index them in the current layout (the user's sessions, the unionid's users), so that a
//! revocation by unionid finds them, then drop them from the old index.

use super::RedisStore;
use crate::domain::{AppName, OpenId};
use crate::redis_conn::StoreError;
use crate::session::{UserId, user_key};

/// Adds a session to its user's index. KEYS: the user's sessions. ARGV: the session hash,
/// its end, ttl seconds.
pub(super) const INDEX_SESSION: &str = r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Empties an old index and returns what it held. KEYS: the old index.
pub(super) const TAKE_OLD_SESSIONS: &str = r"
local sessions = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return sessions
";

/// What one pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpgradePass {
    /// Old indexes (one per openid) found.
    pub indexes: u64,
    /// Live sessions indexed in the current layout.
    pub sessions: u64,
}

impl RedisStore {
    /// The old index of a user's sessions, where there can be one.
    fn old_index_key(&self, app: &AppName, openid: &OpenId) -> Option<String> {
        (app.is_default() && !self.redis.is_cluster())
            .then(|| self.redis.key(&format!("openid:{}", openid.as_ref())))
    }

    /// The hashes of the user's sessions in the old layout that no pass has indexed yet.
    pub(super) async fn old_sessions(
        &self,
        app: &AppName,
        openid: &OpenId,
    ) -> Result<Vec<String>, StoreError> {
        match self.old_index_key(app, openid) {
            Some(index) => self.redis.query(redis::cmd("SMEMBERS").arg(index)).await,
            None => Ok(Vec::new()),
        }
    }

    /// As [`RedisStore::old_sessions`], emptying the old index.
    pub(super) async fn take_old_sessions(
        &self,
        app: &AppName,
        openid: &OpenId,
    ) -> Result<Vec<String>, StoreError> {
        let Some(index) = self.old_index_key(app, openid) else {
            return Ok(Vec::new());
        };
        let mut take = self.scripts.take_old_sessions.prepare_invoke();
        take.key(index);
        self.redis.remove(&take).await
    }

    /// Indexes every session of the old layout in the current one and takes it out of the
    /// old index. Standalone Redis only; SCAN walks the keyspace a batch at a time, so
    /// Redis serves everyone else meanwhile.
    pub async fn index_pre_upgrade_sessions(&self) -> Result<UpgradePass, StoreError> {
        let mut pass = UpgradePass::default();
        if self.redis.is_cluster() {
            return Ok(pass);
        }
        let prefix = self.redis.key("openid:");
        let pattern = format!("{}*", escape_glob(&prefix));
        let mut cursor = 0_u64;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .redis
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            for key in keys {
                let Some(openid) = key.strip_prefix(&prefix).and_then(OpenId::parse) else {
                    continue;
                };
                pass.indexes += 1;
                pass.sessions += self.index_old_sessions(&key, openid).await?;
            }
            if next == 0 {
                return Ok(pass);
            }
            cursor = next;
        }
    }

    /// Indexes the live sessions that `old_index` lists, then takes them all out of it.
    async fn index_old_sessions(&self, old_index: &str, openid: OpenId) -> Result<u64, StoreError> {
        let hashes: Vec<String> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg(old_index))
            .await?;
        let user = UserId {
            app: AppName::default_app(),
            openid,
        };
        let sessions = self.user_keys(&user.app, &user.openid).sessions;
        let ttl = self.lifetime.ttl_secs();
        let mut indexed = 0;
        for hash in &hashes {
            let fields: (Option<String>, Option<String>, Option<u64>) = self
                .redis
                .query(
                    redis::cmd("HMGET")
                        .arg(self.session_record_key(hash))
                        .arg("app")
                        .arg("unionid")
                        .arg("expires_at"),
                )
                .await?;
            let (None, unionid, Some(ends_at)) = fields else {
                continue;
            };
            let mut index = self.scripts.index_session.prepare_invoke();
            index.key(&sessions).arg(hash).arg(ends_at).arg(ttl);
            self.redis.write::<i64>(&index).await?;
            if let Some(unionid) = unionid.filter(|u| !u.is_empty()) {
                let mut index = self.scripts.index_unionid.prepare_invoke();
                index
                    .key(self.unionid_key(&unionid))
                    .arg(user_key(&user))
                    .arg(ttl);
                self.redis.write::<i64>(&index).await?;
            }
            indexed += 1;
        }
        if !hashes.is_empty() {
            self.redis
                .remove::<i64>(redis::cmd("SREM").arg(old_index).arg(&hashes))
                .await?;
        }
        Ok(indexed)
    }
}

/// `text` matched literally in a SCAN pattern.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
