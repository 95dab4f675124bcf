//! The login itself: a `wx.login()` code in, a session out, with concurrent duplicates of
//! one code coalesced into a single WeChat call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moka::future::Cache;

use crate::session::{IssuedSession, SessionStore, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::wechat::{JsCode, WeChatClient, WeChatError};

/// Why a login failed: WeChat said no (or could not be asked), or the session could not
/// be stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    WeChat(Arc<WeChatError>),
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl From<WeChatError> for LoginError {
    fn from(err: WeChatError) -> Self {
        Self::WeChat(Arc::new(err))
    }
}

impl From<StoreError> for LoginError {
    fn from(err: StoreError) -> Self {
        Self::Store(Arc::new(err))
    }
}

/// Entries leave the in-flight table as soon as their login completes. This backstop only
/// matters when the caller went away between completion and clean-up: then the finished
/// login stays reusable for at most this long. moka starts the clock at insertion, that
/// is when the login completes, so callers still waiting on WeChat are not affected.
const IN_FLIGHT_BACKSTOP_TTL: Duration = Duration::from_secs(1);
const IN_FLIGHT_MAX: u64 = 100_000;

pub struct LoginService {
    wechat: WeChatClient,
    sessions: SessionStore,
    metrics: Metrics,
    /// Logins under way, by code. Mini-programs double-tap and clients retry, and a code is
    /// single-use: without this, two requests with one code make two WeChat calls and one
    /// of them fails with 40163. moka runs one initialiser per key and hands its result to
    /// every caller waiting on that key.
    in_flight: Cache<JsCode, Arc<IssuedSession>>,
}

impl LoginService {
    pub fn new(wechat: WeChatClient, sessions: SessionStore, metrics: Metrics) -> Self {
        let in_flight = Cache::builder()
            .max_capacity(IN_FLIGHT_MAX)
            .time_to_live(IN_FLIGHT_BACKSTOP_TTL)
            .build();
        Self {
            wechat,
            sessions,
            metrics,
            in_flight,
        }
    }

    /// Trades `code` for a new session. Every concurrent caller with the same code gets the
    /// same session (or the same error) from one WeChat call.
    pub async fn login(&self, code: JsCode) -> Result<Arc<IssuedSession>, Arc<LoginError>> {
        let called_wechat = AtomicBool::new(false);
        let outcome = self
            .in_flight
            .try_get_with_by_ref(&code, async {
                called_wechat.store(true, Ordering::Relaxed);
                let login = self.wechat.code2session(&code).await?;
                Ok::<_, LoginError>(Arc::new(self.sessions.create(login).await?))
            })
            .await;
        // Coalesce only requests that overlap: a later request with a spent code must reach
        // WeChat and be told 40163, never be handed somebody's earlier session.
        self.in_flight.invalidate(&code).await;
        if !called_wechat.load(Ordering::Relaxed) {
            self.metrics.code_coalesced();
        }
        outcome
    }
}
