//! The per-client-IP token bucket in front of the routes that spend WeChat quota.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use super::client_ip::{client_ip, rate_limit_key};
use super::error::ApiError;
use crate::config::LimitSettings;
use crate::telemetry::metrics::Metrics;

/// How often buckets that have filled up again are forgotten, so that the table holds
/// only clients seen within about the last minute.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Shared by every request; `None` inside when the limit is off.
#[derive(Clone)]
pub struct ClientLimiter(Option<Arc<Limiter>>);

/// The buckets, one per client; they need pruning every [`PRUNE_EVERY`] (see [`Limiter::prune`]).
pub struct Limiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    trusted_proxies: Vec<IpNet>,
}

impl Limiter {
    /// Forgets the buckets that have filled up again.
    pub fn prune(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }
}

impl ClientLimiter {
    pub fn new(settings: &LimitSettings) -> Self {
        let Some(per_min) = settings.per_ip_per_min else {
            return Self(None);
        };
        Self(Some(Arc::new(Limiter {
            buckets: RateLimiter::keyed(Quota::per_minute(per_min)),
            trusted_proxies: settings.trusted_proxies.clone(),
        })))
    }

    /// The buckets, when the limit is on.
    pub fn buckets(&self) -> Option<&Arc<Limiter>> {
        self.0.as_ref()
    }

    /// Takes one token from the client's bucket, or says how long until there is one.
    fn check(&self, parts: &Parts) -> Result<(), Duration> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        let key = rate_limit_key(client_ip(parts, &limiter.trusted_proxies));
        limiter
            .buckets
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(limiter.buckets.clock().now()))
    }
}

/// Takes one token from the client's bucket: 429 `rate_limited` when there is none. A
/// login checks this before its body is even read.
pub fn within_rate_limit(
    parts: &Parts,
    limiter: &ClientLimiter,
    metrics: &Metrics,
) -> Result<(), ApiError> {
    let Err(wait) = limiter.check(parts) else {
        return Ok(());
    };
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    metrics.rate_limited(route);
    // Whole seconds, rounded up: Retry-After: 0 would invite an instant retry.
    let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Err(ApiError::RateLimited {
        retry_after_secs: retry_after_secs.max(1),
    })
}

/// Proof that the request is within its client's rate limit ([`within_rate_limit`]): a
/// handler that takes it is rate limited, before its body is even read.
pub struct WithinRateLimit;

impl<S> FromRequestParts<S> for WithinRateLimit
where
    S: Send + Sync,
    ClientLimiter: FromRef<S>,
    Metrics: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        within_rate_limit(
            parts,
            &ClientLimiter::from_ref(state),
            &Metrics::from_ref(state),
        )
        .map(|()| Self)
    }
}
