//! Web logins under way: what the web-login helper remembers between sending a browser to
//! WeChat's consent page and its coming back, keyed by the hash of the page's `state`.
//! Each is taken once (a replayed state finds nothing), and in Redis every replica sees
//! it, so the callback may reach another replica than the redirect did.

use std::time::Duration;

use super::SessionStore;
use crate::redis_conn::StoreError;

/// How long a browser has to come back from the consent page. WeChat's codes last 5
/// minutes; a user reading the consent page gets as long again.
pub const PENDING_LOGIN_TTL: Duration = Duration::from_secs(10 * 60);

/// Most web logins under way that the memory store holds; past it, the oldest go.
pub(super) const MAX_PENDING_LOGINS: u64 = 100_000;

/// Reads and deletes a key in one step, on any Redis version (GETDEL is 6.2's).
/// KEYS: the pending login.
pub(super) const TAKE: &str = r"
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
";

impl SessionStore {
    /// Remembers `record` under `key` (a hash of the page's state) for
    /// [`PENDING_LOGIN_TTL`].
    pub async fn put_pending_login(&self, key: &str, record: String) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => {
                store.0.pending.insert(key.into(), record.into());
                Ok(())
            }
            Self::Redis(store) => {
                let command = redis::cmd("SET")
                    .arg(store.pending_key(key))
                    .arg(record)
                    .arg("EX")
                    .arg(PENDING_LOGIN_TTL.as_secs())
                    .to_owned();
                store.redis.write::<()>(&command).await
            }
        }
    }

    /// The record under `key`, taken: a second take of one key finds nothing.
    pub async fn take_pending_login(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.0.pending.remove(key).map(|r| r.to_string())),
            Self::Redis(store) => {
                let mut take = store.scripts.take_pending.prepare_invoke();
                take.key(store.pending_key(key));
                store.redis.remove::<Option<String>>(&take).await
            }
        }
    }
}
