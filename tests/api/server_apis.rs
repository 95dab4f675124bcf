//! `/wechat/phone_number` and `/wechat/check_session`, and the access_token manager they
//! share: single flight, expiry, one retry on a rejected token, and clear failures.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, body_partial_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const PHONE_ROUTE: &str = "/wechat/phone_number";
/// python3 -c 'import hmac,hashlib; print(hmac.new(b"AAECAwQFBgcICQoLDA0ODw==", b"", hashlib.sha256).hexdigest())'
pub const SESSION_KEY_HMAC: &str =
    "75c022993d64e3ac224c1c9d6f2b4c6eb53f22f6c7aa6be94428577d11d12fd5";

async fn logged_in() -> (TestApp, String) {
    let app = spawn_app().await;
    let token = app.login_as("login-code", "oPhoneUser").await;
    (app, token)
}

fn phone_answer(country_code: Value, appid: &str) -> ResponseTemplate {
    wechat_json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": "13800138000",
            "purePhoneNumber": "13800138000",
            "countryCode": country_code,
            "watermark": { "timestamp": 1_800_000_000, "appid": appid },
        },
    }))
}

/// Makes the phone API answer `response` to requests that carry `access_token`.
async fn phone_answers_with_token(
    wechat: &MockServer,
    access_token: &str,
    response: ResponseTemplate,
) {
    Mock::given(method("POST"))
        .and(path(PHONE_NUMBER))
        .and(query_param("access_token", access_token))
        .respond_with(response)
        .mount(wechat)
        .await;
}

async fn phone_answers(wechat: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(PHONE_NUMBER))
        .respond_with(response)
        .mount(wechat)
        .await;
}

async fn ask_phone(app: &TestApp, token: &str) -> Reply {
    app.post_as(token, PHONE_ROUTE, &json!({ "code": "phone-code" }))
        .await
}

/// The access_token each phone request carried, in order.
async fn tokens_sent_to_phone_api(wechat: &MockServer) -> Vec<String> {
    let requests = wechat.received_requests().await.expect("recorded");
    requests
        .iter()
        .filter(|r| r.url.path() == PHONE_NUMBER)
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_phone_code_gives_the_number_with_a_string_country_code() {
    let (app, token) = logged_in().await;
    stable_token_answers(&app.wechat, "AT-1", 7200).await;
    Mock::given(method("POST"))
        .and(path(PHONE_NUMBER))
        .and(query_param("access_token", "AT-1"))
        .and(body_json(json!({ "code": "phone-code" })))
        .respond_with(phone_answer(json!("86"), APPID))
        .mount(&app.wechat)
        .await;

    let reply = ask_phone(&app, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({ "phoneNumber": "13800138000", "purePhoneNumber": "13800138000", "countryCode": "86" })
    );
}

#[tokio::test]
async fn a_numeric_country_code_is_answered_as_a_string() {
    let (app, token) = logged_in().await;
    stable_token_answers(&app.wechat, "AT-1", 7200).await;
    phone_answers(&app.wechat, phone_answer(json!(86), APPID)).await;
    let reply = ask_phone(&app, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["countryCode"], "86");
}

#[tokio::test]
async fn a_phone_number_sealed_for_another_app_is_refused() {
    let (app, token) = logged_in().await;
    stable_token_answers(&app.wechat, "AT-1", 7200).await;
    phone_answers(&app.wechat, phone_answer(json!("86"), "wx_other_app")).await;
    let reply = ask_phone(&app, &token).await;
    reply.assert_error(502, "upstream_error");
    assert!(!reply.text.contains("13800138000"), "{}", reply.text);
}

#[tokio::test]
async fn phone_errcodes_map_as_the_login_errcodes_do() {
    let (app, token) = logged_in().await;
    stable_token_answers(&app.wechat, "AT-1", 7200).await;
    for (code, status, kind) in [
        (40029, 401, "invalid_code"),
        (45011, 429, "rate_limited"),
        (-1, 503, "upstream_busy"),
        (40013, 500, "misconfigured"),
    ] {
        app.wechat.reset().await;
        stable_token_answers(&app.wechat, "AT-1", 7200).await;
        phone_answers(&app.wechat, errcode(code)).await;
        ask_phone(&app, &token).await.assert_error(status, kind);
    }
    app.post_as(&token, PHONE_ROUTE, &json!({ "code": "" }))
        .await
        .assert_error(400, "missing_code");
}

#[tokio::test]
async fn check_session_signs_with_hmac_of_the_base64_key_and_reads_87009_as_stale() {
    let (app, token) = logged_in().await;
    stable_token_answers(&app.wechat, "AT-1", 7200).await;
    Mock::given(method("GET"))
        .and(path(CHECK_SESSION))
        .and(query_param("access_token", "AT-1"))
        .and(query_param("openid", "oPhoneUser"))
        .and(query_param("signature", SESSION_KEY_HMAC))
        .and(query_param("sig_method", "hmac_sha256"))
        .respond_with(wechat_json(json!({ "errcode": 0, "errmsg": "ok" })))
        .up_to_n_times(1)
        .mount(&app.wechat)
        .await;
    let reply = app.get_as(&token, "/wechat/check_session").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json(), json!({ "valid": true }));

    Mock::given(method("GET"))
        .and(path(CHECK_SESSION))
        .respond_with(errcode(87009))
        .mount(&app.wechat)
        .await;
    let reply = app.get_as(&token, "/wechat/check_session").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json(), json!({ "valid": false }));
}

#[tokio::test]
async fn a_hundred_concurrent_callers_share_one_stable_token_request() {
    let (app, token) = logged_in().await;
    // Slow enough that the callers pile up behind the first refresh.
    stable_token_answers_after(&app.wechat, "AT-1", Duration::from_millis(300)).await;
    phone_answers(&app.wechat, phone_answer(json!("86"), APPID)).await;

    let replies = join_all((0..100).map(|_| ask_phone(&app, &token))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(calls_to(&app.wechat, STABLE_TOKEN).await, 1);
    assert_eq!(calls_to(&app.wechat, PHONE_NUMBER).await, 100);
}

#[tokio::test]
async fn the_token_is_reused_until_shortly_before_it_expires_then_refreshed() {
    let (app, token) = logged_in().await;
    stable_token_answers_once(&app.wechat, "AT-1").await;
    stable_token_answers(&app.wechat, "AT-2", 7200).await;
    phone_answers(&app.wechat, phone_answer(json!("86"), APPID)).await;

    assert_eq!(ask_phone(&app, &token).await.status, 200);
    // Five minutes before WeChat's expiry is when the cached token stops being used.
    app.clock.advance(Duration::from_secs(7200 - 300 - 1));
    assert_eq!(ask_phone(&app, &token).await.status, 200);
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(ask_phone(&app, &token).await.status, 200);

    assert_eq!(calls_to(&app.wechat, STABLE_TOKEN).await, 2);
    assert_eq!(
        tokens_sent_to_phone_api(&app.wechat).await,
        ["AT-1", "AT-1", "AT-2"]
    );
}

#[tokio::test]
async fn a_rejected_token_is_replaced_and_the_call_retried_once() {
    let (app, token) = logged_in().await;
    stable_token_answers_once(&app.wechat, "AT-old").await;
    stable_token_answers(&app.wechat, "AT-new", 7200).await;
    phone_answers_with_token(&app.wechat, "AT-old", errcode(40001)).await;
    phone_answers_with_token(&app.wechat, "AT-new", phone_answer(json!("86"), APPID)).await;

    let reply = ask_phone(&app, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        tokens_sent_to_phone_api(&app.wechat).await,
        ["AT-old", "AT-new"]
    );
    assert_eq!(calls_to(&app.wechat, STABLE_TOKEN).await, 2);
}

#[tokio::test]
async fn a_token_rejected_again_after_the_retry_fails_without_a_loop() {
    let (app, token) = logged_in().await;
    stable_token_answers_once(&app.wechat, "AT-old").await;
    stable_token_answers(&app.wechat, "AT-new", 7200).await;
    phone_answers(&app.wechat, errcode(42001)).await;

    let reply = ask_phone(&app, &token).await;
    reply.assert_error(502, "upstream_error");
    assert_eq!(reply.json()["wechat_errcode"], 42001);
    assert_eq!(
        tokens_sent_to_phone_api(&app.wechat).await,
        ["AT-old", "AT-new"]
    );
    assert_eq!(calls_to(&app.wechat, STABLE_TOKEN).await, 2);
}

#[tokio::test]
async fn when_stable_token_repeats_a_rejected_token_one_forced_refresh_is_made() {
    let (app, token) = logged_in().await;
    Mock::given(method("POST"))
        .and(path(STABLE_TOKEN))
        .and(body_partial_json(json!({ "force_refresh": true })))
        .respond_with(wechat_json(
            json!({ "access_token": "AT-forced", "expires_in": 7200 }),
        ))
        .with_priority(1)
        .mount(&app.wechat)
        .await;
    Mock::given(method("POST"))
        .and(path(STABLE_TOKEN))
        .and(body_partial_json(json!({
            "grant_type": "client_credential",
            "appid": APPID,
            "secret": app.secret,
            "force_refresh": false,
        })))
        .respond_with(wechat_json(
            json!({ "access_token": "AT-stuck", "expires_in": 7200 }),
        ))
        .mount(&app.wechat)
        .await;
    phone_answers_with_token(&app.wechat, "AT-stuck", errcode(40001)).await;
    phone_answers_with_token(&app.wechat, "AT-forced", errcode(40001)).await;

    ask_phone(&app, &token)
        .await
        .assert_error(502, "upstream_error");
    // The forced token is rejected too. A normal refresh gives back the stuck one, which
    // is tried once; WeChat allows one forced refresh per 30 s, so there is none now.
    ask_phone(&app, &token)
        .await
        .assert_error(502, "upstream_error");

    let forced = app
        .wechat
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path() == STABLE_TOKEN)
        .filter(|r| String::from_utf8_lossy(&r.body).contains(r#""force_refresh":true"#))
        .count();
    assert_eq!(forced, 1);
    assert_eq!(
        tokens_sent_to_phone_api(&app.wechat).await,
        ["AT-stuck", "AT-forced", "AT-forced", "AT-stuck"]
    );
}

#[tokio::test]
async fn a_failing_token_endpoint_gives_a_clear_5xx() {
    let (app, token) = logged_in().await;
    for (answer, status, kind) in [
        (errcode(40125), 500, "misconfigured"),
        (errcode(40164), 500, "misconfigured"),
        (errcode(45009), 503, "access_token_unavailable"),
        (ResponseTemplate::new(502), 503, "access_token_unavailable"),
        (
            ResponseTemplate::new(200).set_body_raw("<html></html>", "text/html"),
            503,
            "access_token_unavailable",
        ),
    ] {
        app.wechat.reset().await;
        Mock::given(method("POST"))
            .and(path(STABLE_TOKEN))
            .respond_with(answer)
            .mount(&app.wechat)
            .await;
        let reply = ask_phone(&app, &token).await;
        reply.assert_error(status, kind);
        if status == 503 {
            assert_eq!(reply.header("retry-after"), Some("5"));
        }
        assert_eq!(calls_to(&app.wechat, PHONE_NUMBER).await, 0);
    }
}

#[tokio::test]
async fn a_hanging_token_endpoint_ends_in_a_503_not_a_hang() {
    let app = spawn_app_with(&[("WXLOGIN_WECHAT_TIMEOUT_MS", "200")]).await;
    let token = app.login_as("login-code", "oPhoneUser").await;
    stable_token_answers_after(&app.wechat, "AT-late", Duration::from_secs(30)).await;
    let (first, second) = tokio::join!(ask_phone(&app, &token), ask_phone(&app, &token));
    first.assert_error(503, "access_token_unavailable");
    second.assert_error(503, "access_token_unavailable");
}

#[tokio::test]
async fn login_never_asks_for_an_access_token() {
    let app = spawn_app().await;
    wechat_answers(&app.wechat, success("oNoToken", None)).await;
    Mock::given(method("POST"))
        .and(path(STABLE_TOKEN))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.wechat)
        .await;
    let reply = app.post_openid(&json!({ "code": "c" })).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(calls_to(&app.wechat, STABLE_TOKEN).await, 0);
}

#[tokio::test]
async fn neither_the_access_token_nor_the_secret_is_logged() {
    let (app, token) = logged_in().await;
    let rejected = format!("AT-{}", uuid::Uuid::new_v4().simple());
    let replacement = format!("AT-{}", uuid::Uuid::new_v4().simple());
    stable_token_answers_once(&app.wechat, &rejected).await;
    stable_token_answers(&app.wechat, &replacement, 7200).await;
    // A rejection and a success: the paths that log about tokens.
    phone_answers_with_token(&app.wechat, &rejected, errcode(40001)).await;
    phone_answers_with_token(&app.wechat, &replacement, phone_answer(json!("86"), APPID)).await;
    let reply = ask_phone(&app, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let logs = captured_logs();
    assert!(logs.contains("fetched a new access_token"));
    assert!(logs.contains("WeChat rejected the access_token"));
    for leaked in [&rejected, &replacement, &app.secret] {
        assert!(!logs.contains(leaked.as_str()), "logged: {leaked}");
        assert!(!reply.text.contains(leaked.as_str()));
    }
}
