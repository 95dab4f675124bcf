use std::collections::VecDeque;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use super::{
    AccessToken, DAY_SECS, FORCE_REFRESH_PER_DAY, FORCE_REFRESH_SPACING_SECS, cache_for,
    fetch_replacing, within_wait_limit,
};
use crate::clock::Clock;
use crate::wechat::client::WeChatClient;
use crate::wechat::error::WeChatError;

/// The token cache of one process.
pub struct LocalAccessTokens {
    wechat: WeChatClient,
    clock: Clock,
    wait_limit: Duration,
    /// Read on every call without waiting on anything.
    current: RwLock<Option<Cached>>,
    /// Held while refreshing, so that however many callers find the token stale, one of
    /// them asks WeChat and the others take its answer.
    refreshing: tokio::sync::Mutex<ForceRefreshes>,
}

#[derive(Clone)]
struct Cached {
    token: AccessToken,
    /// When to stop using it: WeChat's expiry minus a margin.
    refresh_at: u64,
}

impl LocalAccessTokens {
    pub(super) fn new(wechat: WeChatClient, clock: Clock, wait_limit: Duration) -> Self {
        Self {
            wechat,
            clock,
            wait_limit,
            current: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(ForceRefreshes::default()),
        }
    }

    pub(super) async fn get(&self) -> Result<AccessToken, WeChatError> {
        let now = self.clock.now();
        if let Some(cached) = self.cached().filter(|c| c.refresh_at > now) {
            return Ok(cached.token);
        }
        self.refresh(
            |cached| cached.is_none_or(|c| c.refresh_at <= self.clock.now()),
            None,
        )
        .await
    }

    pub(super) async fn replace_rejected(
        &self,
        rejected: &AccessToken,
    ) -> Result<AccessToken, WeChatError> {
        self.refresh(
            |cached| cached.is_none_or(|c| c.token == *rejected),
            Some(rejected),
        )
        .await
    }

    /// Refreshes the token if `needed` still says so once this caller has the refresh
    /// lock: the caller before it may have refreshed already. When `rejected` is the token
    /// WeChat just refused and stable_token hands it out again, one forced refresh is
    /// made, within WeChat's limits.
    async fn refresh(
        &self,
        needed: impl Fn(Option<&Cached>) -> bool,
        rejected: Option<&AccessToken>,
    ) -> Result<AccessToken, WeChatError> {
        within_wait_limit(self.wait_limit, async {
            let mut force_refreshes = self.refreshing.lock().await;
            let cached = self.cached();
            if let Some(cached) = cached.as_ref().filter(|c| !needed(Some(c))) {
                return Ok(cached.token.clone());
            }
            let grant = fetch_replacing(&self.wechat, rejected, async || {
                Ok(force_refreshes.allow(self.clock.now()))
            })
            .await?;
            let fresh = Cached {
                token: grant.token,
                refresh_at: self.clock.now() + cache_for(grant.expires_in),
            };
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
            tracing::info!(expires_in = grant.expires_in, "fetched a new access_token");
            Ok(fresh.token)
        })
        .await
    }

    fn cached(&self) -> Option<Cached> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// When this process last forced a refresh, to keep within WeChat's limits.
#[derive(Default)]
struct ForceRefreshes(VecDeque<u64>);

impl ForceRefreshes {
    /// Records a forced refresh at `now` and returns true, if WeChat's limits allow one.
    fn allow(&mut self, now: u64) -> bool {
        while self.0.front().is_some_and(|&at| at + DAY_SECS <= now) {
            self.0.pop_front();
        }
        let spaced = self
            .0
            .back()
            .is_none_or(|&last| last + FORCE_REFRESH_SPACING_SECS <= now);
        if spaced && self.0.len() < FORCE_REFRESH_PER_DAY as usize {
            self.0.push_back(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_refreshes_keep_to_20_a_day_30_seconds_apart() {
        let mut log = ForceRefreshes::default();
        assert!(log.allow(1000));
        assert!(!log.allow(1029), "29 s after the last one");
        let mut now = 1030;
        for _ in 1..FORCE_REFRESH_PER_DAY {
            assert!(log.allow(now));
            now += 30;
        }
        assert!(!log.allow(now), "the 21st within a day");
        assert!(log.allow(1000 + DAY_SECS), "the first has aged out");
    }
}
