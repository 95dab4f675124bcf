//! Prometheus metrics. Each app owns its recorder (no process-global one), so tests that
//! run several apps in one process read only their own figures.
//!
//! No label ever carries an openid, a token or a code: labels are routes, API names,
//! error kinds and errcodes, all from small fixed sets.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, SharedString};
mod handles;
mod help;

use handles::{HandleCache, RouteCounters};
use help::describe;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

const LOGINS: &str = "wxlogin_logins_total";
const HTTP_REQUESTS: &str = "wxlogin_http_requests_total";
const IN_FLIGHT: &str = "wxlogin_http_requests_in_flight";
const WECHAT_CALLS: &str = "wxlogin_wechat_calls_total";
const WECHAT_LATENCY: &str = "wxlogin_wechat_call_duration_seconds";
const WECHAT_SHED: &str = "wxlogin_wechat_calls_shed_total";
const COALESCED: &str = "wxlogin_login_codes_coalesced_total";
const LIVE_SESSIONS: &str = "wxlogin_sessions_live";
const TOKEN_REFRESHES: &str = "wxlogin_access_token_refreshes_total";
const RATE_LIMITED: &str = "wxlogin_rate_limited_total";
const SESSIONS_EVICTED: &str = "wxlogin_sessions_evicted_total";
const LOGINS_ABANDONED: &str = "wxlogin_login_abandoned_total";
const LOG_LINES_DROPPED: &str = "wxlogin_log_lines_dropped_total";
const CONNECTIONS_REFUSED: &str = "wxlogin_connections_refused_total";
const ADMIN_ACTIONS: &str = "wxlogin_admin_actions_total";
const STORE_KEY_MISMATCHES: &str = "wxlogin_store_key_mismatches_total";
const BACKEND_REQUESTS: &str = "wxlogin_backend_requests_total";

/// Why a connection was refused: the `reason` label of [`CONNECTIONS_REFUSED`].
pub const REFUSAL_REASONS: &[&str] = &["full", "client_share", "client_requests"];
/// Why the memory store let a session go: the `cause` label of [`SESSIONS_EVICTED`].
const EVICTION_CAUSES: &[&str] = &["expired", "size", "explicit"];
/// What an operator did: the `action` label of [`ADMIN_ACTIONS`].
const ADMIN_ACTION_NAMES: &[&str] = &[
    "lookup_user",
    "revoke_user",
    "revoke_unionid",
    "block",
    "unblock",
];

/// From a fast WeChat answer to the default 5 s timeout; WeChat's own p99 is ~100 ms.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A status as a label value: the statuses this service answers are static strings, so
/// counting the common requests allocates nothing for this label.
fn status_label(status: axum::http::StatusCode) -> SharedString {
    const ANSWERED: &[&str] = &[
        "200", "400", "401", "403", "404", "405", "409", "413", "415", "422", "429", "500", "502",
        "503", "504",
    ];
    let code = status.as_str();
    match ANSWERED.iter().find(|known| **known == code) {
        Some(known) => SharedString::const_str(known),
        None => SharedString::from_owned(code.to_owned()),
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The app's metrics: cheap to clone, shared by every part that records.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    in_flight: Gauge,
    coalesced: Counter,
    live_sessions: Gauge,
    /// Requests answered 200, by route.
    ok_requests: RouteCounters,
    /// Logins that ended "ok", by route.
    ok_logins: RouteCounters,
    /// WeChat calls answered with errcode 0, and their latency, by API and app.
    answered_calls: HandleCache<(&'static str, Box<str>), (Counter, Histogram)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(WECHAT_LATENCY.to_owned()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        describe(&recorder);
        let gauge =
            |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &METADATA);
        let inner = Inner {
            in_flight: gauge(IN_FLIGHT),
            live_sessions: gauge(LIVE_SESSIONS),
            coalesced: recorder.register_counter(&Key::from_static_name(COALESCED), &METADATA),
            ok_requests: RouteCounters::new(HTTP_REQUESTS, ("status", "200")),
            ok_logins: RouteCounters::new(LOGINS, ("outcome", "ok")),
            answered_calls: Default::default(),
            handle: recorder.handle(),
            recorder,
        };
        Self(Arc::new(inner))
    }

    /// The Prometheus text exposition of every series, with the live-session count given.
    pub fn render(&self, live_sessions: Option<u64>) -> String {
        if let Some(count) = live_sessions {
            self.0.live_sessions.set(count as f64);
        }
        if let Some(dropped) = super::dropped_log_lines() {
            self.log_lines_dropped(dropped);
        }
        self.0.handle.run_upkeep();
        self.0.handle.render()
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.0
            .recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    /// Registers at 0 every series whose labels are known before its first event, so that
    /// `rate()` and absence alerts work from the start (Prometheus' instrumentation guide):
    /// the counters of this module's own fixed label sets, and those of `apps`, the WeChat
    /// `apis`, the successful `logins` by (route, app) and the `rate_limited` routes.
    pub fn register_known_series(
        &self,
        apps: &[&str],
        apis: &[&'static str],
        logins: &[(String, &str)],
        rate_limited: &[String],
    ) {
        for cause in EVICTION_CAUSES {
            self.counter(SESSIONS_EVICTED, vec![Label::new("cause", *cause)])
                .increment(0);
        }
        for action in ADMIN_ACTION_NAMES {
            self.counter(ADMIN_ACTIONS, vec![Label::new("action", *action)])
                .increment(0);
        }
        for reason in REFUSAL_REASONS {
            self.counter(CONNECTIONS_REFUSED, vec![Label::new("reason", *reason)])
                .increment(0);
        }
        for name in [LOGINS_ABANDONED, LOG_LINES_DROPPED, STORE_KEY_MISMATCHES] {
            self.counter(name, vec![]).increment(0);
        }
        for app in apps {
            for api in apis {
                let labels = vec![
                    Label::new("api", *api),
                    Label::new("app", (*app).to_owned()),
                ];
                self.counter(WECHAT_SHED, labels).increment(0);
            }
            for kind in ["normal", "forced"] {
                let labels = vec![
                    Label::new("app", (*app).to_owned()),
                    Label::new("kind", kind),
                ];
                self.counter(TOKEN_REFRESHES, labels).increment(0);
            }
        }
        for (route, app) in logins {
            self.0
                .ok_logins
                .get(&self.0.recorder, route, Some(app))
                .increment(0);
        }
        for route in rate_limited {
            self.counter(RATE_LIMITED, vec![Label::new("route", route.clone())])
                .increment(0);
        }
    }

    /// A request has started; the returned guard marks it finished when dropped, also
    /// when the client goes away mid-request.
    pub fn request_started(&self) -> InFlight {
        self.0.in_flight.increment(1.0);
        InFlight(self.0.in_flight.clone())
    }

    /// A request finished with `status`, on `route` (the pattern, never the URI).
    pub fn request_finished(&self, route: &str, status: axum::http::StatusCode) {
        if status == axum::http::StatusCode::OK {
            return self
                .0
                .ok_requests
                .get(&self.0.recorder, route, None)
                .increment(1);
        }
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("status", status_label(status)),
        ];
        self.counter(HTTP_REQUESTS, labels).increment(1);
    }

    /// A login request to `app` ended in `outcome`: "ok" or the error kind of the response.
    /// `app` is the name of a configured app, or "unknown" for a route that named none.
    pub fn login_finished(&self, route: &str, app: &str, outcome: &'static str) {
        if outcome == "ok" {
            return self
                .0
                .ok_logins
                .get(&self.0.recorder, route, Some(app))
                .increment(1);
        }
        let labels = vec![
            Label::new("route", route.to_owned()),
            Label::new("app", app.to_owned()),
            Label::new("outcome", outcome),
        ];
        self.counter(LOGINS, labels).increment(1);
    }

    /// A request was refused by the per-IP rate limit.
    pub fn rate_limited(&self, route: &str) {
        let labels = vec![Label::new("route", route.to_owned())];
        self.counter(RATE_LIMITED, labels).increment(1);
    }

    /// A login shared the WeChat call of a concurrent login with the same code.
    pub fn code_coalesced(&self) {
        self.0.coalesced.increment(1);
    }

    /// One attempt at a call to the WeChat API named `api`: what came of it (`outcome`,
    /// and the `errcode` label, "0" for success) and how long it took. The labels come from
    /// small fixed sets that the WeChat client defines.
    pub fn wechat_call(
        &self,
        api: &'static str,
        app: &str,
        outcome: &'static str,
        errcode: Cow<'static, str>,
        took: Duration,
    ) {
        let (calls, latency) = if outcome == "answered" && errcode == "0" {
            self.answered_series(api, app)
        } else {
            let errcode = match errcode {
                Cow::Borrowed(label) => SharedString::const_str(label),
                Cow::Owned(label) => SharedString::from_owned(label),
            };
            self.wechat_series(api, app, outcome, errcode)
        };
        calls.increment(1);
        latency.record(took.as_secs_f64());
    }

    /// The series of successful calls to `api` for `app`, registered on first use.
    fn answered_series(&self, api: &'static str, app: &str) -> (Counter, Histogram) {
        self.0.answered_calls.get(
            |(known_api, known_app)| *known_api == api && **known_app == *app,
            || {
                let handles =
                    self.wechat_series(api, app, "answered", SharedString::const_str("0"));
                ((api, app.into()), handles)
            },
        )
    }

    fn wechat_series(
        &self,
        api: &'static str,
        app: &str,
        outcome: &'static str,
        errcode: SharedString,
    ) -> (Counter, Histogram) {
        let labels = vec![
            Label::new("api", api),
            Label::new("app", app.to_owned()),
            Label::new("outcome", outcome),
            Label::new("errcode", errcode),
        ];
        let key = Key::from_parts(
            WECHAT_LATENCY,
            vec![Label::new("api", api), Label::new("app", app.to_owned())],
        );
        let latency = self.0.recorder.register_histogram(&key, &METADATA);
        (self.counter(WECHAT_CALLS, labels), latency)
    }

    /// A WeChat call was not made: the cap on concurrent calls was reached.
    pub fn wechat_call_shed(&self, api: &'static str, app: &str) {
        let labels = vec![Label::new("api", api), Label::new("app", app.to_owned())];
        self.counter(WECHAT_SHED, labels).increment(1);
    }

    /// The memory store let a session go: `cause` is expired, size or explicit.
    pub fn session_evicted(&self, cause: &'static str) {
        self.counter(SESSIONS_EVICTED, vec![Label::new("cause", cause)])
            .increment(1);
    }

    /// A WeChat call for a login finished with a session_key, and every request that
    /// waited for it had gone away: the code was spent and no session handed out.
    pub fn login_abandoned(&self) {
        self.counter(LOGINS_ABANDONED, vec![]).increment(1);
    }

    /// Sealed session_keys that no configured store key opened, since start.
    pub fn store_key_mismatches(&self, total: u64) {
        self.0
            .recorder
            .register_counter(&Key::from_static_name(STORE_KEY_MISMATCHES), &METADATA)
            .absolute(total);
    }

    /// The log writer's count of lines it dropped because its queue was full, as of now.
    pub fn log_lines_dropped(&self, total: u64) {
        self.0
            .recorder
            .register_counter(&Key::from_static_name(LOG_LINES_DROPPED), &METADATA)
            .absolute(total);
    }

    /// A connection (or, behind a proxy, a request) refused at once, for `reason` (one of
    /// [`REFUSAL_REASONS`]).
    pub fn connection_refused(&self, reason: &'static str) {
        self.counter(CONNECTIONS_REFUSED, vec![Label::new("reason", reason)])
            .increment(1);
    }

    /// Registers at 0 the series of [`Metrics::backend_request`] for each of `backends`
    /// and `apps`.
    pub fn register_backend_series(&self, backends: &[&str], apps: &[&str]) {
        for backend in backends {
            for app in apps {
                for route in ["access_token", "refresh"] {
                    for outcome in ["ok", "refreshed", "error"] {
                        let labels = vec![
                            Label::new("backend", (*backend).to_owned()),
                            Label::new("app", (*app).to_owned()),
                            Label::new("route", route),
                            Label::new("outcome", outcome),
                        ];
                        self.counter(BACKEND_REQUESTS, labels).increment(0);
                    }
                }
            }
        }
    }

    /// A backend asked for an app's access_token on `route` (`access_token`, `refresh`);
    /// `outcome` is `ok`, `refreshed` or `error`. Backends and apps come from the
    /// configuration: a small fixed set.
    pub fn backend_request(
        &self,
        backend: &str,
        app: &str,
        route: &'static str,
        outcome: &'static str,
    ) {
        let labels = vec![
            Label::new("backend", backend.to_owned()),
            Label::new("app", app.to_owned()),
            Label::new("route", route),
            Label::new("outcome", outcome),
        ];
        self.counter(BACKEND_REQUESTS, labels).increment(1);
    }

    /// An operator used the admin API (see [`ADMIN_ACTIONS`]'s help for the actions).
    pub fn admin_action(&self, action: &'static str) {
        self.counter(ADMIN_ACTIONS, vec![Label::new("action", action)])
            .increment(1);
    }

    /// A new access_token was fetched for `app`; `forced` when with `force_refresh`.
    pub fn access_token_refreshed(&self, app: &str, forced: bool) {
        let kind = if forced { "forced" } else { "normal" };
        let labels = vec![Label::new("app", app.to_owned()), Label::new("kind", kind)];
        self.counter(TOKEN_REFRESHES, labels).increment(1);
    }
}

/// Marks a request finished when dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handles_kept_for_successes_count_in_the_same_series_as_the_rest() {
        let metrics = Metrics::new();
        for status in [200, 200, 401] {
            let status = axum::http::StatusCode::from_u16(status).expect("a status");
            metrics.request_finished("/session", status);
        }
        metrics.request_finished("/openid", axum::http::StatusCode::OK);
        metrics.login_finished("/openid", "default", "ok");
        metrics.login_finished("/openid", "default", "ok");
        metrics.login_finished("/openid", "default", "invalid_code");
        let took = Duration::from_millis(30);
        metrics.wechat_call("code2session", "default", "answered", "0".into(), took);
        metrics.wechat_call("code2session", "default", "answered", "0".into(), took);
        metrics.wechat_call("code2session", "default", "timeout", "".into(), took);
        let text = metrics.render(None);
        for series in [
            r#"wxlogin_http_requests_total{route="/session",status="200"} 2"#,
            r#"wxlogin_http_requests_total{route="/session",status="401"} 1"#,
            r#"wxlogin_http_requests_total{route="/openid",status="200"} 1"#,
            r#"wxlogin_logins_total{route="/openid",app="default",outcome="ok"} 2"#,
            r#"wxlogin_logins_total{route="/openid",app="default",outcome="invalid_code"} 1"#,
            r#"wxlogin_wechat_calls_total{api="code2session",app="default",outcome="answered",errcode="0"} 2"#,
            r#"wxlogin_wechat_calls_total{api="code2session",app="default",outcome="timeout",errcode=""} 1"#,
            r#"wxlogin_wechat_call_duration_seconds_count{api="code2session",app="default"} 3"#,
        ] {
            assert!(text.contains(series), "{series} in\n{text}");
        }
    }

    #[test]
    fn rendering_shows_counters_with_help_and_the_in_flight_gauge() {
        let metrics = Metrics::new();
        metrics.login_finished("/openid", "default", "ok");
        let guard = metrics.request_started();
        let text = metrics.render(Some(3));
        assert!(
            text.contains(r#"wxlogin_logins_total{route="/openid",app="default",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains("# HELP wxlogin_logins_total"), "{text}");
        assert!(text.contains("wxlogin_http_requests_in_flight 1"), "{text}");
        assert!(text.contains("wxlogin_sessions_live 3"), "{text}");
        drop(guard);
        assert!(
            metrics
                .render(None)
                .contains("wxlogin_http_requests_in_flight 0")
        );
    }
}
