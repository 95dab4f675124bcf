use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn login_trades_the_code_for_a_token_asking_wechat_with_our_credentials() {
    let app = spawn_app().await;
    Mock::given(method("GET"))
        .and(path(CODE2SESSION))
        .and(query_param("appid", APPID))
        .and(query_param("secret", app.secret.as_str()))
        .and(query_param("js_code", "081code"))
        .and(query_param("grant_type", "authorization_code"))
        .respond_with(success("oUser0000000000000000000000A", None))
        .expect(1)
        .mount(&app.wechat)
        .await;

    let reply = app.post_openid(&json!({ "code": "081code" })).await;

    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["openid"], "oUser0000000000000000000000A");
    assert_eq!(body["expires_in"], 7 * 24 * 3600);
    assert!(
        body.get("unionid").is_none(),
        "no unionid unless WeChat sent one: {body}"
    );
    assert!(body["token"].is_string());
}

#[tokio::test]
async fn login_passes_on_the_unionid_when_wechat_sends_one() {
    let app = spawn_app().await;
    wechat_answers(&app.wechat, success("oUser1", Some("uUnion1"))).await;

    let body = app.post_openid(&json!({ "code": "c" })).await.json();

    assert_eq!(body["openid"], "oUser1");
    assert_eq!(body["unionid"], "uUnion1");
}

#[tokio::test]
async fn success_is_recognised_with_errcode_absent_or_zero_and_unknown_fields_ignored() {
    let app = spawn_app().await;
    for answer in [
        json!({ "openid": "oA", "session_key": SESSION_KEY }),
        json!({ "openid": "oA", "session_key": SESSION_KEY, "errcode": 0, "errmsg": "ok" }),
        json!({ "openid": "oA", "session_key": SESSION_KEY, "expires_in": 7200, "some_new_field": [1] }),
    ] {
        wechat_answers(&app.wechat, wechat_json(answer.clone())).await;
        let reply = app.post_openid(&json!({ "code": "c" })).await;
        assert_eq!(reply.status, 200, "{answer}: {}", reply.text);
        assert_eq!(reply.json()["openid"], "oA");
    }
}

#[tokio::test]
async fn wechat_json_is_parsed_whatever_its_content_type_says() {
    let app = spawn_app().await;
    let body = json!({ "openid": "oCt", "session_key": SESSION_KEY }).to_string();
    for answer in [
        ResponseTemplate::new(200).set_body_raw(body.clone(), "text/plain"),
        ResponseTemplate::new(200).set_body_raw(body.clone(), "application/json; encoding=utf-8"),
        ResponseTemplate::new(200).set_body_bytes(body.clone()),
    ] {
        wechat_answers(&app.wechat, answer).await;
        let reply = app.post_openid(&json!({ "code": "c" })).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json()["openid"], "oCt");
    }
}

#[tokio::test]
async fn applet_login_takes_the_code_as_a_query_as_json_and_as_a_form() {
    let app = spawn_app().await;
    Mock::given(path(CODE2SESSION))
        .and(query_param("js_code", "shape-code"))
        .respond_with(success("oShapes", None))
        .expect(3)
        .mount(&app.wechat)
        .await;
    let url = format!("{}/wechat/applet_login", app.address);

    let as_query = app
        .send(app.http.get(&url).query(&[("code", "shape-code")]))
        .await;
    let as_json = app
        .send(app.http.post(&url).json(&json!({ "code": "shape-code" })))
        .await;
    let as_form = app
        .send(
            app.http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("code=shape-code"),
        )
        .await;

    for reply in [as_query, as_json, as_form] {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json()["openid"], "oShapes");
    }
}

#[tokio::test]
async fn tokens_are_opaque_256_bit_url_safe_and_new_on_every_login() {
    let app = spawn_app().await;
    let first = app.login_as("code-1", "oSameUser").await;
    let second = app.login_as("code-2", "oSameUser").await;

    assert_ne!(first, second, "two logins of one user get two tokens");
    for token in [&first, &second] {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .expect("base64url without padding");
        assert_eq!(bytes.len(), 32);
        assert!(!token.contains("oSameUser"));
        // The tutorials' MD5(openid + session_key) "login state" is exactly what this isn't.
        assert_ne!(token.len(), 32, "not an MD5 hex digest");
    }
}

#[tokio::test]
async fn the_session_key_appears_in_no_response() {
    let app = spawn_app().await;
    wechat_answers(&app.wechat, success("oKeyHolder", Some("uKeyHolder"))).await;

    let login = app.post_openid(&json!({ "code": "c" })).await;
    let token = login.json()["token"].as_str().expect("token").to_owned();
    let session = app.get_session(&token).await;

    for reply in [&login, &session] {
        assert_eq!(reply.status, 200);
        assert!(!reply.text.contains(SESSION_KEY), "{}", reply.text);
        assert!(!reply.text.contains("session_key"), "{}", reply.text);
    }
}
