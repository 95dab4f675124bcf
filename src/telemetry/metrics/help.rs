//! The help text of every metric: what it counts and what its labels can say.

use metrics::{Recorder, Unit};
use metrics_exporter_prometheus::PrometheusRecorder;

use super::*;

pub(super) fn describe(recorder: &PrometheusRecorder) {
    let counters = [
        (
            LOGINS,
            "Login requests, by route, app (\"unknown\" when the route named none) and outcome (ok, or the error kind answered).",
        ),
        (
            HTTP_REQUESTS,
            "HTTP requests answered, by route pattern and status.",
        ),
        (
            WECHAT_CALLS,
            "WeChat API calls, by API, app, outcome (answered, timeout, unreachable, bad_status, malformed) and errcode (0 on success; empty when WeChat gave no answer).",
        ),
        (
            WECHAT_SHED,
            "WeChat calls not made because the concurrency cap was reached (the request got 503 overloaded), by API and app.",
        ),
        (
            COALESCED,
            "Login requests that shared the WeChat call of a concurrent request with the same code.",
        ),
        (
            TOKEN_REFRESHES,
            "access_tokens fetched from WeChat, by app and kind (normal, forced).",
        ),
        (
            RATE_LIMITED,
            "Requests refused by the per-client-IP rate limit, by route.",
        ),
        (
            SESSIONS_EVICTED,
            "Sessions the memory store let go, by cause (expired, size: the store was full, explicit: a logout).",
        ),
        (
            LOGINS_ABANDONED,
            "Logins whose WeChat call succeeded after every request waiting for it had gone away: the code was spent, no session was handed out.",
        ),
        (
            CONNECTIONS_REFUSED,
            "Connections closed as soon as accepted, by reason: full (WXLOGIN_MAX_CONNECTIONS were open, every one busy), client_share (the address's WXLOGIN_MAX_CONNECTIONS_PER_CLIENT were open, every one busy); and client_requests: requests behind a trusted proxy answered 429 because their forwarded address had its share in progress.",
        ),
        (
            BACKEND_REQUESTS,
            "Requests of the team's other backends for an app's access_token, by backend, app, route (access_token, refresh) and outcome (ok, refreshed: this report made wxlogin fetch a new token, error).",
        ),
        (
            STORE_KEY_MISMATCHES,
            "Sealed session_keys in Redis that no configured store key opens (WXLOGIN_STORE_KEY_FILE, WXLOGIN_STORE_OLD_KEYS_FILE): an operator's error; /readyz names the key id.",
        ),
        (
            ADMIN_ACTIONS,
            "Admin API actions, by action (lookup_user, revoke_user, revoke_unionid, block, unblock).",
        ),
        (
            LOG_LINES_DROPPED,
            "Log lines dropped because the log writer's queue was full (stderr did not keep up).",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(name.into(), None, help.into());
    }
    recorder.describe_gauge(
        IN_FLIGHT.into(),
        None,
        "HTTP requests being served now.".into(),
    );
    recorder.describe_gauge(
        LIVE_SESSIONS.into(),
        None,
        "Sessions held by this process's memory store (absent with the Redis store: count the session:* keys under WXLOGIN_REDIS_KEY_PREFIX there).".into(),
    );
    recorder.describe_histogram(
        WECHAT_LATENCY.into(),
        Some(Unit::Seconds),
        "Time taken by one WeChat API call, by API and app.".into(),
    );
}
