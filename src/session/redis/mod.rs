//! Sessions in Redis (or Valkey, or a managed Redis), shared by every replica and kept
//! across restarts. Keys, under the configured prefix:
//!
//! - `session:<sha256(token) hex>`: a hash of app, openid, unionid, ends_at (login plus
//!   the TTL; also written as `expires_at`, its name before, for replicas of the previous
//!   release during a rolling upgrade) and, with sliding expiry, idle_until; with a Redis TTL at the earlier of the
//!   two. A dump of Redis yields no usable token. A lookup by token is one command.
//! - `user:{<app>:<openid>}`: the user's newest session_key (sealed, with a store key)
//!   and unionid, which every session of the user reads, so a login rotates the key for
//!   all of them at once.
//! - `sessions:{<app>:<openid>}`: the user's sessions, a sorted set of session hashes by
//!   expiry: the per-user index that a revocation of all of a user's sessions walks.
//! - `block:{<app>:<openid>}`: an operator's block on the user's logins (until, reason),
//!   which Redis expires when it lifts.
//! - `unionid:{<unionid>}`: the `app openid` users of a unionid, for revoking a person's
//!   sessions in every app.
//!
//! The keys of a user share a hash tag, so that the scripts that change them together
//! touch one slot of a Redis Cluster; a session's own key lives wherever its hash puts it.
//! Records written before there were user records (a session hash that holds its own
//! session_key, and no app) are read as sessions of the `default` app.

use std::sync::Arc;

use redis::Script;

use super::{
    CreateError, Deadlines, IssuedSession, KeyMismatches, Lifetime, Sealer, Session, SessionToken,
    TokenHash, User, UserId,
};
use crate::clock::Clock;
use crate::domain::{AppName, OpenId, SessionKey, UnionId, WxSession};
use crate::redis_conn::{Redis, StoreError, Unavailable};

mod admin;
mod upgrade;

pub use upgrade::UpgradePass;

/// Unless an operator blocked the user, gives the user WeChat's newest session_key and
/// adds a session to the user's index, whose expired members it drops. KEYS: the user,
/// the user's sessions, the user's block. ARGV: session_key ("" for a login of a kind
/// that has none, which leaves the record's as it is), unionid ("" for none), ttl
/// seconds, the session hash, its end, now. Returns 0, or the end of the block.
const LOGIN: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then
  return tonumber(redis.call('HGET', KEYS[3], 'until')) or 1
end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'session_key', ARGV[1]) end
redis.call('HSET', KEYS[1], 'unionid', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 0
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

/// Moves a session's idle deadline, if the session is still there (a revocation may have
/// just removed it). KEYS: the session. ARGV: the new deadline, seconds from now to it.
const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'idle_until', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Adds a user to their unionid's index. KEYS: the index. ARGV: `app openid`, ttl seconds.
const INDEX_UNIONID: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

#[derive(Clone)]
pub struct RedisStore {
    pub(super) redis: Redis,
    pub(super) scripts: Arc<Scripts>,
    pub(super) lifetime: Lifetime,
    sealer: Arc<Sealer>,
    pub(super) clock: Clock,
}

pub(super) struct Scripts {
    login: Script,
    pub(super) take_pending: Script,
    write_session: Script,
    touch: Script,
    index_unionid: Script,
    user: Script,
    take_sessions: Script,
    block: Script,
    index_session: Script,
    take_old_sessions: Script,
}

/// Where one user's records live.
struct UserKeys {
    record: String,
    sessions: String,
    block: String,
}

impl RedisStore {
    pub fn new(redis: Redis, lifetime: Lifetime, sealer: Sealer, clock: Clock) -> Self {
        Self {
            redis,
            scripts: Arc::new(Scripts {
                login: Script::new(LOGIN),
                take_pending: Script::new(super::pending::TAKE),
                write_session: Script::new(WRITE_SESSION),
                touch: Script::new(TOUCH),
                index_unionid: Script::new(INDEX_UNIONID),
                user: Script::new(admin::USER),
                take_sessions: Script::new(admin::TAKE_SESSIONS),
                block: Script::new(admin::BLOCK),
                index_session: Script::new(upgrade::INDEX_SESSION),
                take_old_sessions: Script::new(upgrade::TAKE_OLD_SESSIONS),
            }),
            lifetime,
            sealer: Arc::new(sealer),
            clock,
        }
    }

    /// The name of the key that holds the web login under way whose state hashes to `hash`.
    pub(super) fn pending_key(&self, hash: &str) -> String {
        self.redis.key(&format!("pending_login:{hash}"))
    }

    /// The name of the key that holds the session whose token hashes to `hash`.
    fn session_record_key(&self, hash: &str) -> String {
        self.redis.key(&format!("session:{hash}"))
    }

    fn user_keys(&self, app: &AppName, openid: &OpenId) -> UserKeys {
        let (app, openid) = (app.as_ref(), openid.as_ref());
        let tag = format!("{{{app}:{openid}}}");
        UserKeys {
            record: self.redis.key(&format!("user:{tag}")),
            sessions: self.redis.key(&format!("sessions:{tag}")),
            block: self.redis.key(&format!("block:{tag}")),
        }
    }

    fn unionid_key(&self, unionid: &str) -> String {
        self.redis.key(&format!("unionid:{{{unionid}}}"))
    }

    /// Two round trips: the session's own record (one key, one script that also sets its
    /// expiry; beside it, the unionid's index), then the user's record and index (one slot,
    /// one script), which refuses a blocked user. In that order, a block that a
    /// revocation follows misses no session: a login either reached the index before the
    /// block, with its record already written for the revocation to delete, or it sees
    /// the block.
    pub async fn create(
        &self,
        app: &AppName,
        login: WxSession,
    ) -> Result<IssuedSession, CreateError> {
        let token = SessionToken::generate();
        let hash = token.hash().to_hex();
        let now = self.clock.now();
        let deadlines = self.lifetime.at_login(now);
        let ttl = self.lifetime.ttl_secs();
        let user = self.user_keys(app, &login.openid);
        let unionid = login.unionid.as_ref().map_or("", AsRef::as_ref);
        let record_key = self.session_record_key(&hash);

        let mut write = self.scripts.write_session.prepare_invoke();
        write.key(&record_key).arg(deadlines.expires_at - now);
        for (field, value) in session_record(app, &login, deadlines, self.lifetime.is_sliding()) {
            write.arg(field).arg(value);
        }
        let index = login.unionid.as_ref().map(|unionid| {
            let mut index = self.scripts.index_unionid.prepare_invoke();
            index
                .key(self.unionid_key(unionid.as_ref()))
                .arg(super::user_key(&UserId {
                    app: app.clone(),
                    openid: login.openid.clone(),
                }))
                .arg(ttl);
            index
        });
        let (written, indexed) = tokio::join!(self.redis.write::<i64>(&write), async {
            match &index {
                Some(index) => self.redis.write::<i64>(index).await.map(drop),
                None => Ok(()),
            }
        });
        if let Err(err) = written.and(indexed) {
            self.discard(record_key, None, err.problem());
            return Err(err.into());
        }

        let mut invocation = self.scripts.login.prepare_invoke();
        invocation
            .key(&user.record)
            .key(&user.sessions)
            .key(&user.block)
            .arg(
                login
                    .session_key
                    .as_ref()
                    .map_or_else(String::new, |key| self.sealer.seal(key, &user.record)),
            )
            .arg(unionid)
            .arg(ttl)
            .arg(&hash)
            .arg(deadlines.ends_at)
            .arg(now);
        match self.redis.write::<u64>(&invocation).await {
            Ok(0) => Ok(IssuedSession {
                token,
                session: Session::new(Arc::new(User::new(app, login)), deadlines),
                expires_in: deadlines.expires_at - now,
            }),
            Ok(until) => {
                self.discard(record_key, None, None);
                Err(CreateError::Blocked { until })
            }
            Err(err) => {
                let problem = err.problem();
                self.discard(record_key, Some((user.sessions, hash)), problem);
                Err(err.into())
            }
        }
    }

    /// Removes a session that will not be handed out: its record and, if the script that
    /// indexes it may have run after all (it timed out), its place in the user's index. A
    /// session nobody holds the token of must not linger. The removal follows the write on
    /// the same connection, so Redis runs them in that order.
    fn discard(
        &self,
        record_key: String,
        index: Option<(String, String)>,
        problem: Option<Unavailable>,
    ) {
        let redis = self.redis.clone();
        tokio::spawn(async move {
            let _ = redis
                .remove::<i64>(redis::cmd("DEL").arg(&record_key))
                .await;
            if let (Some((index, hash)), Some(Unavailable::Timeout)) = (index, problem) {
                let _ = redis
                    .remove::<i64>(redis::cmd("ZREM").arg(&index).arg(&hash))
                    .await;
            }
        });
    }

    /// One command: the session's own record; with sliding expiry, one more (at most once
    /// per quarter idle window of the session) to push its deadline on.
    pub async fn get(&self, token: &SessionToken) -> Result<Option<Session>, StoreError> {
        self.find(&token.hash()).await
    }

    /// The live session stored under `hash`, as [`RedisStore::get`].
    pub async fn find(&self, hash: &TokenHash) -> Result<Option<Session>, StoreError> {
        let hash = hash.to_hex();
        let Some(mut record) = self.record(&hash).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        // Redis expires the key itself; this also honours a clock that tests move.
        if record.deadlines.expires_at <= now {
            return Ok(None);
        }
        if let Some(moved) = self.lifetime.extended(record.deadlines, now) {
            let mut touch = self.scripts.touch.prepare_invoke();
            touch
                .key(self.session_record_key(&hash))
                .arg(moved)
                .arg(moved - now);
            match self.redis.write::<i64>(&touch).await {
                Ok(1) => record.deadlines.expires_at = moved,
                Ok(_) => return Ok(None),
                // The session is live; it keeps the deadline it had, and the next lookup
                // tries again.
                Err(err) => {
                    tracing::warn!(error = %err, "could not push a session's idle deadline on")
                }
            }
        }
        Ok(Some(record.into_session()))
    }

    async fn record(&self, hash: &str) -> Result<Option<Record>, StoreError> {
        let holder = self.session_record_key(hash);
        let fields: Vec<Option<String>> = self
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(&holder)
                    .arg("app")
                    .arg("openid")
                    .arg("unionid")
                    .arg("ends_at")
                    .arg("expires_at")
                    .arg("idle_until")
                    .arg("session_key"),
            )
            .await?;
        let [
            app,
            openid,
            unionid,
            ends_at,
            old_ends_at,
            idle_until,
            legacy_key,
        ] = <[Option<String>; 7]>::try_from(fields)
            .map_err(|_| StoreError::Corrupt("HMGET answered the wrong number of fields"))?;
        let Some(openid) = openid else {
            return Ok(None);
        };
        let ends_at: u64 = ends_at
            .or(old_ends_at)
            .and_then(|e| e.parse().ok())
            .ok_or(StoreError::Corrupt("an invalid ends_at"))?;
        // Written with sliding expiry on; a record without it ends at its TTL.
        let idle_until = match idle_until.as_deref() {
            None | Some("") => ends_at,
            Some(raw) => raw
                .parse()
                .map_err(|_| StoreError::Corrupt("an invalid idle_until"))?,
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
            deadlines: Deadlines {
                expires_at: idle_until.min(ends_at),
                ends_at,
            },
            legacy_key: match legacy_key.as_deref() {
                None | Some("") => None,
                Some(raw) => Some(self.sealer.open(raw, &holder)?),
            },
        }))
    }

    /// The sealed session_keys this process could not open since start, if any.
    pub fn key_mismatches(&self) -> Option<KeyMismatches> {
        self.sealer.mismatches()
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
            Some(key) => self.sealer.open(&key, &user.record),
            None => session
                .user()
                .known_session_key()
                .ok_or(StoreError::Corrupt(
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
        let user = self.user_keys(&record.app, &record.openid);
        let delete = redis::cmd("DEL")
            .arg(self.session_record_key(&hash))
            .to_owned();
        let unindex = redis::cmd("ZREM").arg(&user.sessions).arg(&hash).to_owned();
        let (removed, _) = tokio::join!(
            self.redis.remove::<i64>(&delete),
            self.redis.remove::<i64>(&unindex),
        );
        Ok(removed? > 0 && record.deadlines.expires_at > self.clock.now())
    }
}

/// A session's own record, as `HSET` pairs.
fn session_record(
    app: &AppName,
    login: &WxSession,
    deadlines: Deadlines,
    sliding: bool,
) -> Vec<(&'static str, String)> {
    let mut record = vec![
        ("app", app.to_string()),
        ("openid", login.openid.as_ref().to_owned()),
        (
            "unionid",
            login.unionid.as_ref().map_or("", AsRef::as_ref).to_owned(),
        ),
        ("ends_at", deadlines.ends_at.to_string()),
        // The field's name until this release, for replicas still on the previous one.
        ("expires_at", deadlines.ends_at.to_string()),
    ];
    if sliding {
        record.push(("idle_until", deadlines.expires_at.to_string()));
    }
    record
}

/// A session's record as read back.
struct Record {
    app: AppName,
    openid: OpenId,
    unionid: Option<UnionId>,
    deadlines: Deadlines,
    /// Only in records written before there were user records.
    legacy_key: Option<SessionKey>,
}

impl Record {
    fn into_session(self) -> Session {
        let id = UserId {
            app: self.app,
            openid: self.openid,
        };
        let user = User::with_key(id, self.unionid, self.legacy_key);
        Session::new(Arc::new(user), self.deadlines)
    }
}
