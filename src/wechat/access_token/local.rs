use std::collections::VecDeque;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use super::{
    AccessToken, DAY_SECS, FORCE_REFRESH_PER_DAY, FORCE_REFRESH_SPACING_SECS, HandedOut, cache_for,
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
        let (fresh, _) = self.refresh(None).await?;
        Ok(fresh.token)
    }

    /// The current token or, if `rejected` is the current one, a new one.
    pub(super) async fn hand_out(
        &self,
        rejected: Option<&AccessToken>,
    ) -> Result<HandedOut, WeChatError> {
        let now = self.clock.now();
        let current = self
            .cached()
            .filter(|c| c.refresh_at > now && Some(&c.token) != rejected);
        let (cached, refreshed) = match current {
            Some(cached) => (cached, false),
            None => self.refresh(rejected).await?,
        };
        Ok(HandedOut {
            expires_in: cached.refresh_at.saturating_sub(self.clock.now()),
            token: cached.token,
            refreshed,
        })
    }

    /// A token that is neither past its use nor `rejected`: one another caller fetched
    /// while this one waited its turn, or one this caller fetches (then `true`).
    async fn refresh(&self, rejected: Option<&AccessToken>) -> Result<(Cached, bool), WeChatError> {
        within_wait_limit(self.wait_limit, async {
            let mut force_refreshes = self.refreshing.lock().await;
            let now = self.clock.now();
            if let Some(cached) = self
                .cached()
                .filter(|c| c.refresh_at > now && Some(&c.token) != rejected)
            {
                return Ok((cached, false));
            }
            let grant = fetch_replacing(&self.wechat, rejected, async || {
                Ok(force_refreshes.wait(self.clock.now()))
            })
            .await?;
            let fresh = Cached {
                token: grant.token,
                refresh_at: self.clock.now() + cache_for(grant.expires_in),
            };
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
            tracing::info!(expires_in = grant.expires_in, "fetched a new access_token");
            Ok((fresh, true))
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
    /// `None`, counting one made at `now`, if WeChat's limits allow it; else the seconds
    /// until they will.
    fn wait(&mut self, now: u64) -> Option<u64> {
        while self.0.front().is_some_and(|&at| at + DAY_SECS <= now) {
            self.0.pop_front();
        }
        if let Some(&last) = self.0.back()
            && last + FORCE_REFRESH_SPACING_SECS > now
        {
            return Some(last + FORCE_REFRESH_SPACING_SECS - now);
        }
        if let Some(&first) = self.0.front()
            && self.0.len() >= FORCE_REFRESH_PER_DAY as usize
        {
            return Some(first + DAY_SECS - now);
        }
        self.0.push_back(now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_refreshes_keep_to_20_a_day_30_seconds_apart() {
        let mut log = ForceRefreshes::default();
        assert_eq!(log.wait(1000), None);
        assert_eq!(log.wait(1029), Some(1), "29 s after the last one");
        let mut now = 1030;
        for _ in 1..FORCE_REFRESH_PER_DAY {
            assert_eq!(log.wait(now), None);
            now += 30;
        }
        assert_eq!(
            log.wait(now),
            Some(1000 + DAY_SECS - now),
            "the 21st within a day waits for the first to age out"
        );
        assert_eq!(log.wait(1000 + DAY_SECS), None, "the first has aged out");
    }
}
