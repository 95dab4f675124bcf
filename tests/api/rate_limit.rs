//! The per-client-IP token bucket on the login and phone routes.

use serde_json::json;

use crate::helpers::{Requests, TestApp, spawn_app_with, success, wechat_answers};

async fn login_from(
    app: &TestApp,
    code: &str,
    forwarded_for: Option<&str>,
) -> crate::helpers::Reply {
    let mut request = app
        .http
        .post(format!("{}/openid", app.address))
        .json(&json!({ "code": code }));
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    app.send(request).await
}

#[tokio::test]
async fn past_the_limit_a_client_gets_429_with_retry_after_and_wechat_is_not_asked() {
    let app = spawn_app_with(&[("WXLOGIN_RATE_LIMIT_PER_MIN", "3")]).await;
    wechat_answers(&app.wechat, success("oLimited", None)).await;

    for n in 0..3 {
        let reply = login_from(&app, &format!("c{n}"), None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let refused = login_from(&app, "c3", None).await;

    refused.assert_error(429, "rate_limited");
    let retry_after: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    // A token comes back every 20 s at 3 per minute.
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(
        crate::helpers::calls_to(&app.wechat, "/sns/jscode2session").await,
        3
    );

    // The other login route shares the client's bucket; session lookups are not limited.
    let url = format!("{}/wechat/applet_login?code=c4", app.address);
    app.send(app.http.get(url))
        .await
        .assert_error(429, "rate_limited");
    // A well-formed token that no login issued: looked up (401), not refused (429).
    let unknown = "A".repeat(43);
    assert_eq!(app.get_session(&unknown).await.status, 401);
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_from_an_untrusted_peer() {
    let app = spawn_app_with(&[("WXLOGIN_RATE_LIMIT_PER_MIN", "2")]).await;
    wechat_answers(&app.wechat, success("oSpoofer", None)).await;

    // A client that forges a new address each time is still one client.
    for (n, forged) in ["198.51.100.1", "198.51.100.2"].iter().enumerate() {
        let reply = login_from(&app, &format!("c{n}"), Some(forged)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    login_from(&app, "c2", Some("198.51.100.3"))
        .await
        .assert_error(429, "rate_limited");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let app = spawn_app_with(&[
        ("WXLOGIN_RATE_LIMIT_PER_MIN", "1"),
        ("WXLOGIN_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    wechat_answers(&app.wechat, success("oBehindProxy", None)).await;

    let first = login_from(&app, "c1", Some("203.0.113.1")).await;
    let second = login_from(&app, "c2", Some("203.0.113.2")).await;
    let again = login_from(&app, "c3", Some("203.0.113.1")).await;
    // What a client writes to the left of the proxy's own entry is not believed.
    let forged = login_from(&app, "c4", Some("192.0.2.99, 203.0.113.2")).await;

    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(second.status, 200, "{}", second.text);
    again.assert_error(429, "rate_limited");
    forged.assert_error(429, "rate_limited");
}

#[tokio::test]
async fn the_phone_route_is_limited_before_wechat_is_asked() {
    let app = spawn_app_with(&[("WXLOGIN_RATE_LIMIT_PER_MIN", "1")]).await;
    // The login spends the one token.
    let token = app.login_as("c1", "oPhone").await;

    let reply = app
        .post_as(&token, "/wechat/phone_number", &json!({ "code": "p1" }))
        .await;

    reply.assert_error(429, "rate_limited");
    assert_eq!(
        crate::helpers::calls_to(&app.wechat, crate::helpers::STABLE_TOKEN).await,
        0
    );
}

#[tokio::test]
async fn zero_turns_the_limit_off() {
    let app = spawn_app_with(&[("WXLOGIN_RATE_LIMIT_PER_MIN", "0")]).await;
    wechat_answers(&app.wechat, success("oUnlimited", None)).await;

    for n in 0..50 {
        let reply = login_from(&app, &format!("c{n}"), None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}
