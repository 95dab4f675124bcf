//! The admin API on the memory store: off unless a token is set, the token checked on
//! every route, a user looked up, logged out everywhere and blocked, bad input refused, an
//! audit line and a counter for each action, and a listener of its own when asked.

use reqwest::Method;
use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::{method, path, query_param};

use crate::helpers::*;

const ADMIN: [(&str, &str); 1] = [("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN)];

/// A path for the memory store's blocks, in a fresh directory.
fn blocks_file() -> String {
    let dir =
        std::env::temp_dir().join(format!("wxlogin-blocks-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir.join("blocks.json").display().to_string()
}

async fn with_admin() -> TestApp {
    spawn_app_with(&[ADMIN[0], ("WXLOGIN_BLOCKS_FILE", &blocks_file())]).await
}

#[tokio::test]
async fn without_a_token_every_admin_route_is_404_even_to_someone_who_guesses_one() {
    let app = spawn_app().await;
    for (verb, route) in [
        (Method::GET, "/admin/apps/default/users/oA"),
        (Method::DELETE, "/admin/apps/default/users/oA/sessions"),
        (Method::PUT, "/admin/apps/default/users/oA/block"),
        (Method::DELETE, "/admin/unionids/uA/sessions"),
    ] {
        app.admin(verb, route, Some(&json!({ "until": 4_000_000_000u64 })))
            .await
            .assert_error(404, "not_found");
    }
}

#[tokio::test]
async fn a_stranger_gets_401_whatever_the_method_and_only_the_token_holder_learns_of_a_405() {
    let app = with_admin().await;
    for (verb, route) in [
        (Method::POST, "/admin/apps/default/users/oA"),
        (Method::PATCH, "/admin/apps/default/users/oA/block"),
        (Method::GET, "/admin/unionids/uA/sessions"),
    ] {
        let url = format!("{}{route}", app.address);
        app.send(app.http.request(verb.clone(), &url))
            .await
            .assert_error(401, "invalid_admin_token");
        app.send(app.http.request(verb, &url).bearer_auth(ADMIN_TOKEN))
            .await
            .assert_error(405, "method_not_allowed");
    }
}

#[tokio::test]
async fn a_missing_or_wrong_admin_token_is_401_before_anything_else_is_read() {
    let app = with_admin().await;
    let url = format!("{}/admin/apps/nope/users/bad%20id", app.address);
    let missing = app.send(app.http.get(&url)).await;
    missing.assert_error(401, "invalid_admin_token");
    assert!(missing.header("www-authenticate").is_some());
    let almost = format!("{}x", ADMIN_TOKEN);
    for wrong in [almost.as_str(), &ADMIN_TOKEN[1..], "Bearer"] {
        app.send(app.http.get(&url).bearer_auth(wrong))
            .await
            .assert_error(401, "invalid_admin_token");
    }
    let session_token = app.login_as("c1", "oSomeone").await;
    app.send(app.http.get(&url).bearer_auth(&session_token))
        .await
        .assert_error(401, "invalid_admin_token");
    let basic = app
        .send(app.http.get(&url).basic_auth("admin", Some(ADMIN_TOKEN)))
        .await;
    basic.assert_error(401, "invalid_admin_token");
}

#[tokio::test]
async fn an_operator_sees_a_users_sessions_and_logs_them_out_of_the_app_everywhere() {
    let app = with_admin().await;
    let first = app.login_as_person("c1", "oStolen", "uStolen").await;
    let second = app.login_as_person("c2", "oStolen", "uStolen").await;
    let bystander = app.login_as("c3", "oBystander").await;

    let user = app
        .admin(Method::GET, "/admin/apps/default/users/oStolen", None)
        .await;
    assert_eq!(user.status, 200, "{}", user.text);
    assert_eq!(
        user.json(),
        json!({ "openid": "oStolen", "unionid": "uStolen", "sessions": 2 })
    );
    assert_eq!(user.header("cache-control"), Some("no-store"));

    let revoked = app
        .admin(
            Method::DELETE,
            "/admin/apps/default/users/oStolen/sessions",
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(revoked.json(), json!({ "revoked": 2 }));
    for token in [&first, &second] {
        app.get_session(token)
            .await
            .assert_error(401, "invalid_token");
    }
    assert_eq!(app.get_session(&bystander).await.status, 200);
    let again = app
        .admin(
            Method::DELETE,
            "/admin/apps/default/users/oStolen/sessions",
            None,
        )
        .await;
    assert_eq!(again.json(), json!({ "revoked": 0 }));
    let gone = app
        .admin(Method::GET, "/admin/apps/by-appid/users/oStolen", None)
        .await;
    gone.assert_error(404, "unknown_app");
    let by_appid = app
        .admin(
            Method::GET,
            &format!("/admin/apps/{APPID}/users/oStolen"),
            None,
        )
        .await;
    assert_eq!(by_appid.json()["sessions"], 0);
}

#[tokio::test]
async fn a_unionid_is_logged_out_of_every_app_and_no_one_else_is() {
    let app = spawn_apps(
        &[("shop", "wx_shop_appid"), ("club", "wx_club_appid")],
        &ADMIN,
    )
    .await;
    for (appid, openid) in [
        ("wx_shop_appid", "oShopSide"),
        ("wx_club_appid", "oClubSide"),
    ] {
        Mock::given(method("GET"))
            .and(path(CODE2SESSION))
            .and(query_param("appid", appid))
            .respond_with(success(openid, Some("uOnePerson")))
            .mount(&app.wechat)
            .await;
    }
    let in_shop = login_at(&app, "/apps/shop/openid", "c1").await;
    let in_club = login_at(&app, "/apps/club/openid", "c2").await;
    Mock::given(method("GET"))
        .and(path(CODE2SESSION))
        .respond_with(success("oOther", Some("uSomeoneElse")))
        .with_priority(1)
        .expect(1)
        .mount(&app.wechat)
        .await;
    let other = login_at(&app, "/apps/shop/openid", "c3").await;

    let revoked = app
        .admin(Method::DELETE, "/admin/unionids/uOnePerson/sessions", None)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(revoked.json(), json!({ "revoked": 2 }));
    for (route, token) in [
        ("/apps/shop/session", &in_shop),
        ("/apps/club/session", &in_club),
    ] {
        app.get_as(token, route)
            .await
            .assert_error(401, "invalid_token");
    }
    assert_eq!(app.get_as(&other, "/apps/shop/session").await.status, 200);
}

async fn login_at(app: &TestApp, route: &str, code: &str) -> String {
    let url = format!("{}{route}", app.address);
    let reply = app
        .send(app.http.post(url).json(&json!({ "code": code })))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn a_blocked_user_is_logged_out_and_refused_until_the_block_lifts() {
    let app = spawn_app_with(&[
        ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN),
        ("WXLOGIN_BLOCKS_FILE", &blocks_file()),
        (
            "WXLOGIN_BLOCKED_MESSAGE",
            "Your account is paused. Write to help@example.com.",
        ),
    ])
    .await;
    let token = app.login_as("c1", "oAbuser").await;
    let until = CLOCK_START + 7 * 24 * 3600;
    let reason = "ticket 4711: resold coupons";

    let blocked = app
        .admin(
            Method::PUT,
            "/admin/apps/default/users/oAbuser/block",
            Some(&json!({ "until": until, "reason": reason })),
        )
        .await;
    assert_eq!(blocked.status, 200, "{}", blocked.text);
    assert_eq!(blocked.json(), json!({ "revoked": 1 }));
    app.get_session(&token)
        .await
        .assert_error(401, "invalid_token");

    wechat_answers(&app.wechat, success("oAbuser", None)).await;
    let refused = app.post_openid(&json!({ "code": "c2" })).await;
    refused.assert_error(403, "user_blocked");
    assert_eq!(
        refused.json()["message"],
        "Your account is paused. Write to help@example.com."
    );
    assert!(!refused.text.contains("4711"), "{}", refused.text);
    assert_eq!(
        calls_to(&app.wechat, CODE2SESSION).await,
        1,
        "the block is checked after code2Session, which names the user"
    );
    let user = app
        .admin(Method::GET, "/admin/apps/default/users/oAbuser", None)
        .await;
    assert_eq!(
        user.json(),
        json!({ "openid": "oAbuser", "sessions": 0, "blocked_until": until, "block_reason": reason }),
        "a blocked login created no session"
    );

    app.clock
        .advance(std::time::Duration::from_secs(7 * 24 * 3600));
    let lifted = app.post_openid(&json!({ "code": "c3" })).await;
    assert_eq!(
        lifted.status, 200,
        "the block lifts by itself: {}",
        lifted.text
    );
}

#[tokio::test]
async fn a_block_on_the_memory_store_survives_a_restart_and_so_does_its_lifting() {
    let file = blocks_file();
    let env = [ADMIN[0], ("WXLOGIN_BLOCKS_FILE", file.as_str())];
    let route = "/admin/apps/default/users/oRestarted/block";
    let until = CLOCK_START + 3600;
    let before = spawn_app_with(&env).await;
    let blocked = before
        .admin(
            Method::PUT,
            route,
            Some(&json!({ "until": until, "reason": "chargebacks" })),
        )
        .await;
    assert_eq!(blocked.status, 200, "{}", blocked.text);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("the blocks file")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "only wxlogin's user reads the reasons: {mode:o}"
        );
    }
    drop(before);

    let after = spawn_app_with(&env).await;
    wechat_answers(&after.wechat, success("oRestarted", None)).await;
    after
        .post_openid(&json!({ "code": "c1" }))
        .await
        .assert_error(403, "user_blocked");
    let user = after
        .admin(Method::GET, "/admin/apps/default/users/oRestarted", None)
        .await;
    assert_eq!(user.json()["blocked_until"], until, "{}", user.text);
    assert_eq!(user.json()["block_reason"], "chargebacks", "{}", user.text);
    let lifted = after.admin(Method::DELETE, route, None).await;
    assert_eq!(lifted.json(), json!({ "unblocked": true }));
    drop(after);

    let again = spawn_app_with(&env).await;
    wechat_answers(&again.wechat, success("oRestarted", None)).await;
    let login = again.post_openid(&json!({ "code": "c2" })).await;
    assert_eq!(
        login.status, 200,
        "a lifted block stays lifted: {}",
        login.text
    );
}

#[tokio::test]
async fn without_a_blocks_file_the_memory_store_refuses_a_block_and_says_why() {
    let app = spawn_app_with(&ADMIN).await;
    let token = app.login_as("c1", "oNotBlocked").await;
    let refused = app
        .admin(
            Method::PUT,
            "/admin/apps/default/users/oNotBlocked/block",
            Some(&json!({ "until": CLOCK_START + 60 })),
        )
        .await;
    refused.assert_error(409, "blocks_not_durable");
    assert!(
        refused.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("WXLOGIN_BLOCKS_FILE")),
        "{}",
        refused.text
    );
    assert_eq!(
        app.get_session(&token).await.status,
        200,
        "a refused block revokes nothing"
    );
    wechat_answers(&app.wechat, success("oNotBlocked", None)).await;
    assert_eq!(app.post_openid(&json!({ "code": "c2" })).await.status, 200);
}

#[tokio::test]
async fn lifting_a_block_lets_the_user_log_in_again_and_an_rfc3339_until_is_understood() {
    let app = with_admin().await;
    let route = "/admin/apps/default/users/oPaused/block";
    // CLOCK_START is 2027-01-15T08:00:00Z.
    let blocked = app
        .admin(
            Method::PUT,
            route,
            Some(&json!({ "until": "2027-01-16T16:00:00+08:00" })),
        )
        .await;
    assert_eq!(blocked.status, 200, "{}", blocked.text);
    let user = app
        .admin(Method::GET, "/admin/apps/default/users/oPaused", None)
        .await;
    assert_eq!(user.json()["blocked_until"], CLOCK_START + 24 * 3600);

    wechat_answers(&app.wechat, success("oPaused", None)).await;
    app.post_openid(&json!({ "code": "c1" }))
        .await
        .assert_error(403, "user_blocked");
    let lifted = app.admin(Method::DELETE, route, None).await;
    assert_eq!(lifted.json(), json!({ "unblocked": true }));
    assert_eq!(app.post_openid(&json!({ "code": "c2" })).await.status, 200);
    let twice = app.admin(Method::DELETE, route, None).await;
    assert_eq!(twice.json(), json!({ "unblocked": false }));
}

#[tokio::test]
async fn bad_admin_input_gets_a_clear_4xx() {
    let app = with_admin().await;
    let block = |route: &str, body: serde_json::Value| {
        let route = route.to_owned();
        let app = &app;
        async move { app.admin(Method::PUT, &route, Some(&body)).await }
    };
    let good = "/admin/apps/default/users/oA/block";
    block(
        "/admin/apps/nope/users/oA/block",
        json!({ "until": CLOCK_START + 60 }),
    )
    .await
    .assert_error(404, "unknown_app");
    block(
        "/admin/apps/default/users/o%20A/block",
        json!({ "until": CLOCK_START + 60 }),
    )
    .await
    .assert_error(400, "invalid_openid");
    block(good, json!({ "until": CLOCK_START - 1 }))
        .await
        .assert_error(400, "invalid_until");
    block(good, json!({ "until": CLOCK_START }))
        .await
        .assert_error(400, "invalid_until");
    block(good, json!({ "until": "next tuesday" }))
        .await
        .assert_error(400, "invalid_until");
    block(
        good,
        json!({ "until": CLOCK_START + 60, "reason": "x".repeat(201) }),
    )
    .await
    .assert_error(400, "reason_too_long");
    block(good, json!({ "reason": "no until" }))
        .await
        .assert_error(400, "invalid_body");
    let exactly = block(
        good,
        json!({ "until": CLOCK_START + 60, "reason": "é".repeat(200) }),
    )
    .await;
    assert_eq!(
        exactly.status, 200,
        "200 characters is allowed: {}",
        exactly.text
    );
    app.admin(Method::GET, "/admin/apps/default/users/{bad}", None)
        .await
        .assert_error(400, "invalid_openid");
    app.admin(Method::DELETE, "/admin/unionids/u%2Fx/sessions", None)
        .await
        .assert_error(400, "invalid_unionid");
}

#[tokio::test]
async fn every_admin_action_is_an_audit_line_with_the_request_id_and_a_counted_metric() {
    let app = with_admin().await;
    app.login_as("c1", "oAudited").await;
    let url = format!("{}/admin/apps/default/users/oAudited/sessions", app.address);
    let reply = app
        .send(
            app.http
                .delete(url)
                .bearer_auth(ADMIN_TOKEN)
                .header("x-request-id", "audit-req-0042"),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    app.admin(Method::GET, "/admin/apps/default/users/oAudited", None)
        .await;

    let line = captured_logs()
        .lines()
        .find(|line| line.contains("audit-req-0042") && line.contains("admin action"))
        .map(str::to_owned)
        .expect("an audit line in the request's span");
    let line: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["action"], "revoke_user");
    assert_eq!(line["app"], "default");
    assert_eq!(line["openid"], "oAudited");
    assert_eq!(line["count"], 1);
    assert_eq!(line["span"]["request_id"], "audit-req-0042");
    assert!(
        !captured_logs().contains(ADMIN_TOKEN),
        "the admin token is never logged"
    );

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"wxlogin_admin_actions_total{action="revoke_user"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"wxlogin_admin_actions_total{action="lookup_user"} 1"#));
}

#[tokio::test]
async fn with_an_admin_listener_admin_routes_and_metrics_are_served_there_only() {
    let app = spawn_app_with(&[
        ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN),
        ("WXLOGIN_ADMIN_LISTEN", "127.0.0.1:0"),
    ])
    .await;
    let admin = app.admin_address.clone().expect("an admin listener");
    assert_ne!(admin, app.address);
    let token = app.login_as("c1", "oSeparate").await;

    let public_admin = app
        .send(
            app.http
                .delete(format!(
                    "{}/admin/apps/default/users/oSeparate/sessions",
                    app.address
                ))
                .bearer_auth(ADMIN_TOKEN),
        )
        .await;
    public_admin.assert_error(404, "not_found");
    app.get_as("", "/metrics")
        .await
        .assert_error(404, "not_found");
    assert_eq!(app.get_session(&token).await.status, 200);

    let revoked = app
        .admin(
            Method::DELETE,
            "/admin/apps/default/users/oSeparate/sessions",
            None,
        )
        .await;
    assert_eq!(revoked.json(), json!({ "revoked": 1 }));
    let metrics = app.send(app.http.get(format!("{admin}/metrics"))).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.text.contains("wxlogin_admin_actions_total"));
    let login_there = app
        .send(
            app.http
                .post(format!("{admin}/openid"))
                .json(&json!({ "code": "c2" })),
        )
        .await;
    login_there.assert_error(404, "not_found");
}

#[tokio::test]
async fn a_failed_wechat_call_for_a_blocked_user_is_still_the_wechat_error() {
    // The block is checked only once WeChat named the user; before that, WeChat's answer
    // stands, and a code WeChat refused says so.
    let app = with_admin().await;
    app.admin(
        Method::PUT,
        "/admin/apps/default/users/oBlocked/block",
        Some(&json!({ "until": CLOCK_START + 60 })),
    )
    .await;
    wechat_answers(&app.wechat, errcode(40029)).await;
    app.post_openid(&json!({ "code": "c1" }))
        .await
        .assert_error(401, "invalid_code");
}
