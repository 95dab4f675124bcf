//! The one place that picks concrete backends: the session store the settings name, and
//! each app's access_token kept beside it (in the process, or shared through Redis).

use std::time::Duration;

use super::StartupError;
use crate::apps::App;
use crate::clock::Clock;
use crate::config::{RedisSettings, Settings, StoreSettings};
use crate::redis_conn::{PROBE_EVERY, Redis};
use crate::session::{BlocksFile, Lifetime, MemoryStore, RedisStore, Sealer, SessionStore};
use crate::tasks::Tasks;
use crate::telemetry::metrics::Metrics;
use crate::wechat::{AccessTokens, WeChatClient};

/// How often the memory store's user index lets go of users who have no session left
/// that it has not yet seen go (see `MemoryStore::sweep_users`).
const USER_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How often the passes over sessions of the previous layout run, while they find any: a
/// rolling upgrade's old replicas go on writing them until they are replaced.
const UPGRADE_PASS_EVERY: Duration = Duration::from_secs(600);

/// The session store and the apps, with the store's housekeeping started in `tasks`.
pub(super) async fn backends(
    settings: &Settings,
    clock: &Clock,
    metrics: &Metrics,
    tasks: &mut Tasks,
) -> Result<(SessionStore, Vec<App>), StartupError> {
    let clients = WeChatClient::for_apps(&settings.wechat, metrics.clone())?;
    // A refresh is at most two stable_token calls (normal, then forced), each bounded by
    // the WeChat timeout.
    let token_wait_limit = settings.wechat.timeout * 2;
    let (store, redis) = match &settings.sessions.store {
        StoreSettings::Memory => (memory_store(settings, clock, metrics, tasks).await?, None),
        StoreSettings::Redis(redis_settings) => {
            let redis = Redis::connect(redis_settings)?;
            let store = redis_store(settings, redis_settings, redis.clone(), clock, tasks).await;
            (store, Some(redis))
        }
    };
    // `for_apps` made one client per configured app, in their order.
    let apps = clients
        .into_iter()
        .zip(&settings.wechat.apps)
        .map(|(wechat, configured)| App {
            audience: configured.audience.clone(),
            redirect_uris: configured.redirect_uris.clone(),
            access_tokens: match &redis {
                None => AccessTokens::local(wechat.clone(), clock.clone(), token_wait_limit),
                Some(redis) => {
                    AccessTokens::shared(wechat.clone(), redis.clone(), token_wait_limit)
                }
            },
            wechat,
        })
        .collect();
    Ok((store, apps))
}

async fn memory_store(
    settings: &Settings,
    clock: &Clock,
    metrics: &Metrics,
    tasks: &mut Tasks,
) -> Result<SessionStore, StartupError> {
    let sessions = &settings.sessions;
    let store = match &sessions.blocks_file {
        Some(path) => {
            let (file, blocks) = BlocksFile::open(path.clone(), clock.now()).await?;
            tracing::info!(path = %path.display(), blocks = blocks.len(), "operators' blocks are kept in WXLOGIN_BLOCKS_FILE");
            MemoryStore::with_blocks_file(sessions, clock.clone(), metrics.clone(), file, blocks)
        }
        None => {
            if settings.admin.is_some() {
                tracing::warn!(
                    "the admin API refuses blocks (409 blocks_not_durable): the memory store would forget them at a restart; set WXLOGIN_BLOCKS_FILE to keep them"
                );
            }
            MemoryStore::new(sessions, clock.clone(), metrics.clone())
        }
    };
    tasks.every(USER_SWEEP_EVERY, store.clone(), |store| {
        store.sweep_users();
    });
    Ok(SessionStore::Memory(store))
}

async fn redis_store(
    settings: &Settings,
    redis_settings: &RedisSettings,
    redis: Redis,
    clock: &Clock,
    tasks: &mut Tasks,
) -> SessionStore {
    if let Err(err) = redis.probe().await {
        // Not fatal: Redis may still be starting. /readyz says when it answers.
        tracing::warn!(error = %err, "Redis does not take writes yet; requests that need it get 503 until it does");
    }
    // Logins check this verdict before they spend a code at WeChat.
    tasks.every(PROBE_EVERY, redis.clone(), |redis| {
        let redis = redis.clone();
        tokio::spawn(async move { redis.probe().await });
    });
    let keys = &redis_settings.store_keys;
    let sealer = Sealer::new(keys);
    match sealer.current_key_id() {
        Some(key_id) => tracing::info!(
            key_id,
            old_keys = keys.old.len(),
            "session_keys are sealed at rest with the store key"
        ),
        None => tracing::warn!(
            "session_keys are stored in Redis in the clear: set WXLOGIN_STORE_KEY_FILE to seal them (see docs/operating.md)"
        ),
    }
    let lifetime = Lifetime::new(settings.sessions.ttl, settings.sessions.idle);
    let store = RedisStore::new(redis, lifetime, sealer, clock.clone());
    tasks.spawn(index_pre_upgrade_sessions(store.clone()));
    SessionStore::Redis(store)
}

/// Indexes the sessions the release before per-user records wrote (see
/// `session::redis::upgrade`) at start-up, then again each [`UPGRADE_PASS_EVERY`] until a
/// pass finds none.
async fn index_pre_upgrade_sessions(store: RedisStore) {
    loop {
        match store.index_pre_upgrade_sessions().await {
            Ok(found) if found.indexes == 0 => return,
            Ok(found) => tracing::info!(
                users = found.indexes,
                sessions = found.sessions,
                "indexed sessions of the previous layout, so that operators' revocations find them"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "could not index sessions of the previous layout; trying again later")
            }
        }
        tokio::time::sleep(UPGRADE_PASS_EVERY).await;
    }
}
