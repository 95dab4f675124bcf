//! The login itself: a `wx.login()` code in, a session out, with concurrent duplicates of
//! one code coalesced into a single WeChat call.

use std::sync::Arc;

use quick_cache::sync::Cache;

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

/// How many distinct codes can be logging in at once before the oldest lose coalescing.
/// An entry lives only while its WeChat call is under way.
const IN_FLIGHT_MAX: usize = 100_000;

type Outcome = Result<Arc<IssuedSession>, Arc<LoginError>>;

pub struct LoginService {
    wechat: WeChatClient,
    sessions: SessionStore,
    metrics: Metrics,
    /// Logins under way, by code. Mini-programs double-tap and clients retry, and a code is
    /// single-use: without this, two requests with one code make two WeChat calls and one
    /// of them fails with 40163. The first request holds a placeholder while it asks WeChat;
    /// the others wait on it and get its outcome, error included.
    in_flight: Cache<JsCode, Outcome>,
}

impl LoginService {
    pub fn new(wechat: WeChatClient, sessions: SessionStore, metrics: Metrics) -> Self {
        Self {
            wechat,
            sessions,
            metrics,
            in_flight: Cache::new(IN_FLIGHT_MAX),
        }
    }

    /// Trades `code` for a new session. Every concurrent caller with the same code gets the
    /// same session (or the same error) from one WeChat call.
    pub async fn login(&self, code: JsCode) -> Outcome {
        match self.in_flight.get_value_or_guard_async(&code).await {
            Ok(outcome) => {
                self.metrics.code_coalesced();
                outcome
            }
            // Should this request go away mid-call, the placeholder goes with it and one of
            // the waiters makes the call instead.
            Err(placeholder) => {
                let outcome = self.login_at_wechat(&code).await.map_err(Arc::new);
                let _ = placeholder.insert(outcome.clone());
                // Coalesce only requests that overlap: a later request with a spent code
                // must reach WeChat and be told 40163, never be handed somebody's earlier
                // session. Nothing awaits between the insert and this, so no cancellation
                // can leave the entry behind.
                self.in_flight.remove(&code);
                outcome
            }
        }
    }

    async fn login_at_wechat(&self, code: &JsCode) -> Result<Arc<IssuedSession>, LoginError> {
        let login = self.wechat.code2session(code).await?;
        Ok(Arc::new(self.sessions.create(login).await?))
    }
}
