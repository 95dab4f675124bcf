//! Concurrent logins with one code: one WeChat call, an answer shared, a session each.

use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::path;

use crate::held_wechat::held_wechat;
use crate::helpers::*;

/// A wxlogin whose WeChat holds every login until the test releases it.
async fn app_on(wechat_url: &str) -> TestApp {
    spawn_app_with(&[("WXLOGIN_WECHAT_BASE_URL", wechat_url)]).await
}

/// Whether the scrape itself is the only request in flight: a request whose client hung up
/// has been cancelled at the server.
async fn only_the_scrape_in_flight(app: &TestApp) -> bool {
    metric_is(app, "wxlogin_http_requests_in_flight", 1).await
}

/// Whether `/metrics` shows `series` with `value`.
async fn metric_is(app: &TestApp, series: &str, value: u64) -> bool {
    app.metrics().await.contains(&format!("{series} {value}"))
}

#[tokio::test]
async fn two_overlapping_logins_with_one_code_make_one_wechat_call_and_get_a_session_each() {
    let mut wechat = held_wechat().await;
    let app = app_on(&wechat.url).await;
    let first = wechat.hold_a_login(&app.address, "double-tap").await;
    let second = tokio::spawn({
        let (http, url) = (app.http.clone(), format!("{}/openid", app.address));
        async move {
            http.post(url)
                .json(&json!({ "code": "double-tap" }))
                .send()
                .await
        }
    });
    eventually("the second login joined the first", || {
        metric_is(&app, "wxlogin_login_codes_coalesced_total", 1)
    })
    .await;

    wechat.release(1);
    let first = Reply::read(first.await.expect("join").expect("answered")).await;
    let second = Reply::read(second.await.expect("join").expect("answered")).await;

    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(wechat.calls(), 1);
    assert_eq!(first.json()["openid"], second.json()["openid"]);
    let (a, b) = (
        first.json()["token"].clone(),
        second.json()["token"].clone(),
    );
    assert_ne!(
        a, b,
        "one session per authentication: never one token for two requests"
    );
    let (a, b) = (a.as_str().expect("token"), b.as_str().expect("token"));
    assert_eq!(app.delete_session(a).await.status, 204);
    assert_eq!(
        app.get_session(b).await.status,
        200,
        "one caller's logout does not end the other's session"
    );
}

#[tokio::test]
async fn a_login_whose_client_hung_up_still_serves_the_request_that_joined_it() {
    let mut wechat = held_wechat().await;
    let app = app_on(&wechat.url).await;
    let gone = wechat.hold_a_login(&app.address, "hung-up").await;
    gone.abort();
    eventually("the first request was cancelled at the server", || {
        only_the_scrape_in_flight(&app)
    })
    .await;

    let joined = tokio::spawn({
        let (http, url) = (app.http.clone(), format!("{}/openid", app.address));
        async move {
            http.post(url)
                .json(&json!({ "code": "hung-up" }))
                .send()
                .await
        }
    });
    eventually(
        "the second login joined the call, or made its own",
        || async {
            wechat.calls() > 1 || metric_is(&app, "wxlogin_login_codes_coalesced_total", 1).await
        },
    )
    .await;
    wechat.release(2);
    let joined = Reply::read(joined.await.expect("join").expect("answered")).await;

    assert_eq!(joined.status, 200, "{}", joined.text);
    assert!(joined.json()["token"].is_string());
    assert_eq!(
        wechat.calls(),
        1,
        "a second call would spend the code twice: 40163 from a real WeChat"
    );
}

#[tokio::test]
async fn a_login_everyone_walked_away_from_finishes_and_is_counted_as_abandoned() {
    let mut wechat = held_wechat().await;
    let app = app_on(&wechat.url).await;
    let gone = wechat.hold_a_login(&app.address, "abandoned").await;
    gone.abort();
    eventually("the request was cancelled at the server", || {
        only_the_scrape_in_flight(&app)
    })
    .await;

    wechat.release(1);

    eventually("the abandoned login is counted", || {
        metric_is(&app, "wxlogin_login_abandoned_total", 1)
    })
    .await;
    assert_eq!(wechat.calls(), 1);
}

#[tokio::test]
async fn overlapping_duplicates_share_a_failure_too() {
    let mut wechat = held_wechat().await;
    let app = app_on(&wechat.url).await;
    let first = wechat.hold_a_login(&app.address, "bad-double-tap").await;
    let second = tokio::spawn({
        let (http, url) = (app.http.clone(), format!("{}/openid", app.address));
        async move {
            http.post(url)
                .json(&json!({ "code": "bad-double-tap" }))
                .send()
                .await
        }
    });
    eventually("the second login joined the first", || {
        metric_is(&app, "wxlogin_login_codes_coalesced_total", 1)
    })
    .await;

    wechat.fail_held_with(40029);
    wechat.release(1);

    for reply in [first.await, second.await] {
        let reply = Reply::read(reply.expect("join").expect("answered")).await;
        reply.assert_error(401, "invalid_code");
    }
    assert_eq!(wechat.calls(), 1);
}

#[tokio::test]
async fn a_code_reused_after_its_login_finished_goes_to_wechat_again() {
    let app = spawn_app().await;
    // Our stub does not enforce single use: a replayed answer would show as no second call.
    Mock::given(path(CODE2SESSION))
        .respond_with(success("oReuse", None))
        .expect(2)
        .mount(&app.wechat)
        .await;
    let body = json!({ "code": "reused" });

    let first = app.post_openid(&body).await.json();
    let second = app.post_openid(&body).await.json();

    assert_ne!(first["token"], second["token"]);
}

#[tokio::test]
async fn overlapping_logins_with_different_codes_are_not_coalesced() {
    let mut wechat = held_wechat().await;
    let app = app_on(&wechat.url).await;
    let a = wechat.hold_a_login(&app.address, "a").await;
    let b = wechat.hold_a_login(&app.address, "b").await;

    wechat.release(2);

    for reply in [a.await, b.await] {
        let reply = Reply::read(reply.expect("join").expect("answered")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert_eq!(wechat.calls(), 2);
}
