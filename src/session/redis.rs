//! Sessions in Redis (or Valkey, or a managed Redis), shared by every replica and kept
//! across restarts. Keys, under the configured prefix:
//!
//! - `session:<sha256(token) hex>`: a hash of app, openid, unionid and expires_at, with a
//!   Redis TTL. A dump of Redis yields no usable token. A lookup by token is one command.
//! - `user:{<app>:<openid>}`: the user's newest session_key (and unionid), which every
//!   session of the user reads, so a login rotates the key for all of them at once.
//! - `sessions:{<app>:<openid>}`: the user's sessions, a sorted set of session hashes by
//!   expiry: the per-user index that a revocation of all of a user's sessions walks.
//!
//! The two keys of a user share a hash tag, so that the script that changes them together
//! touches one slot of a Redis Cluster; a session's own key lives wherever its hash puts it.
//! Records written before there were user records (a session hash that holds its own
//! session_key, and no app) are read as sessions of the `default` app.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::{IssuedSession, Session, SessionToken, User};
use crate::clock::Clock;
use crate::domain::{AppName, OpenId, SessionKey, UnionId, WxSession};
use crate::redis_conn::{Redis, StoreError, Unavailable};

/// Gives a user WeChat's newest session_key and adds a session to the user's index, whose
/// expired members it drops. KEYS: the user, the user's sessions. ARGV: session_key,
/// unionid ("" for none), ttl seconds, the session hash, its expiry, now.
const LOGIN: &str = r"
redis.call('HSET', KEYS[1], 'session_key', ARGV[1], 'unionid', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
";

/// Writes a session's own record and its expiry in one command on one key, so that a
/// Redis Cluster can take it (a MULTI would need its own connection to the key's node) and
/// no record outlives its expiry. KEYS: the session. ARGV: ttl seconds, then the record's
/// field and value pairs.
const WRITE_SESSION: &str = r"
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
";

#[derive(Clone)]
pub struct RedisStore {
    redis: Redis,
    login: Arc<Script>,
    write_session: Arc<Script>,
    ttl: Duration,
    clock: Clock,
}

/// Where one user's records live.
struct UserKeys {
    record: String,
    sessions: String,
}

impl RedisStore {
    pub fn new(redis: Redis, ttl: Duration, clock: Clock) -> Self {
        Self {
            redis,
            login: Arc::new(Script::new(LOGIN)),
            write_session: Arc::new(Script::new(WRITE_SESSION)),
            ttl,
            clock,
        }
    }

    fn session_key_name(&self, hash: &str) -> String {
        self.redis.key(&format!("session:{hash}"))
    }

    fn user_keys(&self, app: &str, openid: &str) -> UserKeys {
        let tag = format!("{{{app}:{openid}}}");
        UserKeys {
            record: self.redis.key(&format!("user:{tag}")),
            sessions: self.redis.key(&format!("sessions:{tag}")),
        }
    }

    /// Two round trips: the user's record and index (one slot, one script), then the
    /// session's own record (one key, one script that also sets its expiry).
    pub async fn create(
        &self,
        app: &AppName,
        login: WxSession,
    ) -> Result<IssuedSession, StoreError> {
        let token = SessionToken::generate();
        let hash = token.hash().to_hex();
        let now = self.clock.now();
        let expires_at = now + self.ttl.as_secs();
        let user = self.user_keys(app.as_ref(), login.openid.as_ref());
        let unionid = login.unionid.as_ref().map_or("", AsRef::as_ref);
        let mut invocation = self.login.prepare_invoke();
        invocation
            .key(&user.record)
            .key(&user.sessions)
            .arg(login.session_key.to_base64())
            .arg(unionid)
            .arg(self.ttl.as_secs())
            .arg(&hash)
            .arg(expires_at)
            .arg(now);
        self.redis.run_script::<i64>(&invocation).await?;
        let session_key = self.session_key_name(&hash);
        let mut write = self.write_session.prepare_invoke();
        write.key(&session_key).arg(self.ttl.as_secs());
        for (field, value) in session_record(app, &login, expires_at) {
            write.arg(field).arg(value);
        }
        let written = self.redis.run_script::<i64>(&write).await;
        if let Err(err) = written {
            self.discard(session_key, user.sessions, hash, err.problem());
            return Err(err);
        }
        Ok(IssuedSession {
            token,
            session: Session::new(Arc::new(User::new(app, login)), expires_at),
            expires_in: self.ttl.as_secs(),
        })
    }

    /// Takes a session that could not be written off its user's index and, if its write
    /// timed out, removes it too, in case Redis runs the write after all: a session nobody
    /// holds the token of must not linger. The removal follows the write on the same
    /// connection, so Redis runs them in that order.
    fn discard(
        &self,
        session_key: String,
        index: String,
        hash: String,
        problem: Option<Unavailable>,
    ) {
        let redis = self.redis.clone();
        tokio::spawn(async move {
            if problem == Some(Unavailable::Timeout) {
                let _ = redis
                    .write::<i64>(redis::cmd("DEL").arg(&session_key))
                    .await;
            }
            let _ = redis
                .write::<i64>(redis::cmd("ZREM").arg(&index).arg(&hash))
                .await;
        });
    }

    /// One command: the session's own record.
    pub async fn get(&self, token: &SessionToken) -> Result<Option<Session>, StoreError> {
        let hash = token.hash().to_hex();
        let Some(record) = self.record(&hash).await? else {
            return Ok(None);
        };
        // Redis expires the key itself; this also honours a clock that tests move.
        if record.expires_at <= self.clock.now() {
            return Ok(None);
        }
        Ok(Some(record.into_session()))
    }

    async fn record(&self, hash: &str) -> Result<Option<Record>, StoreError> {
        let fields: Vec<Option<String>> = self
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(self.session_key_name(hash))
                    .arg("app")
                    .arg("openid")
                    .arg("unionid")
                    .arg("expires_at")
                    .arg("session_key"),
            )
            .await?;
        let [app, openid, unionid, expires_at, legacy_key] =
            <[Option<String>; 5]>::try_from(fields)
                .map_err(|_| StoreError::Corrupt("HMGET answered the wrong number of fields"))?;
        let Some(openid) = openid else {
            return Ok(None);
        };
        Ok(Some(Record {
            app: match app.as_deref() {
                None | Some("") => AppName::default_app(),
                Some(raw) => AppName::parse(raw).ok_or(StoreError::Corrupt("an invalid app"))?,
            },
            openid: OpenId::parse(&openid).ok_or(StoreError::Corrupt("an invalid openid"))?,
            unionid: match unionid.as_deref() {
                None | Some("") => None,
                Some(raw) => {
                    Some(UnionId::parse(raw).ok_or(StoreError::Corrupt("an invalid unionid"))?)
                }
            },
            expires_at: expires_at
                .and_then(|e| e.parse().ok())
                .ok_or(StoreError::Corrupt("an invalid expires_at"))?,
            legacy_key: match legacy_key.as_deref() {
                None | Some("") => None,
                Some(raw) => Some(
                    SessionKey::parse_base64(raw)
                        .ok_or(StoreError::Corrupt("an invalid session_key"))?,
                ),
            },
        }))
    }

    /// One command: the user's record. A session written before there were user records
    /// falls back on the key it holds itself.
    pub async fn session_key(&self, session: &Session) -> Result<SessionKey, StoreError> {
        let user = self.user_keys(session.app(), session.openid());
        let key: Option<String> = self
            .redis
            .query(redis::cmd("HGET").arg(&user.record).arg("session_key"))
            .await?;
        match key {
            Some(key) => {
                SessionKey::parse_base64(&key).ok_or(StoreError::Corrupt("an invalid session_key"))
            }
            None => session.user.known_session_key().ok_or(StoreError::Corrupt(
                "the user of a live session has no session_key",
            )),
        }
    }

    /// Two commands: the session's record, to learn whose it is, then its removal from it
    /// and from its user's index, together.
    pub async fn revoke(&self, token: &SessionToken) -> Result<bool, StoreError> {
        let hash = token.hash().to_hex();
        let Some(record) = self.record(&hash).await? else {
            return Ok(false);
        };
        let user = self.user_keys(record.app.as_ref(), record.openid.as_ref());
        let delete = redis::cmd("DEL")
            .arg(self.session_key_name(&hash))
            .to_owned();
        let unindex = redis::cmd("ZREM").arg(&user.sessions).arg(&hash).to_owned();
        let (removed, _) = tokio::join!(
            self.redis.write::<i64>(&delete),
            self.redis.write::<i64>(&unindex),
        );
        Ok(removed? > 0 && record.expires_at > self.clock.now())
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

/// A session's own record, as `HSET` pairs.
fn session_record(
    app: &AppName,
    login: &WxSession,
    expires_at: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("app", app.to_string()),
        ("openid", login.openid.as_ref().to_owned()),
        (
            "unionid",
            login.unionid.as_ref().map_or("", AsRef::as_ref).to_owned(),
        ),
        ("expires_at", expires_at.to_string()),
    ]
}

/// A session's record as read back.
struct Record {
    app: AppName,
    openid: OpenId,
    unionid: Option<UnionId>,
    expires_at: u64,
    /// Only in records written before there were user records.
    legacy_key: Option<SessionKey>,
}

impl Record {
    fn into_session(self) -> Session {
        let user = User::with_key(
            &self.app,
            &self.openid,
            self.unionid.as_ref(),
            self.legacy_key,
        );
        Session::new(Arc::new(user), self.expires_at)
    }
}
