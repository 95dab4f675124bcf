//! The login itself: a `wx.login()` code in, a session out, with concurrent duplicates of
//! one code coalesced into a single WeChat call.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::watch;

use crate::apps::App;
use crate::domain::{AppName, JsCode, Profile, WxSession};
use crate::redis_conn::StoreError;
use crate::session::{CreateError, IssuedSession, SessionStore};
use crate::telemetry::metrics::Metrics;
use crate::wechat::{WeChatClient, WeChatError};

/// Why a login failed: WeChat said no (or could not be asked), or the session could not
/// be stored.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Shared by every request that joined the same WeChat call.
    #[error(transparent)]
    WeChat(Arc<WeChatError>),
    /// The store could not take a session, so WeChat was not asked: the code is unspent.
    #[error(transparent)]
    StoreUnavailable(StoreError),
    /// WeChat accepted the code, then the store failed: the code is spent.
    #[error("WeChat accepted the code, then the session could not be stored: {0}")]
    NotStored(#[source] StoreError),
    /// An operator blocked the user: no session was created. Carries the public message,
    /// never the block's reason.
    #[error("the user is blocked until {until}")]
    Blocked { until: u64, message: Arc<str> },
    /// The task making the WeChat call ended without an answer: a bug (it panicked).
    #[error("the login task ended without an answer")]
    Interrupted,
}

/// A login's new session, and the profile WeChat told of the user, if it told one (it is
/// not stored: only this answer carries it).
pub struct LoggedIn {
    pub session: IssuedSession,
    pub profile: Option<Profile>,
}

/// What WeChat answered for one code, shared by every request that sent it meanwhile.
type Answer = Result<WxSession, Arc<WeChatError>>;

/// One WeChat call under way; its answer is published to every request waiting on it.
struct Flight(watch::Sender<Option<Answer>>);

/// A code, as the app it was sent to sees it: one code sent to two apps is two logins.
type FlightKey = (AppName, JsCode);

/// The WeChat calls under way, by app and code. Not a cache: an entry lives exactly as long
/// as its call, so a plain map under a lock holds them; the number of calls in flight is
/// bounded by the WeChat client's permits and the connection cap.
type InFlight = Arc<Mutex<HashMap<FlightKey, Arc<Flight>>>>;

pub struct LoginService {
    sessions: SessionStore,
    metrics: Metrics,
    /// What a blocked user is told.
    blocked_message: Arc<str>,
    /// Logins under way, by app and code. Mini-programs double-tap and clients retry, and a
    /// code is single-use: without this, two requests with one code make two WeChat calls
    /// and one of them fails with 40163. The first request starts the call as a task of
    /// its own; the others wait for its answer.
    in_flight: InFlight,
}

impl LoginService {
    pub fn new(sessions: SessionStore, metrics: Metrics, blocked_message: &str) -> Self {
        Self {
            sessions,
            metrics,
            blocked_message: blocked_message.into(),
            in_flight: InFlight::default(),
        }
    }

    /// Trades `code` for a new session. Concurrent callers with the same code share one
    /// WeChat call and its answer (an error included), and each gets a session of its own.
    /// WeChat is asked only if the store took its last write: a user's one-time code is
    /// not spent on an outage of ours.
    pub async fn login(&self, app: &App, code: JsCode) -> Result<LoggedIn, LoginError> {
        self.sessions
            .writable()
            .map_err(LoginError::StoreUnavailable)?;
        let mut login = self.answer_for(&app.wechat, code).await?;
        let profile = login.profile.take();
        // A block is checked here, after WeChat: only its answer names the user.
        self.sessions
            .create(app.name(), login)
            .await
            .map(|session| LoggedIn { session, profile })
            .map_err(|err| match err {
                CreateError::Store(err) => LoginError::NotStored(err),
                CreateError::Blocked { until } => LoginError::Blocked {
                    until,
                    message: Arc::clone(&self.blocked_message),
                },
            })
    }

    /// WeChat's answer for `code` in the app of `wechat`: from the call under way for it,
    /// or from a new one.
    async fn answer_for(
        &self,
        wechat: &WeChatClient,
        code: JsCode,
    ) -> Result<WxSession, LoginError> {
        let key = (wechat.app().clone(), code);
        let (flight, fresh) = {
            let mut in_flight = lock(&self.in_flight);
            match in_flight.get(&key) {
                Some(flight) => (Arc::clone(flight), false),
                None => {
                    let flight = Arc::new(Flight(watch::Sender::new(None)));
                    in_flight.insert(key.clone(), Arc::clone(&flight));
                    (flight, true)
                }
            }
        };
        let mut answer = flight.0.subscribe();
        if fresh {
            // Nothing awaits between the insert and here, so no cancellation can leave a
            // flight that nobody will ever answer.
            Flying(Some(Box::pin(self.fly(wechat.clone(), key, flight)))).await;
        } else {
            self.metrics.code_coalesced();
        }
        let answer = answer
            .wait_for(Option::is_some)
            .await
            .map_err(|_| LoginError::Interrupted)?;
        match &*answer {
            Some(Ok(login)) => Ok(login.clone()),
            Some(Err(err)) => Err(LoginError::WeChat(Arc::clone(err))),
            None => Err(LoginError::Interrupted),
        }
    }

    /// The WeChat call for one code, made by its first caller ([`Flying`]): a caller that
    /// goes away (its client hung up) neither cancels the call nor makes the others repeat
    /// it with a code
    /// WeChat has already consumed.
    fn fly(
        &self,
        wechat: WeChatClient,
        key: FlightKey,
        flight: Arc<Flight>,
    ) -> impl Future<Output = ()> + use<> {
        let metrics = self.metrics.clone();
        let landing = Landing {
            in_flight: Arc::clone(&self.in_flight),
            key,
        };
        async move {
            let answer = wechat.login(&landing.key.1).await.map_err(Arc::new);
            let spent = answer.is_ok();
            // Coalesce only requests that overlap: a later request with a spent code must
            // reach WeChat and be told 40163, never be handed somebody's earlier answer.
            drop(landing);
            flight.0.send_replace(Some(answer));
            if spent && flight.0.receiver_count() == 0 {
                metrics.login_abandoned();
            }
        }
    }
}

/// The WeChat call of a login, driven by the request that started it, in its own task: no
/// hop to another task and back, which under load waits its turn in the scheduler twice.
/// Should that request go away before the call ends, the call goes on in a task of its own
/// (spawned as the request is dropped), so that the code is not spent for nothing and the
/// requests waiting for its answer get one.
struct Flying(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Future for Flying {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(call) = self.0.as_mut() else {
            return Poll::Ready(());
        };
        let landed = call.as_mut().poll(cx);
        if landed.is_ready() {
            self.0 = None;
        }
        landed
    }
}

impl Drop for Flying {
    fn drop(&mut self) {
        // Without a runtime (it is shutting down) there is nothing left to answer.
        if let (Some(call), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(call);
        }
    }
}

/// Takes a code off the in-flight list when its call ends, however it ends.
struct Landing {
    in_flight: InFlight,
    key: FlightKey,
}

impl Drop for Landing {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.key);
    }
}

fn lock(in_flight: &InFlight) -> std::sync::MutexGuard<'_, HashMap<FlightKey, Arc<Flight>>> {
    // The map is consistent between any two statements, so a poisoned lock is still usable.
    in_flight.lock().unwrap_or_else(PoisonError::into_inner)
}
