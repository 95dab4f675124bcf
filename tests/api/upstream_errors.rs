use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn each_wechat_errcode_gets_its_documented_status_and_kind() {
    let app = spawn_app().await;
    for (code, status, kind) in [
        (40029, 401, "invalid_code"),
        (40163, 409, "code_used"),
        (40226, 403, "user_blocked"),
        (45011, 429, "rate_limited"),
        (40013, 500, "misconfigured"),
        (40125, 500, "misconfigured"),
        (41002, 500, "misconfigured"),
        (41004, 500, "misconfigured"),
        (40164, 500, "misconfigured"),
        (61024, 502, "upstream_error"),
    ] {
        wechat_answers(&app.wechat, errcode(code)).await;
        let reply = app.post_openid(&json!({ "code": "c" })).await;
        reply.assert_error(status, kind);
        let body = reply.json();
        match code {
            61024 => assert_eq!(body["wechat_errcode"], 61024),
            _ => assert!(body.get("wechat_errcode").is_none(), "{code}: {body}"),
        }
        match code {
            45011 => assert_eq!(reply.header("retry-after"), Some("60")),
            _ => assert_eq!(reply.header("retry-after"), None, "{code}"),
        }
    }
}

#[tokio::test]
async fn misconfiguration_details_go_to_the_log_not_the_client() {
    let app = spawn_app().await;
    let errmsg = "invalid ip 203.0.113.9, not in whitelist rid: 65f0-misconfig-rid";
    wechat_answers(
        &app.wechat,
        wechat_json(json!({ "errcode": 40164, "errmsg": errmsg })),
    )
    .await;

    let reply = app.post_openid(&json!({ "code": "c" })).await;

    reply.assert_error(500, "misconfigured");
    assert!(
        !reply.text.contains("203.0.113.9") && !reply.text.contains("40164"),
        "{}",
        reply.text
    );
    let logs = captured_logs();
    let request_id = reply.header("x-request-id").expect("request id");
    let line = logs
        .lines()
        .find(|l| l.contains(request_id) && l.contains("request failed"))
        .expect("logged");
    let line: serde_json::Value = serde_json::from_str(line).expect("one JSON object");
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["status"], 500, "{line}");
    assert_eq!(line["error"], "misconfigured", "{line}");
    assert_eq!(line["wechat_errcode"], 40164, "{line}");
    assert_eq!(line["wechat_rid"], "65f0-misconfig-rid", "{line}");
    assert_eq!(line["span"]["request_id"], request_id, "{line}");
    assert_eq!(line["span"]["route"], "/openid", "{line}");
    // Every line logged so far, by wxlogin and by its dependencies at trace level, too.
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<serde_json::Map<_, _>>(line).is_ok(),
            "not one JSON object: {line}"
        );
    }
}

#[tokio::test]
async fn busy_twice_means_one_retry_then_503_with_retry_after() {
    let app = spawn_app().await;
    Mock::given(path(CODE2SESSION))
        .respond_with(errcode(-1))
        .expect(2)
        .mount(&app.wechat)
        .await;

    let reply = app.post_openid(&json!({ "code": "c" })).await;

    reply.assert_error(503, "upstream_busy");
    assert_eq!(reply.header("retry-after"), Some("2"));
}

/// WeChat is busy once, then answers: the retry must hide the hiccup from the user.
struct BusyThenSuccess(AtomicUsize);

impl Respond for BusyThenSuccess {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        match self.0.fetch_add(1, Ordering::SeqCst) {
            0 => errcode(-1),
            _ => success("oPatient", None),
        }
    }
}

#[tokio::test]
async fn busy_once_then_success_logs_the_user_in() {
    let app = spawn_app().await;
    Mock::given(path(CODE2SESSION))
        .respond_with(BusyThenSuccess(AtomicUsize::new(0)))
        .expect(2)
        .mount(&app.wechat)
        .await;

    let reply = app.post_openid(&json!({ "code": "c" })).await;

    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["openid"], "oPatient");
}

#[tokio::test]
async fn a_wechat_slower_than_the_timeout_gets_504() {
    let app = spawn_app_with(&[("WXLOGIN_WECHAT_TIMEOUT_MS", "200")]).await;
    wechat_answers(
        &app.wechat,
        success("oSlow", None).set_delay(Duration::from_secs(5)),
    )
    .await;

    app.post_openid(&json!({ "code": "c" }))
        .await
        .assert_error(504, "upstream_timeout");
}

#[tokio::test]
async fn a_refused_connection_gets_502() {
    let app = spawn_app_with(&[("WXLOGIN_WECHAT_BASE_URL", &closed_port_url())]).await;

    app.post_openid(&json!({ "code": "c" }))
        .await
        .assert_error(502, "upstream_error");
}

#[tokio::test]
async fn non_200_html_garbage_and_incomplete_answers_get_502() {
    let app = spawn_app().await;
    for answer in [
        ResponseTemplate::new(500).set_body_raw(
            json!({"openid": "o", "session_key": SESSION_KEY}).to_string(),
            "text/plain",
        ),
        ResponseTemplate::new(404),
        ResponseTemplate::new(200)
            .set_body_raw("<html><body>502 Bad Gateway</body></html>", "text/html"),
        ResponseTemplate::new(200).set_body_bytes(vec![0xff, 0x00, 0x13, 0x37]),
        ResponseTemplate::new(200).set_body_raw("", "text/plain"),
        wechat_json(json!({ "errcode": 0, "errmsg": "ok" })),
        wechat_json(json!({ "openid": "o" })),
        wechat_json(json!({ "openid": "o", "session_key": "not-16-bytes" })),
        wechat_json(json!({ "openid": "o\r\nX-Evil: 1", "session_key": SESSION_KEY })),
    ] {
        wechat_answers(&app.wechat, answer).await;
        let reply = app.post_openid(&json!({ "code": "c" })).await;
        reply.assert_error(502, "upstream_error");
        assert!(reply.json().get("wechat_errcode").is_none());
    }
}

/// A redirect is not WeChat's answer: following it would send the login to wherever the
/// Location says, so it is reported as the non-200 status it is.
#[tokio::test]
async fn a_redirect_is_not_followed_and_gets_502() {
    let app = spawn_app().await;
    let elsewhere = format!("{}/elsewhere", app.wechat.uri());
    wechat_answers(
        &app.wechat,
        ResponseTemplate::new(302).insert_header("location", elsewhere.as_str()),
    )
    .await;
    Mock::given(path("/elsewhere"))
        .respond_with(wechat_json(
            json!({ "openid": "o_redirected", "session_key": SESSION_KEY }),
        ))
        .expect(0)
        .mount(&app.wechat)
        .await;

    let reply = app.post_openid(&json!({ "code": "c" })).await;

    reply.assert_error(502, "upstream_error");
    assert!(!reply.text.contains("o_redirected"), "{}", reply.text);
    app.wechat.verify().await;
}

/// The URL of a loopback port that nothing listens on.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
