//! `GET /metrics`: the series operators need, in a format Prometheus accepts, and nothing
//! that identifies a user.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;
use crate::tools;

/// A login, a rejected login and a check_session (which fetches an access_token).
async fn busy_app() -> (TestApp, String) {
    let app = spawn_app().await;
    let token = app
        .login_as("code-that-must-not-leak", "oMetricsUser")
        .await;
    wechat_answers(&app.wechat, errcode(40029)).await;
    app.post_openid(&json!({ "code": "rejected-code" }))
        .await
        .assert_error(401, "invalid_code");
    stable_token_answers(&app.wechat, "ACCESS_TOKEN_MUST_NOT_LEAK", 7200).await;
    Mock::given(method("GET"))
        .and(path(CHECK_SESSION))
        .respond_with(wechat_json(json!({ "errcode": 0, "errmsg": "ok" })))
        .mount(&app.wechat)
        .await;
    let check = app.get_as(&token, "/wechat/check_session").await;
    assert_eq!(check.status, 200, "{}", check.text);
    (app, token)
}

#[tokio::test]
async fn metrics_count_logins_wechat_calls_sessions_and_token_refreshes() {
    let (app, _) = busy_app().await;

    let reply = app
        .send(app.http.get(format!("{}/metrics", app.address)))
        .await;

    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.header("content-type")
    );
    let text = reply.text;
    for series in [
        r#"wxlogin_logins_total{route="/openid",app="default",outcome="ok"} 1"#,
        r#"wxlogin_logins_total{route="/openid",app="default",outcome="invalid_code"} 1"#,
        r#"wxlogin_wechat_calls_total{api="code2session",app="default",outcome="answered",errcode="0"} 1"#,
        r#"wxlogin_wechat_calls_total{api="code2session",app="default",outcome="answered",errcode="40029"} 1"#,
        r#"wxlogin_wechat_calls_total{api="stable_token",app="default",outcome="answered",errcode="0"} 1"#,
        r#"wxlogin_wechat_calls_total{api="check_session",app="default",outcome="answered",errcode="0"} 1"#,
        r#"wxlogin_wechat_call_duration_seconds_count{api="code2session",app="default"} 2"#,
        r#"wxlogin_wechat_call_duration_seconds_bucket{api="code2session",app="default",le="+Inf"} 2"#,
        r#"wxlogin_access_token_refreshes_total{app="default",kind="normal"} 1"#,
        r#"wxlogin_http_requests_total{route="/wechat/check_session",status="200"} 1"#,
        "wxlogin_sessions_live 1",
        // The scrape itself is the one request in flight.
        "wxlogin_http_requests_in_flight 1",
        "# TYPE wxlogin_wechat_call_duration_seconds histogram",
        "# HELP wxlogin_logins_total",
    ] {
        assert!(text.contains(series), "missing {series}:\n{text}");
    }
}

#[tokio::test]
async fn no_label_carries_an_openid_a_token_a_code_or_a_secret() {
    let (app, token) = busy_app().await;

    let text = app.metrics().await;

    for private in [
        "oMetricsUser",
        token.as_str(),
        "code-that-must-not-leak",
        "rejected-code",
        "ACCESS_TOKEN_MUST_NOT_LEAK",
        app.secret.as_str(),
        SESSION_KEY,
    ] {
        assert!(!text.contains(private), "{private} in:\n{text}");
    }
}

#[tokio::test]
async fn promtool_accepts_the_metrics() {
    if !tools::available("promtool", &["--version"], "apt-get install -y prometheus") {
        return;
    }
    let (app, _) = busy_app().await;
    let text = app.metrics().await;

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("metrics written");
    let output = promtool.wait_with_output().expect("promtool finishes");

    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let complaints = String::from_utf8_lossy(&output.stdout);
    assert!(
        complaints.trim().is_empty(),
        "promtool's lint: {complaints}"
    );
}

#[tokio::test]
async fn rejected_requests_are_counted_by_their_error_kind() {
    let app = spawn_app().await;
    wechat_answers(&app.wechat, ResponseTemplate::new(502)).await;

    app.post_openid(&json!({}))
        .await
        .assert_error(400, "missing_code");
    app.post_openid(&json!({ "code": "c" }))
        .await
        .assert_error(502, "upstream_error");
    let url = format!("{}/wechat/applet_login?code=c2", app.address);
    app.send(app.http.get(url))
        .await
        .assert_error(502, "upstream_error");

    let text = app.metrics().await;
    for series in [
        r#"wxlogin_logins_total{route="/openid",app="default",outcome="missing_code"} 1"#,
        r#"wxlogin_logins_total{route="/openid",app="default",outcome="upstream_error"} 1"#,
        r#"wxlogin_logins_total{route="/wechat/applet_login",app="default",outcome="upstream_error"} 1"#,
        r#"wxlogin_wechat_calls_total{api="code2session",app="default",outcome="bad_status",errcode=""} 2"#,
    ] {
        assert!(text.contains(series), "missing {series}:\n{text}");
    }
}

/// Prometheus' instrumentation guide: a series that appears only with its first event
/// breaks `rate()` and absence alerts, so every label set known at start-up is there at 0.
#[tokio::test]
async fn a_fresh_instance_shows_every_known_series_at_zero() {
    let app = spawn_app().await;

    let text = app
        .send(app.http.get(format!("{}/metrics", app.address)))
        .await
        .text;

    for series in [
        r#"wxlogin_sessions_evicted_total{cause="expired"} 0"#,
        r#"wxlogin_sessions_evicted_total{cause="size"} 0"#,
        r#"wxlogin_sessions_evicted_total{cause="explicit"} 0"#,
        "wxlogin_login_abandoned_total 0",
        r#"wxlogin_connections_refused_total{reason="client_share"} 0"#,
        "wxlogin_log_lines_dropped_total 0",
        "wxlogin_login_codes_coalesced_total 0",
        r#"wxlogin_admin_actions_total{action="lookup_user"} 0"#,
        r#"wxlogin_admin_actions_total{action="revoke_user"} 0"#,
        r#"wxlogin_admin_actions_total{action="revoke_unionid"} 0"#,
        r#"wxlogin_admin_actions_total{action="block"} 0"#,
        r#"wxlogin_admin_actions_total{action="unblock"} 0"#,
        r#"wxlogin_logins_total{route="/openid",app="default",outcome="ok"} 0"#,
        r#"wxlogin_rate_limited_total{route="/openid"} 0"#,
        r#"wxlogin_rate_limited_total{route="/wechat/phone_number"} 0"#,
        r#"wxlogin_wechat_calls_shed_total{api="code2session",app="default"} 0"#,
        r#"wxlogin_access_token_refreshes_total{app="default",kind="normal"} 0"#,
        r#"wxlogin_access_token_refreshes_total{app="default",kind="forced"} 0"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
}
