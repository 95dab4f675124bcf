//! Load shedding: past the cap on concurrent WeChat calls, requests fail fast with 503
//! instead of queueing, and the routes that need no WeChat call keep answering.

use futures::future::join_all;
use serde_json::json;

use crate::held_wechat::held_wechat;
use crate::helpers::{Requests, spawn_app_with};

#[tokio::test]
async fn past_the_cap_logins_get_503_overloaded_while_health_and_sessions_answer() {
    let mut wechat = held_wechat().await;
    let app = spawn_app_with(&[
        ("WXLOGIN_WECHAT_BASE_URL", wechat.url.as_str()),
        ("WXLOGIN_WECHAT_MAX_CONCURRENT_CALLS", "2"),
        ("WXLOGIN_RATE_LIMIT_PER_MIN", "0"),
    ])
    .await;
    // One login that completes, for a token to look up while WeChat is saturated.
    let before = wechat.answer_a_login(&app.address, "before").await;
    let body: serde_json::Value = before.json().await.expect("JSON");
    let token = body["token"].as_str().expect("a token").to_owned();
    let held = [
        wechat.hold_a_login(&app.address, "held-1").await,
        wechat.hold_a_login(&app.address, "held-2").await,
    ];

    // Ten times the cap, at once.
    let bodies: Vec<_> = (0..20)
        .map(|n| json!({ "code": format!("extra-{n}") }))
        .collect();
    for reply in join_all(bodies.iter().map(|body| app.post_openid(body))).await {
        reply.assert_error(503, "overloaded");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    let health = app
        .send(app.http.get(format!("{}/healthz", app.address)))
        .await;
    assert_eq!(health.status, 200);
    let session = app.get_session(&token).await;
    assert_eq!(session.status, 200, "{}", session.text);

    wechat.release(2);
    for login in held {
        let response = login.await.expect("join").expect("answered");
        assert_eq!(response.status(), 200, "the held logins were not disturbed");
    }
    // With the calls done, the permits are back.
    let after = wechat.answer_a_login(&app.address, "after").await;
    assert_eq!(after.status(), 200);

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"wxlogin_wechat_calls_shed_total{api="code2session",app="default"} 20"#),
        "{metrics}"
    );
}
