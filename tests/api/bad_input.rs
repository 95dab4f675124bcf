use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::any;

use crate::helpers::*;

/// A stub that fails the test if anything reaches WeChat.
async fn spawn_app_that_must_not_call_wechat() -> TestApp {
    let app = spawn_app().await;
    Mock::given(any())
        .respond_with(success("oNever", None))
        .expect(0)
        .mount(&app.wechat)
        .await;
    app
}

#[tokio::test]
async fn missing_empty_blank_oversized_and_odd_codes_get_400() {
    let app = spawn_app_that_must_not_call_wechat().await;
    for (body, kind) in [
        (json!({}), "missing_code"),
        (json!({ "code": null }), "missing_code"),
        (json!({ "code": "" }), "missing_code"),
        (json!({ "code": "   " }), "missing_code"),
        (json!({ "code": "x".repeat(129) }), "malformed_code"),
        (json!({ "code": "two words" }), "malformed_code"),
        (json!({ "code": "line\nbreak" }), "malformed_code"),
        (json!({ "code": 42 }), "invalid_body"),
        (json!({ "code": ["x"] }), "invalid_body"),
        (json!("code"), "invalid_body"),
    ] {
        app.post_openid(&body).await.assert_error(400, kind);
    }
}

#[tokio::test]
async fn applet_login_rejects_a_missing_code_in_every_shape() {
    let app = spawn_app_that_must_not_call_wechat().await;
    let url = format!("{}/wechat/applet_login", app.address);
    let form = |body: &'static str| {
        app.http
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    };
    for request in [
        app.http.get(&url),
        app.http.get(format!("{url}?code=")),
        app.http.get(format!("{url}?code={}", "y".repeat(129))),
        app.http.post(&url).json(&json!({ "code": "" })),
        form(""),
        form("code="),
        form("other=1"),
    ] {
        let reply = app.send(request).await;
        assert_eq!(reply.status, 400, "{}", reply.text);
        assert!(
            ["missing_code", "malformed_code"]
                .contains(&reply.json()["error"].as_str().unwrap_or(""))
        );
    }
}

#[tokio::test]
async fn malformed_json_gets_400() {
    let app = spawn_app_that_must_not_call_wechat().await;
    let url = format!("{}/openid", app.address);
    for body in [r#"{"code":"#, "", "not json", r#"{"code":"a"} trailing"#] {
        let reply = app
            .send(
                app.http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body),
            )
            .await;
        reply.assert_error(400, "malformed_json");
    }
}

#[tokio::test]
async fn a_wrong_or_missing_content_type_gets_415() {
    let app = spawn_app_that_must_not_call_wechat().await;
    let url = format!("{}/openid", app.address);
    let body = r#"{"code":"abc"}"#;
    for content_type in [
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = app.http.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        app.send(request)
            .await
            .assert_error(415, "unsupported_media_type");
    }
}

#[tokio::test]
async fn a_body_over_16_kib_gets_413() {
    let app = spawn_app_that_must_not_call_wechat().await;
    let big_json = json!({ "code": "c", "padding": "p".repeat(17 * 1024) });
    app.post_openid(&big_json)
        .await
        .assert_error(413, "payload_too_large");

    let url = format!("{}/wechat/applet_login", app.address);
    let big_form = format!("code=c&padding={}", "p".repeat(17 * 1024));
    let reply = app
        .send(
            app.http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(big_form),
        )
        .await;
    reply.assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_get_404_and_wrong_methods_get_405() {
    let app = spawn_app_that_must_not_call_wechat().await;
    let base = &app.address;
    app.send(app.http.get(format!("{base}/nowhere")))
        .await
        .assert_error(404, "not_found");
    app.send(app.http.post(format!("{base}/")))
        .await
        .assert_error(404, "not_found");
    let reply = app.send(app.http.get(format!("{base}/openid"))).await;
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("POST"));
    app.send(app.http.put(format!("{base}/session")))
        .await
        .assert_error(405, "method_not_allowed");
    app.send(app.http.delete(format!("{base}/wechat/applet_login")))
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_kept() {
    let app = spawn_app_that_must_not_call_wechat().await;
    let mut seen = std::collections::HashSet::new();
    for path in ["/healthz", "/nowhere", "/session", "/healthz"] {
        let reply = app
            .send(app.http.get(format!("{}{path}", app.address)))
            .await;
        let id = reply.header("x-request-id").expect("x-request-id");
        let uuid = uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("{path}: {id}"));
        assert_eq!(uuid.get_version_num(), 4, "{path}: {id}");
        assert!(seen.insert(id.to_owned()), "{path}: {id} again");
    }
    let reply = app
        .send(
            app.http
                .get(format!("{}/healthz", app.address))
                .header("x-request-id", "from-gateway-1"),
        )
        .await;
    assert_eq!(reply.header("x-request-id"), Some("from-gateway-1"));
}

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    let reply = app
        .send(app.http.get(format!("{}/healthz", app.address)))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "ok");
}
