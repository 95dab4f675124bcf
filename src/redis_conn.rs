//! The one connection to Redis (or Valkey, or a managed Redis) that the session store and
//! the shared access_token use, with a deadline on every command.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisResult};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the session store did not answer in time")]
    Timeout,
    #[error("the session store failed: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("the session store holds a record wxlogin cannot read: {0}")]
    Corrupt(&'static str),
}

/// One pooled, self-reconnecting, multiplexed connection to Redis, with a deadline on
/// every command. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    timeout: Duration,
    prefix: Arc<str>,
}

impl Redis {
    /// Connects lazily: wxlogin starts while Redis is still coming up, and `/readyz` says
    /// whether it is reachable.
    pub fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let client =
            redis::Client::open(settings.url.expose_secret()).map_err(StoreError::Redis)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(StoreError::Redis)?;
        Ok(Self {
            connection,
            timeout: settings.timeout,
            prefix: settings.key_prefix.as_str().into(),
        })
    }

    /// The full name of a key: the prefix, then `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        self.within_deadline(command.query_async(&mut connection))
            .await
    }

    pub async fn run_script<T: FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        self.within_deadline(invocation.invoke_async(&mut connection))
            .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    async fn within_deadline<T>(
        &self,
        command: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(StoreError::Redis(err)),
            Err(_) => Err(StoreError::Timeout),
        }
    }
}
