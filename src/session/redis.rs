//! Sessions in Redis (or Valkey, or a managed Redis), shared by every replica and kept
//! across restarts. Keys, under the configured prefix:
//!
//! - `session:<sha256(token) hex>`: a hash of openid, unionid, session_key and expires_at,
//!   with a Redis TTL. A dump of Redis yields no usable token.
//! - `openid:<openid>`: the set of that openid's session hashes, so a login can give every
//!   live session of the user WeChat's new session_key. Members of expired sessions are
//!   dropped on the openid's next login.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::{IssuedSession, Session, SessionToken, User};
use crate::clock::Clock;
use crate::domain::{OpenId, SessionKey, UnionId, WxSession};
use crate::redis_conn::{Redis, StoreError, Unavailable};

/// Stores a session and gives all of the openid's live sessions its session_key, in one
/// atomic step. KEYS: the session, the openid's index. ARGV: openid, unionid ("" for
/// none), session_key, expires_at, ttl seconds, the session hash, the session key prefix.
const CREATE: &str = r"
for _, hash in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local other = ARGV[7] .. hash
  if redis.call('EXISTS', other) == 1 then
    redis.call('HSET', other, 'session_key', ARGV[3])
  else
    redis.call('SREM', KEYS[2], hash)
  end
end
redis.call('HSET', KEYS[1], 'openid', ARGV[1], 'unionid', ARGV[2], 'session_key', ARGV[3], 'expires_at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
";

#[derive(Clone)]
pub struct RedisStore {
    redis: Redis,
    create: Arc<Script>,
    ttl: Duration,
    clock: Clock,
}

impl RedisStore {
    pub fn new(redis: Redis, ttl: Duration, clock: Clock) -> Self {
        Self {
            redis,
            create: Arc::new(Script::new(CREATE)),
            ttl,
            clock,
        }
    }

    pub async fn create(&self, login: WxSession) -> Result<IssuedSession, StoreError> {
        let token = SessionToken::generate();
        let hash = token.hash().to_hex();
        let expires_at = self.clock.now() + self.ttl.as_secs();
        let mut invocation = self.create.prepare_invoke();
        invocation
            .key(self.redis.key(&format!("session:{hash}")))
            .key(self.redis.key(&format!("openid:{}", login.openid.as_ref())))
            .arg(login.openid.as_ref())
            .arg(login.unionid.as_ref().map_or("", AsRef::as_ref))
            .arg(login.session_key.to_base64())
            .arg(expires_at)
            .arg(self.ttl.as_secs())
            .arg(&hash)
            .arg(self.redis.key("session:"));
        if let Err(err) = self.redis.run_script::<i64>(&invocation).await {
            if err.problem() == Some(Unavailable::Timeout) {
                self.discard(hash, login.openid.as_ref());
            }
            return Err(err);
        }
        Ok(IssuedSession {
            token,
            session: Session::new(Arc::new(User::new(login)), expires_at),
            expires_in: self.ttl.as_secs(),
        })
    }

    /// Removes a session whose write timed out, in case Redis runs the write after all: a
    /// session nobody holds the token of must not linger. The removal follows the write on
    /// the same connection, so Redis runs them in that order.
    fn discard(&self, hash: String, openid: &str) {
        let session = self.redis.key(&format!("session:{hash}"));
        let index = self.redis.key(&format!("openid:{openid}"));
        let redis = self.redis.clone();
        tokio::spawn(async move {
            let mut discard = redis::pipe();
            discard.atomic().del(&session).srem(&index, &hash);
            let _ = redis.write_pipeline(&discard).await;
        });
    }

    pub async fn get(&self, token: &SessionToken) -> Result<Option<Session>, StoreError> {
        let key = self
            .redis
            .key(&format!("session:{}", token.hash().to_hex()));
        let fields: Vec<Option<String>> = self
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("openid")
                    .arg("unionid")
                    .arg("session_key")
                    .arg("expires_at"),
            )
            .await?;
        let [openid, unionid, session_key, expires_at] = <[Option<String>; 4]>::try_from(fields)
            .map_err(|_| StoreError::Corrupt("HMGET answered the wrong number of fields"))?;
        let Some(openid) = openid else {
            return Ok(None);
        };
        let login = WxSession {
            openid: OpenId::parse(&openid).ok_or(StoreError::Corrupt("an invalid openid"))?,
            unionid: match unionid.as_deref() {
                None | Some("") => None,
                Some(raw) => {
                    Some(UnionId::parse(raw).ok_or(StoreError::Corrupt("an invalid unionid"))?)
                }
            },
            session_key: session_key
                .as_deref()
                .and_then(SessionKey::parse_base64)
                .ok_or(StoreError::Corrupt("an invalid session_key"))?,
        };
        let expires_at: u64 = expires_at
            .and_then(|e| e.parse().ok())
            .ok_or(StoreError::Corrupt("an invalid expires_at"))?;
        // Redis expires the key itself; this also honours a clock that tests move.
        if expires_at <= self.clock.now() {
            return Ok(None);
        }
        Ok(Some(Session::new(Arc::new(User::new(login)), expires_at)))
    }

    pub async fn revoke(&self, token: &SessionToken) -> Result<bool, StoreError> {
        let key = self
            .redis
            .key(&format!("session:{}", token.hash().to_hex()));
        let removed: i64 = self.redis.write(redis::cmd("DEL").arg(&key)).await?;
        Ok(removed > 0)
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Whether Redis takes writes now: one small write.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.redis.probe().await
    }

    /// Whether Redis took the last write (or probe), without asking it again.
    pub fn writable(&self) -> Result<(), StoreError> {
        self.redis.writable()
    }
}
