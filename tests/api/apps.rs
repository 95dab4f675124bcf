//! Several mini-programs in one deployment: each app's own WeChat calls, sessions bound to
//! their app, isolation at the gateway, and an access_token per app.

use serde_json::json;
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::held_wechat::held_wechat;
use crate::helpers::*;

const SHOP: (&str, &str) = ("shop", "wx_shop_appid");
const CLUB: (&str, &str) = ("club", "wx_club_appid");

/// A WeChat that logs in `openid` only when a call carries `app`'s appid and secret.
async fn answers_for(app: &TestApp, which: usize, openid: &str) {
    let under_test = &app.apps[which];
    Mock::given(method("GET"))
        .and(path(CODE2SESSION))
        .and(query_param("appid", under_test.appid.as_str()))
        .and(query_param("secret", under_test.secret.as_str()))
        .respond_with(success(openid, Some("uTheSamePerson")))
        .mount(&app.wechat)
        .await;
}

async fn login_at(app: &TestApp, route: &str, code: &str) -> Reply {
    let url = format!("{}{route}", app.address);
    app.send(app.http.post(url).json(&json!({ "code": code })))
        .await
}

async fn two_apps() -> TestApp {
    let app = spawn_apps(&[SHOP, CLUB], &[]).await;
    answers_for(&app, 0, "oShopUser").await;
    answers_for(&app, 1, "oClubUser").await;
    app
}

fn token_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn each_app_logs_in_with_its_own_appid_and_secret_by_name_or_by_appid() {
    let app = two_apps().await;

    let shop = login_at(&app, "/apps/shop/openid", "c1").await;
    let club = login_at(&app, "/apps/club/wechat/applet_login", "c2").await;
    let by_appid = login_at(&app, "/apps/wx_club_appid/openid", "c3").await;

    assert_eq!(shop.status, 200, "{}", shop.text);
    assert_eq!(shop.json()["openid"], "oShopUser");
    assert_eq!(club.json()["openid"], "oClubUser");
    assert_eq!(by_appid.json()["openid"], "oClubUser");
    assert_eq!(calls_to(&app.wechat, CODE2SESSION).await, 3);
}

#[tokio::test]
async fn without_a_default_app_the_unprefixed_routes_and_unknown_apps_answer_unknown_app() {
    let app = two_apps().await;

    let unprefixed = login_at(&app, "/openid", "c1").await;
    let unknown = login_at(&app, "/apps/nope/openid", "c2").await;
    let query = app
        .send(
            app.http
                .get(format!("{}/wechat/applet_login?code=c3", app.address)),
        )
        .await;

    unprefixed.assert_error(404, "unknown_app");
    assert!(
        unprefixed.text.contains("/apps/{app}/"),
        "{}",
        unprefixed.text
    );
    unknown.assert_error(404, "unknown_app");
    query.assert_error(404, "unknown_app");
    assert_eq!(calls_to(&app.wechat, CODE2SESSION).await, 0);
}

#[tokio::test]
async fn an_app_named_default_serves_the_unprefixed_routes() {
    let app = spawn_apps(&[("default", "wx_main_appid"), CLUB], &[]).await;
    answers_for(&app, 0, "oMainUser").await;

    let reply = login_at(&app, "/openid", "c1").await;

    assert_eq!(reply.json()["openid"], "oMainUser");
}

#[tokio::test]
async fn a_session_says_its_app_and_the_app_routes_refuse_another_apps_token() {
    let app = two_apps().await;
    let shop = token_of(&login_at(&app, "/apps/shop/openid", "c1").await);
    let club = token_of(&login_at(&app, "/apps/club/openid", "c2").await);

    let session = app.get_as(&shop, "/session").await;
    assert_eq!(session.status, 200, "{}", session.text);
    assert_eq!(session.json()["app"], "shop");
    assert_eq!(session.json()["appid"], "wx_shop_appid");
    assert_eq!(session.json()["unionid"], "uTheSamePerson");
    assert_eq!(app.get_as(&shop, "/apps/shop/session").await.status, 200);
    app.get_as(&club, "/apps/shop/session")
        .await
        .assert_error(401, "invalid_token");
    app.get_as(&shop, "/apps/wx_club_appid/session")
        .await
        .assert_error(401, "invalid_token");

    let auth = app.get_as(&club, "/auth").await;
    assert_eq!(auth.status, 200);
    assert_eq!(auth.header("x-wxlogin-app"), Some("club"));
    assert_eq!(auth.header("x-wxlogin-appid"), Some("wx_club_appid"));
    assert_eq!(auth.header("x-wxlogin-openid"), Some("oClubUser"));
    assert_eq!(app.get_as(&club, "/apps/club/auth").await.status, 200);
    let foreign = app.get_as(&club, "/apps/shop/auth").await;
    foreign.assert_error(401, "invalid_token");
    assert_eq!(foreign.header("x-wxlogin-openid"), None);
}

#[tokio::test]
async fn one_code_sent_to_two_apps_is_two_logins() {
    let wechat = held_wechat().await;
    let app = spawn_apps(&[SHOP, CLUB], &[("WXLOGIN_WECHAT_BASE_URL", &wechat.url)]).await;
    let to_shop = tokio::spawn({
        let (http, url) = (
            app.http.clone(),
            format!("{}/apps/shop/openid", app.address),
        );
        async move {
            http.post(url)
                .json(&json!({ "code": "one-code" }))
                .send()
                .await
        }
    });
    eventually("the shop's login reached WeChat", || async {
        wechat.calls() == 1
    })
    .await;
    let to_club = tokio::spawn({
        let (http, url) = (
            app.http.clone(),
            format!("{}/apps/club/openid", app.address),
        );
        async move {
            http.post(url)
                .json(&json!({ "code": "one-code" }))
                .send()
                .await
        }
    });
    eventually("the club's login reached WeChat too", || async {
        wechat.calls() == 2
    })
    .await;

    wechat.release(2);
    for login in [to_shop, to_club] {
        assert_eq!(login.await.expect("join").expect("answered").status(), 200);
    }
    assert!(
        !app.metrics()
            .await
            .contains("wxlogin_login_codes_coalesced_total 1"),
        "codes of two apps were coalesced"
    );
}

#[tokio::test]
async fn each_app_has_its_own_access_token_fetched_once() {
    let app = two_apps().await;
    let shop = token_of(&login_at(&app, "/apps/shop/openid", "c1").await);
    let club = token_of(&login_at(&app, "/apps/club/openid", "c2").await);
    for (under_test, token) in [(&app.apps[0], "AT-shop"), (&app.apps[1], "AT-club")] {
        Mock::given(method("POST"))
            .and(path(STABLE_TOKEN))
            .and(body_partial_json(json!({
                "appid": under_test.appid,
                "secret": under_test.secret,
            })))
            .respond_with(wechat_json(
                json!({ "access_token": token, "expires_in": 7200 }),
            ))
            .expect(1)
            .mount(&app.wechat)
            .await;
        Mock::given(method("GET"))
            .and(path(CHECK_SESSION))
            .and(query_param("access_token", token))
            .respond_with(wechat_json(json!({ "errcode": 0, "errmsg": "ok" })))
            .expect(3)
            .mount(&app.wechat)
            .await;
    }

    for _ in 0..3 {
        for token in [&shop, &club] {
            let check = app.get_as(token, "/wechat/check_session").await;
            assert_eq!(check.status, 200, "{}", check.text);
        }
    }

    assert_eq!(calls_to(&app.wechat, STABLE_TOKEN).await, 2);
    let metrics = app.metrics().await;
    for series in [
        r#"wxlogin_access_token_refreshes_total{app="shop",kind="normal"} 1"#,
        r#"wxlogin_access_token_refreshes_total{app="club",kind="normal"} 1"#,
        r#"wxlogin_logins_total{route="/apps/{app}/openid",app="shop",outcome="ok"} 1"#,
        r#"wxlogin_wechat_calls_total{api="code2session",app="club",outcome="answered",errcode="0"} 1"#,
    ] {
        assert!(metrics.contains(series), "missing {series}:\n{metrics}");
    }
}

#[tokio::test]
async fn no_apps_secret_reaches_the_logs_when_its_logins_fail() {
    let app = spawn_apps(
        &[SHOP, CLUB],
        &[(
            "WXLOGIN_WECHAT_BASE_URL",
            &crate::upstream_errors::closed_port_url(),
        )],
    )
    .await;
    for route in ["/apps/shop/openid", "/apps/club/openid"] {
        login_at(&app, route, "leaky")
            .await
            .assert_error(502, "upstream_error");
    }
    let wechat_errors = spawn_apps(&[SHOP, CLUB], &[]).await;
    wechat_answers(&wechat_errors.wechat, ResponseTemplate::new(500)).await;
    login_at(&wechat_errors, "/apps/club/openid", "leaky")
        .await
        .assert_error(502, "upstream_error");

    let logs = captured_logs();
    assert!(logs.contains("could not reach WeChat"));
    assert!(
        logs.lines()
            .any(|l| l.contains("serving these mini-programs")
                && l.contains("club=wx_club_appid, shop=wx_shop_appid")),
        "the start-up line names every app and its appid"
    );
    for under_test in app.apps.iter().chain(&wechat_errors.apps) {
        assert!(
            !logs.contains(&under_test.secret),
            "{}'s secret was logged",
            under_test.name
        );
    }
}

async fn dev_login(app: &DevApp, route: &str, code: &str) -> Reply {
    let url = format!("{}{route}", app.address);
    app.send(app.http.post(url).json(&json!({ "code": code })))
        .await
}

/// A code from the emulator's stand-in for `wx.login()`, for `appid`.
async fn issued_code(app: &DevApp, appid: &str) -> String {
    let url = format!("{}/dev/login_code?appid={appid}&user=erin", app.emulator);
    let reply = app.send(app.http.get(url)).await;
    reply.json()["code"].as_str().expect("a code").to_owned()
}

async fn two_emulated_apps() -> DevApp {
    spawn_dev_app_with(&[
        ("WXLOGIN_APP_SHOP_APPID", "wxdev_shop_appid"),
        ("WXLOGIN_APP_CLUB_APPID", "wxdev_club_appid"),
    ])
    .await
}

#[tokio::test]
async fn the_same_user_in_two_emulated_apps_has_two_openids_and_one_unionid() {
    let app = two_emulated_apps().await;

    let shop = dev_login(&app, "/apps/shop/openid", "union-bob@1").await;
    let club = dev_login(&app, "/apps/club/openid", "union-bob@2").await;

    assert_eq!(shop.status, 200, "{}", shop.text);
    assert_eq!(club.status, 200, "{}", club.text);
    assert_ne!(shop.json()["openid"], club.json()["openid"]);
    assert_eq!(shop.json()["unionid"], club.json()["unionid"]);
    assert!(shop.json()["unionid"].is_string());
}

#[tokio::test]
async fn an_emulated_code_is_good_only_for_the_app_it_was_issued_to() {
    let app = two_emulated_apps().await;
    let for_shop = issued_code(&app, "wxdev_shop_appid").await;
    let also_for_shop = issued_code(&app, "wxdev_shop_appid").await;

    dev_login(&app, "/apps/club/openid", &for_shop)
        .await
        .assert_error(401, "invalid_code");
    let at_home = dev_login(&app, "/apps/shop/openid", &also_for_shop).await;
    assert_eq!(at_home.status, 200, "{}", at_home.text);
    // A free-form code, spent in one app, is another app's invalid code, as on WeChat.
    assert_eq!(
        dev_login(&app, "/apps/shop/openid", "frank@1").await.status,
        200
    );
    dev_login(&app, "/apps/club/openid", "frank@1")
        .await
        .assert_error(401, "invalid_code");
    dev_login(&app, "/apps/shop/openid", "frank@1")
        .await
        .assert_error(409, "code_used");
}
