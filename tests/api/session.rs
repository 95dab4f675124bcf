use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn a_token_tells_who_it_belongs_to() {
    let app = spawn_app().await;
    wechat_answers(&app.wechat, success("oWho", Some("uWho"))).await;
    let token = app
        .post_openid(&serde_json::json!({ "code": "c" }))
        .await
        .json()["token"]
        .as_str()
        .expect("token")
        .to_owned();

    let reply = app.get_session(&token).await;

    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["openid"], "oWho");
    assert_eq!(body["unionid"], "uWho");
    assert_eq!(body["expires_in"], 7 * 24 * 3600);
}

#[tokio::test]
async fn a_request_without_a_token_gets_401_with_a_bearer_challenge() {
    let app = spawn_app().await;

    let reply = app
        .send(app.http.get(format!("{}/session", app.address)))
        .await;

    reply.assert_error(401, "invalid_token");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="wxlogin""#)
    );
}

#[tokio::test]
async fn unknown_malformed_and_non_bearer_tokens_get_401_invalid_token() {
    let app = spawn_app().await;
    let url = format!("{}/session", app.address);
    let never_issued = "A".repeat(43);
    for request in [
        app.http.get(&url).bearer_auth(&never_issued),
        app.http.get(&url).bearer_auth("short"),
        app.http
            .get(&url)
            .bearer_auth(format!("{never_issued}extra")),
        app.http.get(&url).header("Authorization", "Bearer"),
        app.http.get(&url).basic_auth("user", Some("pass")),
    ] {
        let reply = app.send(request).await;
        reply.assert_error(401, "invalid_token");
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer"))
        );
    }
}

#[tokio::test]
async fn logout_revokes_the_token() {
    let app = spawn_app().await;
    let token = app.login_as("c", "oLeaving").await;
    let other = app.login_as("c2", "oLeaving").await;

    let revoked = app.delete_session(&token).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    assert!(revoked.text.is_empty());

    let after = app.get_session(&token).await;
    after.assert_error(401, "invalid_token");
    assert_eq!(
        after.header("www-authenticate"),
        Some(r#"Bearer realm="wxlogin", error="invalid_token""#)
    );
    app.delete_session(&token)
        .await
        .assert_error(401, "invalid_token");
    assert_eq!(
        app.get_session(&other).await.status,
        200,
        "the user's other session lives on"
    );
}

#[tokio::test]
async fn sessions_expire_after_their_ttl() {
    let app = spawn_app_with(&[("WXLOGIN_SESSION_TTL_SECS", "60")]).await;
    let token = app.login_as("c", "oShortLived").await;

    app.clock.advance(Duration::from_secs(45));
    let reply = app.get_session(&token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["expires_in"], 15);

    app.clock.advance(Duration::from_secs(15));
    app.get_session(&token)
        .await
        .assert_error(401, "invalid_token");
    app.delete_session(&token)
        .await
        .assert_error(401, "invalid_token");
}
