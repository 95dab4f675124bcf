//! `GET /auth`, the gateway's forward-auth check: 200 with the user in headers, or 401.

use serde_json::json;
use wiremock::ResponseTemplate;

use crate::helpers::{Requests, TestApp, spawn_app, spawn_app_with, success, wechat_answers};

async fn auth(app: &TestApp, request: reqwest::RequestBuilder) -> crate::helpers::Reply {
    app.send(request).await
}

fn auth_url(app: &TestApp) -> String {
    format!("{}/auth", app.address)
}

async fn login_with_unionid(app: &TestApp, code: &str) -> String {
    wechat_answers(&app.wechat, success("oGateway", Some("uGateway"))).await;
    let reply = app.post_openid(&json!({ "code": code })).await;
    reply.json()["token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn a_live_token_gets_200_with_the_openid_and_unionid_headers() {
    let app = spawn_app().await;
    let token = login_with_unionid(&app, "c1").await;

    let reply = auth(&app, app.http.get(auth_url(&app)).bearer_auth(&token)).await;

    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-wxlogin-openid"), Some("oGateway"));
    assert_eq!(reply.header("x-wxlogin-unionid"), Some("uGateway"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(!reply.text.contains(&token), "the token is not echoed");

    // Envoy and Traefik ask with the method of the request they guard.
    let post = auth(&app, app.http.post(auth_url(&app)).bearer_auth(&token)).await;
    assert_eq!(post.status, 200);
    assert_eq!(post.header("x-wxlogin-openid"), Some("oGateway"));
}

#[tokio::test]
async fn a_user_without_unionid_gets_no_unionid_header() {
    let app = spawn_app().await;
    let token = app.login_as("c1", "oNoUnion").await;

    let reply = auth(&app, app.http.get(auth_url(&app)).bearer_auth(&token)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-wxlogin-openid"), Some("oNoUnion"));
    assert_eq!(reply.header("x-wxlogin-unionid"), None);
}

#[tokio::test]
async fn no_token_a_bad_token_or_a_revoked_one_gets_401_and_no_identity() {
    let app = spawn_app().await;
    let token = app.login_as("c1", "oRevoked").await;

    let anonymous = auth(&app, app.http.get(auth_url(&app))).await;
    anonymous.assert_error(401, "invalid_token");
    assert!(anonymous.header("www-authenticate").is_some());

    let forged = "A".repeat(43);
    for bad in ["nonsense", forged.as_str()] {
        let reply = auth(&app, app.http.get(auth_url(&app)).bearer_auth(bad)).await;
        reply.assert_error(401, "invalid_token");
        assert_eq!(reply.header("x-wxlogin-openid"), None);
    }

    assert_eq!(app.delete_session(&token).await.status, 204);
    let revoked = auth(&app, app.http.get(auth_url(&app)).bearer_auth(&token)).await;
    revoked.assert_error(401, "invalid_token");
    assert_eq!(revoked.header("x-wxlogin-openid"), None);
}

#[tokio::test]
async fn the_token_may_come_in_the_configured_cookie() {
    let app = spawn_app_with(&[("WXLOGIN_AUTH_COOKIE", "wx_session")]).await;
    let token = app.login_as("c1", "oCookie").await;

    let with_cookie = app
        .http
        .get(auth_url(&app))
        .header("cookie", format!("theme=dark; wx_session={token}; lang=zh"));
    let reply = auth(&app, with_cookie).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-wxlogin-openid"), Some("oCookie"));

    let other_cookie = app
        .http
        .get(auth_url(&app))
        .header("cookie", format!("session={token}"));
    auth(&app, other_cookie)
        .await
        .assert_error(401, "invalid_token");

    let bad_cookie = app
        .http
        .get(auth_url(&app))
        .header("cookie", "wx_session=forged");
    auth(&app, bad_cookie)
        .await
        .assert_error(401, "invalid_token");
}

#[tokio::test]
async fn without_a_configured_cookie_a_cookie_token_is_not_accepted() {
    let app = spawn_app().await;
    let token = app.login_as("c1", "oCookie").await;

    let with_cookie = app
        .http
        .get(auth_url(&app))
        .header("cookie", format!("wx_session={token}"));
    auth(&app, with_cookie)
        .await
        .assert_error(401, "invalid_token");
}

#[tokio::test]
async fn auth_makes_no_wechat_call() {
    let app = spawn_app().await;
    let token = app.login_as("c1", "oQuiet").await;
    wechat_answers(&app.wechat, ResponseTemplate::new(500)).await;

    let reply = auth(&app, app.http.get(auth_url(&app)).bearer_auth(&token)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        crate::helpers::calls_to(&app.wechat, "/sns/jscode2session").await,
        0
    );
}
