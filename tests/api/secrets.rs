//! The app secret and the session_key must never reach a log line or a response, even
//! when the WeChat call fails at the transport level (reqwest errors carry the URL, and
//! our URL carries the secret).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::helpers::*;
use crate::upstream_errors::closed_port_url;

/// Logs in once against whatever WeChat the app has, and checks that neither the
/// secret nor `session_key` shows up in the reply or in anything logged.
async fn assert_no_leak(
    app: &TestApp,
    session_key: Option<&str>,
    expected_status: u16,
    expected_log: &str,
) {
    let reply = app.post_openid(&json!({ "code": "leak-check" })).await;
    assert_eq!(reply.status, expected_status, "{}", reply.text);

    let request_id = reply.header("x-request-id").expect("request id");
    let logs = captured_logs();
    let own_lines: Vec<&str> = logs.lines().filter(|l| l.contains(request_id)).collect();
    assert!(
        own_lines.iter().any(|l| l.contains(expected_log)),
        "the request was logged with {expected_log:?}: {own_lines:#?}"
    );
    for needle in [Some(app.secret.as_str()), session_key]
        .into_iter()
        .flatten()
    {
        assert!(
            !reply.text.contains(needle),
            "leaked in the reply: {}",
            reply.text
        );
        assert!(!logs.contains(needle), "leaked in the logs");
    }
}

fn random_session_key() -> String {
    STANDARD.encode(uuid::Uuid::new_v4().as_bytes())
}

#[tokio::test]
async fn a_refused_connection_leaks_nothing() {
    let app = spawn_app_with(&[("WXLOGIN_WECHAT_BASE_URL", &closed_port_url())]).await;
    assert_no_leak(&app, None, 502, "could not reach WeChat").await;
}

#[tokio::test]
async fn a_timeout_leaks_nothing() {
    let app = spawn_app_with(&[("WXLOGIN_WECHAT_TIMEOUT_MS", "100")]).await;
    let key = random_session_key();
    let slow = wechat_json(json!({ "openid": "oSlow", "session_key": key }))
        .set_delay(Duration::from_secs(5));
    wechat_answers(&app.wechat, slow).await;
    assert_no_leak(&app, Some(&key), 504, "upstream_timeout").await;
}

#[tokio::test]
async fn upstream_garbage_and_errors_leak_nothing() {
    let app = spawn_app().await;
    for (answer, status, logged) in [
        (ResponseTemplate::new(500), 502, "WeChat answered HTTP 500"),
        (
            ResponseTemplate::new(200).set_body_raw("<html>oops</html>", "text/html"),
            502,
            "not the JSON WeChat documents",
        ),
        (errcode(40125), 500, "misconfigured"),
    ] {
        wechat_answers(&app.wechat, answer).await;
        assert_no_leak(&app, None, status, logged).await;
    }
}

#[tokio::test]
async fn a_successful_login_logs_neither_the_secret_nor_the_session_key() {
    let app = spawn_app().await;
    let key = random_session_key();
    wechat_answers(
        &app.wechat,
        wechat_json(json!({ "openid": "oHappy", "session_key": key })),
    )
    .await;
    assert_no_leak(&app, Some(&key), 200, "request finished").await;
}

/// An upstream that echoes the request's URL (a proxy, a broken stub) puts the secret and
/// the code into errmsg: what reaches the log is bounded, on one line, with those redacted.
#[tokio::test]
async fn an_errmsg_that_echoes_the_request_url_leaks_nothing_into_the_log() {
    use wiremock::matchers::{method, path};
    let app = spawn_app().await;
    let echo = |request: &wiremock::Request| {
        let errmsg = format!("no such thing: GET {}\r\nX-Injected: 1", request.url);
        wechat_json(json!({ "errcode": 99999, "errmsg": errmsg + &"x".repeat(4000) }))
    };
    app.wechat.reset().await;
    wiremock::Mock::given(method("GET"))
        .and(path(CODE2SESSION))
        .respond_with(echo)
        .mount(&app.wechat)
        .await;

    assert_no_leak(&app, None, 502, "99999").await;
    let logs = captured_logs();
    assert!(!logs.contains("js_code=leak-check"), "the code was logged");
    assert!(
        !logs.lines().any(|line| line.starts_with("X-Injected")),
        "errmsg started a log line of its own"
    );
    assert!(!logs.contains(&"x".repeat(1000)), "errmsg was not bounded");
}
