//! The one connection to Redis (or Valkey, or a managed Redis) that the session store and
//! the shared access_token use, with a deadline on every command, and what it has learnt
//! about whether Redis takes writes: kept fresh by every write and by a probe at most once
//! a second, so that a login can tell before it spends the user's code at WeChat.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, RedisResult};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

/// How often a replica checks that Redis takes writes.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why the store cannot serve, in words an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    Timeout,
    Unreachable,
    OutOfMemory,
    ReadOnly,
    Failing,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "did not answer in time",
            Self::Unreachable => "is unreachable",
            Self::OutOfMemory => "refuses writes: it is out of memory (maxmemory reached)",
            Self::ReadOnly => "refuses writes: it is a read-only replica",
            Self::Failing => "answered with an error",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot serve, for `0`; the cause is Redis's own error, when there is one.
    #[error("the session store {0}")]
    Unavailable(Unavailable, #[source] Option<RedisError>),
    #[error("the session store holds a record wxlogin cannot read: {0}")]
    Corrupt(&'static str),
}

impl StoreError {
    fn from_redis(err: RedisError) -> Self {
        let problem = if err.is_timeout() {
            Unavailable::Timeout
        } else if err.code() == Some("OOM") {
            Unavailable::OutOfMemory
        } else if err.code() == Some("READONLY") || err.to_string().contains("READONLY") {
            Unavailable::ReadOnly
        } else if err.is_io_error()
            || err.is_connection_refusal()
            || err.is_connection_dropped()
            || err.is_unrecoverable_error()
        {
            Unavailable::Unreachable
        } else {
            Unavailable::Failing
        };
        Self::Unavailable(problem, Some(err))
    }

    /// Why the store is unavailable; `None` for a record that it served but we cannot read.
    pub fn problem(&self) -> Option<Unavailable> {
        match self {
            Self::Unavailable(problem, _) => Some(*problem),
            Self::Corrupt(_) => None,
        }
    }
}

/// One pooled, self-reconnecting, multiplexed connection to Redis, with a deadline on
/// every command. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    timeout: Duration,
    prefix: Arc<str>,
    /// The last write's (or probe's) verdict: `None` while Redis takes writes.
    health: Arc<Mutex<Option<Unavailable>>>,
}

impl Redis {
    /// Connects lazily: wxlogin starts while Redis is still coming up, and `/readyz` says
    /// whether it is reachable.
    pub fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let client = redis::Client::open(settings.url.expose_secret())
            .map_err(|err| StoreError::Unavailable(Unavailable::Unreachable, Some(err)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| StoreError::Unavailable(Unavailable::Unreachable, Some(err)))?;
        Ok(Self {
            connection,
            timeout: settings.timeout,
            prefix: settings.key_prefix.as_str().into(),
            health: Arc::default(),
        })
    }

    /// The full name of a key: the prefix, then `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A command that only reads.
    pub async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        let result = self
            .within_deadline(command.query_async(&mut connection))
            .await;
        // A read proves nothing about writes, but losing Redis altogether it shows.
        if let Err(err) = &result
            && let Some(problem @ (Unavailable::Timeout | Unavailable::Unreachable)) = err.problem()
        {
            self.set_health(Some(problem));
        }
        result
    }

    /// A command that writes.
    pub async fn write<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        let result = self
            .within_deadline(command.query_async(&mut connection))
            .await;
        self.learn(&result);
        result
    }

    /// A pipeline that writes.
    pub async fn write_pipeline(&self, pipeline: &redis::Pipeline) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let result = self
            .within_deadline(pipeline.query_async::<()>(&mut connection))
            .await;
        self.learn(&result);
        result
    }

    /// A script, which may write.
    pub async fn run_script<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        let result = self
            .within_deadline(invocation.invoke_async(&mut connection))
            .await;
        self.learn(&result);
        result
    }

    /// Whether Redis takes writes, as far as the last write or probe knows. No round trip.
    pub fn writable(&self) -> Result<(), StoreError> {
        match *self.health.lock().unwrap_or_else(PoisonError::into_inner) {
            None => Ok(()),
            Some(problem) => Err(StoreError::Unavailable(problem, None)),
        }
    }

    /// Asks Redis to take a small write now, and remembers the answer.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.write::<()>(
            redis::cmd("SET")
                .arg(self.key("writable"))
                .arg(1)
                .arg("PX")
                .arg(10_000),
        )
        .await
    }

    fn learn<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.set_health(None),
            Err(err) => {
                if let Some(problem) = err.problem() {
                    self.set_health(Some(problem));
                }
            }
        }
    }

    fn set_health(&self, problem: Option<Unavailable>) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if *health != problem {
            match problem {
                Some(problem) => tracing::warn!(
                    "the session store {problem}: logins are refused before WeChat is asked until it takes writes again"
                ),
                None => tracing::info!("the session store takes writes again"),
            }
            *health = problem;
        }
    }

    async fn within_deadline<T>(
        &self,
        command: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(StoreError::from_redis(err)),
            Err(_) => Err(StoreError::Unavailable(Unavailable::Timeout, None)),
        }
    }
}
