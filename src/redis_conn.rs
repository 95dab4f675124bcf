//! The one connection to Redis (or Valkey, or a managed Redis) that the session store and
//! the shared access_token use, with a deadline on every command, and what it has learnt
//! about whether Redis takes writes: kept fresh by every write and by a probe at most once
//! a second, so that a login can tell before it spends the user's code at WeChat.
//!
//! In cluster mode the connection is the `redis` crate's async cluster client, which keeps
//! a connection per node, routes each command by its key's slot, follows MOVED and ASK,
//! and refreshes its slot map after a failover. Every command wxlogin sends touches the
//! keys of one slot, so no command needs more than that.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use secrecy::ExposeSecret;

use crate::config::{RedisMode, RedisSettings, cluster_seeds};

/// How often a replica checks that Redis takes writes.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why the store cannot serve, in words an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    Timeout,
    Unreachable,
    OutOfMemory,
    ReadOnly,
    /// A cluster with slots that no primary serves.
    ClusterDown,
    /// Cluster mode, pointed at a Redis that is not a cluster node.
    NotACluster,
    /// Standalone mode, pointed at a cluster node.
    IsACluster,
    Failing,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "did not answer in time",
            Self::Unreachable => "is unreachable",
            Self::OutOfMemory => "refuses writes: it is out of memory (maxmemory reached)",
            Self::ReadOnly => "refuses writes: it is a read-only replica",
            Self::ClusterDown => {
                "is a Redis Cluster that cannot serve every slot (cluster_state is not ok): a primary and all its replicas are down, or a failover is under way"
            }
            Self::NotACluster => {
                "is not a Redis Cluster (cluster support is disabled on the node): set WXLOGIN_REDIS_MODE=standalone, or list the nodes of a cluster in WXLOGIN_REDIS_URL"
            }
            Self::IsACluster => {
                "is a Redis Cluster node, which serves only its own slots: set WXLOGIN_REDIS_MODE=cluster"
            }
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
    /// A session_key sealed under a store key that is not configured, or that does not
    /// open it: the wrong WXLOGIN_STORE_KEY_FILE, or an old key dropped too soon.
    #[error(
        "store key mismatch: a session_key is sealed under store key {key_id}, which is not configured or does not open it (check WXLOGIN_STORE_KEY_FILE and WXLOGIN_STORE_OLD_KEYS_FILE)"
    )]
    KeyMismatch { key_id: String },
    /// The memory store has no `WXLOGIN_BLOCKS_FILE` to keep a block across a restart.
    #[error("blocks need WXLOGIN_BLOCKS_FILE with the memory store")]
    BlocksNotDurable,
    /// The block (or its lifting) holds in this process, but is not in the blocks file.
    #[error("could not write WXLOGIN_BLOCKS_FILE: {0}")]
    BlocksNotSaved(#[source] std::io::Error),
}

impl StoreError {
    fn from_redis(err: RedisError, mode: RedisMode) -> Self {
        use redis::{ErrorKind, ServerErrorKind};
        // An ERR whose words are all that tells it apart: a node without cluster support,
        // and a script's write refused by a replica (older Redis wraps READONLY in ERR).
        let err_says = |words: &str| {
            err.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
                && err.detail().is_some_and(|detail| detail.contains(words))
        };
        let problem = if err.is_timeout() {
            Unavailable::Timeout
        } else {
            match err.kind() {
                ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
                    if mode == RedisMode::Standalone =>
                {
                    Unavailable::IsACluster
                }
                _ if mode == RedisMode::Cluster && err_says("cluster support disabled") => {
                    Unavailable::NotACluster
                }
                ErrorKind::Server(ServerErrorKind::ClusterDown) => Unavailable::ClusterDown,
                // OOM has no kind of its own in the crate; its code is the server's.
                _ if err.code() == Some("OOM") => Unavailable::OutOfMemory,
                ErrorKind::Server(ServerErrorKind::ReadOnly) => Unavailable::ReadOnly,
                _ if err_says("READONLY") => Unavailable::ReadOnly,
                _ if err.is_io_error()
                    || err.is_connection_refusal()
                    || err.is_connection_dropped()
                    || err.is_unrecoverable_error() =>
                {
                    Unavailable::Unreachable
                }
                _ => Unavailable::Failing,
            }
        };
        Self::Unavailable(problem, Some(err))
    }

    /// Why the store is unavailable; `None` for a record that it served but we cannot read.
    pub fn problem(&self) -> Option<Unavailable> {
        match self {
            Self::Unavailable(problem, _) => Some(*problem),
            Self::Corrupt(_)
            | Self::KeyMismatch { .. }
            | Self::BlocksNotDurable
            | Self::BlocksNotSaved(_) => None,
        }
    }
}

/// What a command does to Redis, and so what its answer says about Redis taking writes.
#[derive(Clone, Copy)]
enum Access {
    Read,
    /// Writes something new, which needs memory.
    Write,
    /// Only removes: Redis takes that even when it is out of memory.
    Free,
}

/// A command or a script, as sent.
pub enum Sent<'a> {
    Command(&'a redis::Cmd),
    Script(&'a redis::ScriptInvocation<'a>),
}

impl<'a> From<&'a redis::Cmd> for Sent<'a> {
    fn from(command: &'a redis::Cmd) -> Self {
        Self::Command(command)
    }
}

impl<'a> From<&'a redis::ScriptInvocation<'a>> for Sent<'a> {
    fn from(invocation: &'a redis::ScriptInvocation<'a>) -> Self {
        Self::Script(invocation)
    }
}

/// What the builders (`redis::cmd(…).arg(…)`, `Script::key`) hand back.
impl<'a> From<&'a mut redis::Cmd> for Sent<'a> {
    fn from(command: &'a mut redis::Cmd) -> Self {
        Self::Command(command)
    }
}

impl<'a> From<&'a mut redis::ScriptInvocation<'a>> for Sent<'a> {
    fn from(invocation: &'a mut redis::ScriptInvocation<'a>) -> Self {
        Self::Script(invocation)
    }
}

/// One pooled, self-reconnecting, multiplexed connection to Redis (to each node of a
/// cluster), with a deadline on every command. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    connection: Connection,
    mode: RedisMode,
    timeout: Duration,
    prefix: Arc<str>,
    /// The last write's (or probe's) verdict: `None` while Redis takes writes.
    health: Arc<Mutex<Option<Unavailable>>>,
}

impl Redis {
    /// Connects lazily: wxlogin starts while Redis is still coming up, and `/readyz` says
    /// whether it is reachable.
    pub fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let unreachable = |err| StoreError::Unavailable(Unavailable::Unreachable, Some(err));
        let connection = match settings.mode {
            RedisMode::Standalone => {
                let client =
                    redis::Client::open(settings.url.expose_secret()).map_err(unreachable)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.timeout))
                    .set_response_timeout(Some(settings.timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                Connection::Standalone(
                    ConnectionManager::new_lazy_with_config(client, config).map_err(unreachable)?,
                )
            }
            RedisMode::Cluster => {
                let client = ClusterClient::builder(cluster_seeds(&settings.url))
                    .connection_timeout(settings.timeout)
                    .response_timeout(settings.timeout)
                    .build()
                    .map_err(unreachable)?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(settings.timeout)
                    .set_response_timeout(settings.timeout);
                Connection::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
        Ok(Self {
            connection,
            mode: settings.mode,
            timeout: settings.timeout,
            prefix: settings.key_prefix.as_str().into(),
            health: Arc::default(),
        })
    }

    pub fn is_cluster(&self) -> bool {
        self.mode == RedisMode::Cluster
    }

    /// The full name of a key: the prefix, then `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A command or script that only reads: its success says nothing about whether Redis
    /// takes writes (a read-only replica runs it).
    pub async fn query<T: FromRedisValue>(
        &self,
        sent: impl Into<Sent<'_>>,
    ) -> Result<T, StoreError> {
        self.send(Access::Read, sent.into()).await
    }

    /// A command or script that may write something new.
    pub async fn write<T: FromRedisValue>(
        &self,
        sent: impl Into<Sent<'_>>,
    ) -> Result<T, StoreError> {
        self.send(Access::Write, sent.into()).await
    }

    /// A command or script that only removes (DEL, ZREM): Redis takes those even when it
    /// is out of memory, so its success does not say that Redis takes writes.
    pub async fn remove<T: FromRedisValue>(
        &self,
        sent: impl Into<Sent<'_>>,
    ) -> Result<T, StoreError> {
        self.send(Access::Free, sent.into()).await
    }

    /// Several commands that only remove, each standing alone, sent at once: on one
    /// multiplexed connection they travel together, and in a cluster each goes to its own
    /// key's node (a pipeline there must keep to one slot). Answers in the order of
    /// `commands`.
    pub async fn remove_each<T: FromRedisValue + Send + 'static>(
        &self,
        commands: Vec<Cmd>,
    ) -> Result<Vec<T>, StoreError> {
        self.each(commands, Access::Free).await
    }

    /// As [`Redis::remove_each`], for commands that only read.
    pub async fn query_each<T: FromRedisValue + Send + 'static>(
        &self,
        commands: Vec<Cmd>,
    ) -> Result<Vec<T>, StoreError> {
        self.each(commands, Access::Read).await
    }

    async fn each<T: FromRedisValue + Send + 'static>(
        &self,
        commands: Vec<Cmd>,
        access: Access,
    ) -> Result<Vec<T>, StoreError> {
        let mut sent = tokio::task::JoinSet::new();
        for (n, command) in commands.into_iter().enumerate() {
            let redis = self.clone();
            sent.spawn(async move { (n, redis.send::<T>(access, Sent::Command(&command)).await) });
        }
        let mut answers: Vec<Option<T>> =
            std::iter::repeat_with(|| None).take(sent.len()).collect();
        while let Some(joined) = sent.join_next().await {
            match joined {
                Ok((n, answer)) => answers[n] = Some(answer?),
                Err(err) => std::panic::resume_unwind(err.into_panic()),
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// Every command and script goes through here, within the deadline, and its answer
    /// teaches what `access` lets it say about Redis taking writes.
    async fn send<T: FromRedisValue>(
        &self,
        access: Access,
        sent: Sent<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        let result = match sent {
            Sent::Command(command) => {
                self.within_deadline(command.query_async(&mut connection))
                    .await
            }
            Sent::Script(invocation) => {
                self.within_deadline(invocation.invoke_async(&mut connection))
                    .await
            }
        };
        self.learn(access, &result);
        result
    }

    /// Whether Redis takes writes, as far as the last write or probe knows. No round trip.
    pub fn writable(&self) -> Result<(), StoreError> {
        match *self.health.lock().unwrap_or_else(PoisonError::into_inner) {
            None => Ok(()),
            Some(problem) => Err(StoreError::Unavailable(problem, None)),
        }
    }

    /// Asks Redis to take a small write now, and remembers the answer. Before that, it
    /// checks that Redis is what the mode says: a cluster that serves every slot, or not a
    /// cluster at all.
    pub async fn probe(&self) -> Result<(), StoreError> {
        if let Err(err) = self.check_mode().await {
            if let Some(problem) = err.problem() {
                self.set_health(Some(problem));
            }
            return Err(err);
        }
        self.write::<()>(
            redis::cmd("SET")
                .arg(self.key("writable"))
                .arg(1)
                .arg("PX")
                .arg(10_000),
        )
        .await
    }

    async fn check_mode(&self) -> Result<(), StoreError> {
        match &self.connection {
            Connection::Standalone(_) => {
                // A proxy or a managed Redis may refuse INFO; then only MOVED can tell.
                let info: Option<String> = self.query(redis::cmd("INFO").arg("cluster")).await.ok();
                match info {
                    Some(info) if info.contains("cluster_enabled:1") => {
                        Err(StoreError::Unavailable(Unavailable::IsACluster, None))
                    }
                    _ => Ok(()),
                }
            }
            Connection::Cluster(cluster) => {
                let mut cluster = cluster.clone();
                // Routed by hand, as a command without a key; the node's refusal comes back
                // as a value, not as an error.
                let info = self
                    .within_deadline(async {
                        cluster
                            .route_command(
                                redis::cmd("CLUSTER").arg("INFO").to_owned(),
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                            )
                            .await?
                            .extract_error()
                    })
                    .await?;
                let info = String::from_redis_value(info).map_err(|_| {
                    StoreError::Corrupt("CLUSTER INFO answered in an unknown shape")
                })?;
                if info.contains("cluster_state:ok") {
                    Ok(())
                } else {
                    Err(StoreError::Unavailable(Unavailable::ClusterDown, None))
                }
            }
        }
    }

    /// What an answer says about Redis taking writes: a write that needed memory vouches
    /// for them; any failure that is Redis's (unreachable, too slow, out of memory,
    /// read-only) counts against them, except that a read's failure counts only when Redis
    /// is gone altogether (a replica refuses writes, not reads).
    fn learn<T>(&self, access: Access, result: &Result<T, StoreError>) {
        match (access, result) {
            (Access::Write, Ok(_)) => self.set_health(None),
            (Access::Read | Access::Free, Ok(_)) => {}
            (Access::Read, Err(err)) => {
                if let Some(problem @ (Unavailable::Timeout | Unavailable::Unreachable)) =
                    err.problem()
                {
                    self.set_health(Some(problem));
                }
            }
            (Access::Write | Access::Free, Err(err)) => {
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
            Ok(Err(err)) => Err(StoreError::from_redis(err, self.mode)),
            Err(_) => Err(StoreError::Unavailable(Unavailable::Timeout, None)),
        }
    }
}

/// One Redis, or the nodes of a cluster: both take commands the same way.
#[derive(Clone)]
enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
