//! Answers that carry a token or personal data are never cacheable, error or not
//! (RFC 6749 §5.1, ASVS V8.2.1); those that depend on the token say so in `Vary`.

use serde_json::json;

use crate::helpers::*;

fn assert_not_storable(reply: &Reply, what: &str) {
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
    assert_eq!(reply.header("pragma"), Some("no-cache"), "{what}");
}

fn assert_varies_by_token(reply: &Reply, what: &str) {
    assert_not_storable(reply, what);
    let vary = reply
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    assert!(
        vary.to_ascii_lowercase().contains("authorization"),
        "{what}: Vary {vary:?}"
    );
}

#[tokio::test]
async fn every_login_answer_is_not_storable_success_or_error() {
    let app = spawn_app().await;
    wechat_answers(&app.wechat, success("oNoStore", None)).await;
    let query = format!("{}/wechat/applet_login?code=get-code", app.address);
    let form = format!("{}/wechat/applet_login", app.address);

    let replies = [
        (
            "POST /openid",
            app.post_openid(&json!({ "code": "json-code" })).await,
        ),
        ("GET ?code=", app.send(app.http.get(&query)).await),
        (
            "POST form",
            app.send(
                app.http
                    .post(&form)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body("code=form-code"),
            )
            .await,
        ),
        ("no code", app.post_openid(&json!({})).await),
    ];
    wechat_answers(&app.wechat, errcode(40029)).await;
    let rejected = app.post_openid(&json!({ "code": "bad" })).await;

    for (what, reply) in &replies {
        assert_not_storable(reply, what);
    }
    assert_eq!(replies[0].1.status, 200);
    assert_eq!(replies[3].1.status, 400);
    assert_eq!(rejected.status, 401);
    assert_not_storable(&rejected, "a WeChat refusal");
}

#[tokio::test]
async fn session_auth_and_user_data_answers_are_not_storable_and_vary_by_token() {
    let app = spawn_app().await;
    let token = app.login_as("c-vary", "oVaryUser").await;

    let session = app.get_session(&token).await;
    let no_session = app.get_session(&"A".repeat(43)).await;
    let auth = app.get_as(&token, "/auth").await;
    let no_auth = app
        .send(app.http.get(format!("{}/auth", app.address)))
        .await;
    let decrypt = app
        .post_as(
            &token,
            "/wechat/decrypt",
            &json!({ "encryptedData": "AAAA", "iv": "AAAA" }),
        )
        .await;
    let signature = app
        .post_as(
            &token,
            "/wechat/verify_signature",
            &json!({ "rawData": "{}", "signature": "x" }),
        )
        .await;

    assert_eq!(session.status, 200);
    assert_eq!(no_session.status, 401);
    assert_eq!(auth.status, 200);
    assert_eq!(no_auth.status, 401);
    for (what, reply) in [
        ("GET /session", &session),
        ("GET /session, dead token", &no_session),
        ("GET /auth", &auth),
        ("GET /auth, no token", &no_auth),
        ("POST /wechat/decrypt", &decrypt),
        ("POST /wechat/verify_signature", &signature),
    ] {
        assert_varies_by_token(reply, what);
    }
}
