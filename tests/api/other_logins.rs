//! The other WeChat logins: official-account H5, website QR and mobile-app codes beside
//! mini-program codes, through the same login route, with the same guarantees, and one
//! person linked across all of them by unionid.

use futures::future::join_all;
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::redis_cluster::RedisCluster;
use crate::redis_server::{RedisServer, SharedRedis};

pub const SNS_ACCESS_TOKEN: &str = "/sns/oauth2/access_token";
pub const SNS_USERINFO: &str = "/sns/userinfo";
/// The user's own access_token in the stub's answers: it must never be seen again.
pub const USER_ACCESS_TOKEN: &str = "USER-ACCESS-TOKEN-must-never-leave-wxlogin";
const UNIONID: &str = "uOnePersonEverywhere";

/// One app of each kind: name, appid, kind.
pub const EVERY_KIND: [(&str, &str, &str); 4] = [
    ("mini", "wx_mini_appid", "miniprogram"),
    ("oa", "wx_oa_appid", "official_account"),
    ("web", "wx_web_appid", "website"),
    ("mobile", "wx_mobile_appid", "mobile_app"),
];

/// wxlogin serving an app of every kind, with the admin API on, and `extra` settings.
pub async fn spawn_every_kind(extra: &[(&str, &str)]) -> TestApp {
    let apps: Vec<(&str, &str)> = EVERY_KIND.iter().map(|(n, a, _)| (*n, *a)).collect();
    let kinds: Vec<(String, String)> = EVERY_KIND
        .iter()
        .map(|(name, _, kind)| {
            let var = format!("WXLOGIN_APP_{}_KIND", name.to_ascii_uppercase());
            (var, (*kind).to_owned())
        })
        .collect();
    let mut env: Vec<(&str, &str)> = kinds
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN));
    env.extend_from_slice(extra);
    spawn_apps(&apps, &env).await
}

/// WeChat's `sns/oauth2/access_token` answer for the app `appid`: `answer`, every time.
pub async fn sns_answers(wechat: &MockServer, appid: &str, answer: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(SNS_ACCESS_TOKEN))
        .and(query_param("appid", appid))
        .respond_with(answer)
        .mount(wechat)
        .await;
}

/// A successful grant of `scope` for `openid`, with `unionid` when given.
pub fn grant(openid: &str, scope: &str, unionid: Option<&str>) -> ResponseTemplate {
    let mut body = json!({
        "access_token": USER_ACCESS_TOKEN,
        "expires_in": 7200,
        "refresh_token": "REFRESH-TOKEN-never-kept",
        "openid": openid,
        "scope": scope,
    });
    if let Some(unionid) = unionid {
        body["unionid"] = unionid.into();
    }
    wechat_json(body)
}

pub async fn login_to(app: &TestApp, name: &str, code: &str) -> Reply {
    let url = format!("{}/apps/{name}/openid", app.address);
    app.send(app.http.post(url).json(&json!({ "code": code })))
        .await
}

fn token_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["token"].as_str().expect("a token").to_owned()
}

/// Each app's WeChat names the same person, with an openid of its own and one unionid.
async fn one_person_in_every_app(app: &TestApp) {
    Mock::given(method("GET"))
        .and(path(CODE2SESSION))
        .respond_with(success("oMiniSide", Some(UNIONID)))
        .mount(&app.wechat)
        .await;
    sns_answers(
        &app.wechat,
        "wx_oa_appid",
        grant("oOaSide", "snsapi_userinfo", Some(UNIONID)),
    )
    .await;
    sns_answers(
        &app.wechat,
        "wx_web_appid",
        grant("oWebSide", "snsapi_login", Some(UNIONID)),
    )
    .await;
    sns_answers(
        &app.wechat,
        "wx_mobile_appid",
        grant("oMobileSide", "snsapi_userinfo", Some(UNIONID)),
    )
    .await;
    Mock::given(method("GET"))
        .and(path(SNS_USERINFO))
        .and(query_param("access_token", USER_ACCESS_TOKEN))
        .respond_with(|request: &wiremock::Request| {
            let openid = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "openid")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            wechat_json(json!({
                "openid": openid, "nickname": "小明", "sex": 0, "province": "", "city": "",
                "country": "", "headimgurl": "https://thirdwx.qlogo.cn/mmopen/avatar/132",
                "privilege": [], "unionid": UNIONID,
            }))
        })
        .mount(&app.wechat)
        .await;
}

/// One person through all four kinds: four sessions that carry one unionid, and one
/// revocation by unionid that ends all four.
async fn one_person_four_kinds_one_revocation(app: &TestApp) {
    one_person_in_every_app(app).await;
    let mut tokens = Vec::new();
    for (name, _, _) in EVERY_KIND {
        let reply = login_to(app, name, &format!("code-for-{name}")).await;
        let token = token_of(&reply);
        assert_eq!(reply.json()["unionid"], UNIONID, "{name}: {}", reply.text);
        let session = app.get_as(&token, &format!("/apps/{name}/session")).await;
        assert_eq!(session.status, 200, "{}", session.text);
        assert_eq!(
            session.json()["unionid"],
            UNIONID,
            "{name}: {}",
            session.text
        );
        tokens.push((name, token));
    }
    let revoked = app
        .admin(
            reqwest::Method::DELETE,
            &format!("/admin/unionids/{UNIONID}/sessions"),
            None,
        )
        .await;
    assert_eq!(revoked.json(), json!({ "revoked": 4 }), "{}", revoked.text);
    for (name, token) in &tokens {
        app.get_as(token, &format!("/apps/{name}/session"))
            .await
            .assert_error(401, "invalid_token");
    }
}

#[tokio::test]
async fn one_person_through_every_kind_is_one_unionid_and_one_revocation_ends_all_four() {
    let app = spawn_every_kind(&[]).await;
    one_person_four_kinds_one_revocation(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_revocation_by_unionid_ends_every_kinds_session_in_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let settings = redis.settings();
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_every_kind(&env).await;
    one_person_four_kinds_one_revocation(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_revocation_by_unionid_ends_every_kinds_session_in_a_redis_cluster() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let settings = cluster.settings();
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_every_kind(&env).await;
    one_person_four_kinds_one_revocation(&app).await;
}

#[tokio::test]
async fn a_userinfo_login_answers_the_profile_and_never_the_users_access_token() {
    let app = spawn_every_kind(&[]).await;
    one_person_in_every_app(&app).await;
    let reply = login_to(&app, "oa", "userinfo-code").await;
    token_of(&reply);
    assert_eq!(
        reply.json()["profile"],
        json!({ "nickname": "小明", "avatar_url": "https://thirdwx.qlogo.cn/mmopen/avatar/132" })
    );
    assert_eq!(reply.json()["openid"], "oOaSide");
    assert!(!reply.text.contains(USER_ACCESS_TOKEN), "{}", reply.text);
    assert!(!reply.text.contains("REFRESH-TOKEN"), "{}", reply.text);
    assert!(reply.json().get("session_key").is_none());
    // The secret went to WeChat, and the user's token to sns/userinfo only.
    let requests = app.wechat.received_requests().await.expect("recorded");
    let userinfo: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == SNS_USERINFO)
        .collect();
    assert_eq!(userinfo.len(), 1);
    assert!(
        userinfo[0]
            .url
            .query()
            .is_some_and(|q| q.contains("openid=oOaSide"))
    );
}

#[tokio::test]
async fn a_snsapi_base_login_has_no_unionid_and_no_profile_and_asks_nothing_more() {
    let app = spawn_every_kind(&[]).await;
    sns_answers(
        &app.wechat,
        "wx_oa_appid",
        grant("oQuietReader", "snsapi_base", None),
    )
    .await;
    let reply = login_to(&app, "oa", "base-code").await;
    let token = token_of(&reply);
    let body = reply.json();
    assert_eq!(body["openid"], "oQuietReader");
    assert!(body.get("unionid").is_none(), "{}", reply.text);
    assert!(body.get("profile").is_none(), "{}", reply.text);
    assert_eq!(calls_to(&app.wechat, SNS_USERINFO).await, 0);
    let session = app.get_as(&token, "/apps/oa/session").await;
    assert!(session.json().get("unionid").is_none(), "{}", session.text);
}

#[tokio::test]
async fn a_failed_userinfo_call_costs_the_login_only_its_profile() {
    let app = spawn_every_kind(&[]).await;
    sns_answers(
        &app.wechat,
        "wx_web_appid",
        grant("oWebUser", "snsapi_login", Some(UNIONID)),
    )
    .await;
    Mock::given(method("GET"))
        .and(path(SNS_USERINFO))
        .respond_with(errcode(48001))
        .mount(&app.wechat)
        .await;
    let reply = login_to(&app, "web", "qr-code").await;
    token_of(&reply);
    assert_eq!(reply.json()["unionid"], UNIONID);
    assert!(reply.json().get("profile").is_none(), "{}", reply.text);
}

#[tokio::test]
async fn a_snapshot_user_gets_no_session_and_a_message_the_page_can_show() {
    let app = spawn_every_kind(&[]).await;
    let snapshot = json!({
        "access_token": USER_ACCESS_TOKEN, "expires_in": 7200, "refresh_token": "r",
        "openid": "oVirtualSnapshot", "scope": "snsapi_base", "is_snapshotuser": 1,
    });
    sns_answers(&app.wechat, "wx_oa_appid", wechat_json(snapshot)).await;
    let reply = login_to(&app, "oa", "preview-code").await;
    reply.assert_error(403, "snapshot_user");
    assert!(
        reply.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("preview"))
    );
    let user = app
        .admin(
            reqwest::Method::GET,
            "/admin/apps/oa/users/oVirtualSnapshot",
            None,
        )
        .await;
    assert_eq!(user.json()["sessions"], 0, "{}", user.text);
    assert!(app.metrics().await.contains("outcome=\"snapshot_user\""));
}

#[tokio::test]
async fn reused_unknown_and_refused_codes_answer_as_they_do_for_mini_programs() {
    let app = spawn_every_kind(&[]).await;
    for (errcode_sent, status, kind) in [
        (40029, 401, "invalid_code"),
        (40163, 409, "code_used"),
        (45011, 429, "rate_limited"),
        (40125, 500, "misconfigured"),
        (-1, 503, "upstream_busy"),
    ] {
        app.wechat.reset().await;
        sns_answers(&app.wechat, "wx_mobile_appid", errcode(errcode_sent)).await;
        let reply = login_to(&app, "mobile", &format!("code-{errcode_sent}")).await;
        reply.assert_error(status, kind);
    }
}

#[tokio::test]
async fn concurrent_duplicates_of_an_official_account_code_make_one_wechat_call() {
    let app = spawn_every_kind(&[]).await;
    Mock::given(method("GET"))
        .and(path(SNS_ACCESS_TOKEN))
        .respond_with(grant("oOnce", "snsapi_base", None))
        .expect(1)
        .mount(&app.wechat)
        .await;
    let replies = join_all((0..8).map(|_| login_to(&app, "oa", "double-tapped"))).await;
    let tokens: std::collections::HashSet<String> = replies.iter().map(token_of).collect();
    assert_eq!(tokens.len(), 8, "each request gets a session of its own");
    app.wechat.verify().await;
}

#[tokio::test]
async fn another_kinds_token_is_refused_on_an_apps_routes_and_on_user_data() {
    let app = spawn_every_kind(&[]).await;
    one_person_in_every_app(&app).await;
    let oa_token = token_of(&login_to(&app, "oa", "oa-code").await);
    let mini_token = token_of(&login_to(&app, "mini", "mini-code").await);
    app.get_as(&oa_token, "/apps/mini/session")
        .await
        .assert_error(401, "invalid_token");
    app.get_as(&mini_token, "/apps/oa/auth")
        .await
        .assert_error(401, "invalid_token");
    // Only a mini-program's login gives a session_key, and only it has user data to open.
    let signed = json!({ "rawData": "{}", "signature": "0".repeat(40) });
    app.post_as(&oa_token, "/wechat/verify_signature", &signed)
        .await
        .assert_error(400, "wrong_app_kind");
    let reply = app.get_as(&oa_token, "/wechat/check_session").await;
    reply.assert_error(400, "wrong_app_kind");
    assert!(reply.text.contains("official_account"), "{}", reply.text);
    let phone = app
        .post_as(&oa_token, "/wechat/phone_number", &json!({ "code": "p" }))
        .await;
    phone.assert_error(400, "wrong_app_kind");
}

#[tokio::test]
async fn neither_the_secret_nor_the_users_access_token_is_ever_logged() {
    let app = spawn_every_kind(&[]).await;
    one_person_in_every_app(&app).await;
    let token = token_of(&login_to(&app, "web", "logged-code").await);
    // A failure is logged with its cause, which must not carry the URL (the secret).
    app.wechat.reset().await;
    login_to(&app, "oa", "refused-code")
        .await
        .assert_error(502, "upstream_error");
    let logs = captured_logs();
    for app in &app.apps {
        assert!(!logs.contains(&app.secret), "an app secret was logged");
    }
    assert!(
        !logs.contains(USER_ACCESS_TOKEN),
        "the user's access_token was logged"
    );
    assert!(!logs.contains(&token), "a session token was logged");
}
