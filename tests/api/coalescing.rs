use std::time::Duration;

use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::{path, query_param};

use crate::helpers::*;

/// Long enough that two requests sent together are both still waiting on WeChat, even on
/// a loaded machine. Whether the second request has joined the first is not observable from
/// outside, so a slow WeChat is what makes them overlap.
const SLOW_WECHAT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn two_concurrent_logins_with_one_code_make_one_wechat_call_and_share_its_session() {
    let app = spawn_app().await;
    Mock::given(path(CODE2SESSION))
        .and(query_param("js_code", "double-tap"))
        .respond_with(success("oDoubleTap", None).set_delay(SLOW_WECHAT))
        .expect(1)
        .mount(&app.wechat)
        .await;
    let body = json!({ "code": "double-tap" });

    let (first, second) = tokio::join!(app.post_openid(&body), app.post_openid(&body));

    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(first.json()["token"], second.json()["token"]);
    assert!(
        app.metrics()
            .await
            .contains("wxlogin_login_codes_coalesced_total 1")
    );
    assert_eq!(
        app.get_session(first.json()["token"].as_str().expect("token"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn concurrent_duplicates_share_a_failure_too() {
    let app = spawn_app().await;
    Mock::given(path(CODE2SESSION))
        .respond_with(errcode(40029).set_delay(SLOW_WECHAT))
        .expect(1)
        .mount(&app.wechat)
        .await;
    let body = json!({ "code": "bad-double-tap" });

    let (first, second) = tokio::join!(app.post_openid(&body), app.post_openid(&body));

    first.assert_error(401, "invalid_code");
    second.assert_error(401, "invalid_code");
}

#[tokio::test]
async fn a_code_reused_after_its_login_finished_goes_to_wechat_again() {
    let app = spawn_app().await;
    // Our stub does not enforce single use: a replayed session would show as a repeated token.
    Mock::given(path(CODE2SESSION))
        .respond_with(success("oReuse", None))
        .expect(2)
        .mount(&app.wechat)
        .await;
    let body = json!({ "code": "reused" });

    let first = app.post_openid(&body).await.json();
    let second = app.post_openid(&body).await.json();

    assert_ne!(
        first["token"], second["token"],
        "coalescing covers in-flight requests only"
    );
}

#[tokio::test]
async fn concurrent_logins_with_different_codes_are_not_coalesced() {
    let app = spawn_app().await;
    Mock::given(path(CODE2SESSION))
        .respond_with(success("oMany", None).set_delay(SLOW_WECHAT))
        .expect(2)
        .mount(&app.wechat)
        .await;

    let (code_a, code_b) = (json!({ "code": "a" }), json!({ "code": "b" }));
    let (a, b) = tokio::join!(app.post_openid(&code_a), app.post_openid(&code_b));

    assert_ne!(a.json()["token"], b.json()["token"]);
}
