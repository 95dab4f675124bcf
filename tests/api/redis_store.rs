//! Redis as the store: several wxlogin instances act as one, sessions outlive every
//! instance, a Redis outage is a clear 503 that heals by itself, and the access_token is
//! fetched once for all instances. Against a real redis-server, no mocks; what Redis must
//! do for wxlogin is proven twice, on one server and on a six-node Redis Cluster.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use sha2::{Digest, Sha256};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::helpers::*;
use crate::open_data::{ENCRYPTED, IV};
use crate::redis_cluster::RedisCluster;
use crate::redis_server::{RedisServer, SharedRedis};

/// An instance on `redis`, whose WeChat is `wechat_url` if given (else its own stub).
pub async fn instance(redis: &impl SharedRedis, wechat_url: Option<&str>) -> TestApp {
    instance_with(redis, wechat_url, &[]).await
}

/// As [`instance`], with extra settings.
async fn instance_with(
    redis: &impl SharedRedis,
    wechat_url: Option<&str>,
    extra: &[(&str, &str)],
) -> TestApp {
    let settings = redis.settings();
    let mut env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Some(wechat_url) = wechat_url {
        env.push(("WXLOGIN_WECHAT_BASE_URL", wechat_url));
    }
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

/// Runs each named test body against one redis-server and against a Redis Cluster, as the
/// tests `<name>::one_server` and `<name>::cluster`.
macro_rules! on_one_server_and_a_cluster {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_server() {
                if let Some(redis) = super::RedisServer::start() {
                    super::$name(&redis).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                if let Some(cluster) = super::RedisCluster::start().await {
                    super::$name(&cluster).await;
                }
            }
        }
    )*};
}

on_one_server_and_a_cluster!(
    a_token_from_one_instance_works_on_another_and_logout_reaches_both,
    sessions_outlive_every_instance,
    redis_keys_hold_a_hash_of_the_token_never_the_token,
    a_re_login_gives_the_users_sessions_on_every_instance_the_new_key,
    two_instances_fetch_one_access_token_between_them,
    two_instances_share_wechats_daily_limit_on_forced_refreshes,
    two_apps_on_two_instances_share_one_redis_without_mixing_their_users,
    an_operator_on_one_instance_revokes_and_blocks_for_every_instance,
    a_unionid_revocation_reaches_every_app_through_redis,
);

async fn a_token_from_one_instance_works_on_another_and_logout_reaches_both(
    redis: &impl SharedRedis,
) {
    let a = instance(redis, None).await;
    let b = instance(redis, None).await;

    let token = a.login_as("code-a", "oShared").await;
    let on_b = b.get_session(&token).await;
    assert_eq!(on_b.status, 200, "{}", on_b.text);
    assert_eq!(on_b.json()["openid"], "oShared");

    assert_eq!(b.delete_session(&token).await.status, 204);
    a.get_session(&token)
        .await
        .assert_error(401, "invalid_token");
    b.get_session(&token)
        .await
        .assert_error(401, "invalid_token");
}

async fn sessions_outlive_every_instance(redis: &impl SharedRedis) {
    let first = instance(redis, None).await;
    let token = first.login_as("code-1", "oDurable").await;
    drop(first);

    let second = instance(redis, None).await;
    let reply = second.get_session(&token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["openid"], "oDurable");
}

async fn redis_keys_hold_a_hash_of_the_token_never_the_token(redis: &impl SharedRedis) {
    let app = instance(redis, None).await;
    let token = app.login_as("code-1", "oHashed").await;

    let keys = redis.all_keys();
    let hash: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        keys.contains(&format!("wxlogin:session:{hash}")),
        "{keys:?}"
    );
    assert!(keys.iter().all(|k| !k.contains(&token)), "{keys:?}");
}

async fn a_re_login_gives_the_users_sessions_on_every_instance_the_new_key(
    redis: &impl SharedRedis,
) {
    let a = instance(redis, None).await;
    let b = instance(redis, None).await;
    // The first login's key is not the one the vector below was sealed with.
    let old = a
        .login_with_key("first", "oTestUser0001", OTHER_SESSION_KEY)
        .await;
    let _new = b.login_as("second", "oTestUser0001").await;

    // Sealed by Python's `cryptography` under the key of the second login.
    let sealed = json!({ "encryptedData": ENCRYPTED, "iv": IV });
    let reply = a.post_as(&old, "/wechat/decrypt", &sealed).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn a_redis_outage_is_a_prompt_503_and_service_comes_back_by_itself() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = instance(&redis, None).await;
    let token = app.login_as("code-1", "oOutage").await;

    redis.stop();
    let down = app.get_session(&token).await;
    down.assert_error(503, "store_unavailable");
    assert_eq!(down.header("retry-after"), Some("2"));
    app.post_openid(&json!({ "code": "code-2" }))
        .await
        .assert_error(503, "store_unavailable");
    app.get_as("", "/readyz")
        .await
        .assert_error(503, "store_unavailable");
    let alive = app.get_as("", "/healthz").await;
    assert_eq!(alive.status, 200, "liveness does not depend on Redis");

    redis.restart();
    // The connection manager reconnects in the background; the first command after the
    // restart may still find the old, dead connection. Ask until it has healed.
    let mut healed = None;
    for _ in 0..50 {
        let reply = app.get_session(&token).await;
        if reply.status != 503 {
            healed = Some(reply);
            break;
        }
    }
    let healed = healed.expect("wxlogin recovers once Redis is back, with no restart");
    assert_eq!(healed.status, 200, "{}", healed.text);
    assert_eq!(app.get_as("", "/readyz").await.status, 200);
}

async fn two_instances_fetch_one_access_token_between_them(redis: &impl SharedRedis) {
    let a = instance(redis, None).await;
    let b = instance(redis, Some(&a.wechat.uri())).await;
    let token = a.login_as("code-1", "oTokenUser").await;
    stable_token_answers_after(&a.wechat, "AT-shared", Duration::from_millis(300)).await;
    Mock::given(method("GET"))
        .and(path(CHECK_SESSION))
        .respond_with(wechat_json(json!({ "errcode": 0, "errmsg": "ok" })))
        .mount(&a.wechat)
        .await;

    let checks = join_all((0..40).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.get_as(&token, "/wechat/check_session")
    }))
    .await;
    for check in &checks {
        assert_eq!(check.status, 200, "{}", check.text);
    }
    assert_eq!(calls_to(&a.wechat, STABLE_TOKEN).await, 1);
    assert_eq!(calls_to(&a.wechat, CHECK_SESSION).await, 40);
}

async fn two_instances_share_wechats_daily_limit_on_forced_refreshes(redis: &impl SharedRedis) {
    let a = instance(redis, None).await;
    let b = instance(redis, Some(&a.wechat.uri())).await;
    let token = a.login_as("code-1", "oPhoneUser").await;
    // WeChat hands out, forced or not, a token that it then rejects: each instance finds
    // the rejected token handed out again, and would like a forced refresh.
    stable_token_answers(&a.wechat, "AT-stuck", 7200).await;
    Mock::given(method("POST"))
        .and(path(PHONE_NUMBER))
        .respond_with(errcode(40001))
        .mount(&a.wechat)
        .await;

    for app in [&a, &b] {
        app.post_as(
            &token,
            "/wechat/phone_number",
            &json!({ "code": "phone-code" }),
        )
        .await
        .assert_error(502, "upstream_error");
    }

    let requests = a.wechat.received_requests().await.expect("recorded");
    let forced = requests
        .iter()
        .filter(|r| r.url.path() == STABLE_TOKEN)
        .filter(|r| String::from_utf8_lossy(&r.body).contains(r#""force_refresh":true"#))
        .count();
    assert_eq!(
        forced, 1,
        "WeChat allows one forced refresh per 30 s, for all instances"
    );
}

#[tokio::test]
async fn a_password_url_works_and_the_password_never_reaches_a_log_line_or_a_reply() {
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let Some(redis) = RedisServer::start_with_password(&password) else {
        return;
    };
    let good = instance(&redis, None).await;
    let token = good.login_as("code-1", "oAuthed").await;
    assert_eq!(good.get_session(&token).await.status, 200);

    let wrong = redis.url().replace(&password, "not-the-password");
    let refused = spawn_app_with(&[
        ("WXLOGIN_SESSION_STORE", "redis"),
        ("WXLOGIN_REDIS_URL", &wrong),
        ("WXLOGIN_REDIS_TIMEOUT_MS", "500"),
    ])
    .await;
    refused
        .get_session(&token)
        .await
        .assert_error(503, "store_unavailable");
    let ready = refused.get_as("", "/readyz").await;
    ready.assert_error(503, "store_unavailable");

    let logs = captured_logs();
    assert!(logs.contains("store_unavailable"));
    for secret in [password.as_str(), "not-the-password"] {
        assert!(!logs.contains(secret), "a Redis password was logged");
        assert!(!ready.text.contains(secret));
    }
}

async fn two_apps_on_two_instances_share_one_redis_without_mixing_their_users(
    redis: &impl SharedRedis,
) {
    let settings = redis.settings();
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = spawn_apps(&[("shop", "wx_shop"), ("club", "wx_club")], &env).await;
    let wechat = a.wechat.uri();
    let b_env = [
        env.as_slice(),
        &[("WXLOGIN_WECHAT_BASE_URL", wechat.as_str())],
    ]
    .concat();
    let b = spawn_apps(&[("shop", "wx_shop"), ("club", "wx_club")], &b_env).await;
    // One WeChat user: the same openid from both apps' calls, as a stub may well answer.
    wechat_answers(&a.wechat, success("oSameOpenid", Some("uPerson"))).await;
    let login = |app: &TestApp, route: &str, code: &str| {
        let url = format!("{}{route}", app.address);
        let request = app.http.post(url).json(&json!({ "code": code }));
        async move { Reply::read(request.send().await.expect("answered")).await }
    };
    let shop = login(&a, "/apps/shop/openid", "c1").await.json()["token"].clone();
    let club = login(&b, "/apps/club/openid", "c2").await.json()["token"].clone();
    let (shop, club) = (shop.as_str().expect("token"), club.as_str().expect("token"));

    let on_b = b.get_as(shop, "/apps/shop/session").await;
    assert_eq!(on_b.status, 200, "{}", on_b.text);
    assert_eq!(on_b.json()["app"], "shop");
    a.get_as(club, "/apps/shop/session")
        .await
        .assert_error(401, "invalid_token");
    assert_eq!(
        a.get_as(club, "/apps/club/session").await.json()["app"],
        "club"
    );
    let keys = redis.all_keys();
    assert!(
        keys.iter().any(|k| k == "wxlogin:user:{shop:oSameOpenid}"),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k == "wxlogin:user:{club:oSameOpenid}"),
        "{keys:?}"
    );
}

/// A session as the release before per-user records wrote it: its own session_key and
/// unionid, no app, no user record, listed in that release's index `openid:<openid>`.
/// Returns its token.
fn pre_upgrade_session(redis: &RedisServer, seed: u8, openid: &str, unionid: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([seed; 32]);
    let hash: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let expires_at = (CLOCK_START + 3600).to_string();
    let record = format!("wxlogin:session:{hash}");
    let index = format!("wxlogin:openid:{openid}");
    redis.cli(&[
        "HSET",
        &record,
        "openid",
        openid,
        "unionid",
        unionid,
        "session_key",
        SESSION_KEY,
        "expires_at",
        &expires_at,
    ]);
    redis.cli(&["SADD", &index, &hash]);
    for key in [&record, &index] {
        redis.cli(&["EXPIRE", key, "3600"]);
    }
    token
}

#[tokio::test]
async fn sessions_written_before_the_per_user_keys_still_work_and_rotate() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let token = pre_upgrade_session(&redis, 7, "oTestUser0001", "");
    let app = instance(&redis, None).await;

    let session = app.get_session(&token).await;
    assert_eq!(session.status, 200, "{}", session.text);
    assert_eq!(session.json()["openid"], "oTestUser0001");
    assert_eq!(session.json()["app"], "default");
    assert_eq!(session.json()["expires_in"], 3600);
    let sealed = json!({ "encryptedData": ENCRYPTED, "iv": IV });
    let decrypted = app.post_as(&token, "/wechat/decrypt", &sealed).await;
    assert_eq!(decrypted.status, 200, "{}", decrypted.text);

    // A new login of the same user gives the old session WeChat's new key too.
    app.login_with_key("again", "oTestUser0001", OTHER_SESSION_KEY)
        .await;
    app.post_as(&token, "/wechat/decrypt", &sealed)
        .await
        .assert_error(400, "decryption_failed");
}

#[tokio::test]
async fn sessions_written_before_the_per_user_keys_are_revoked_blocked_and_found_by_unionid() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let stolen = [
        pre_upgrade_session(&redis, 1, "oOldStolen", "uOldPerson"),
        pre_upgrade_session(&redis, 2, "oOldStolen", "uOldPerson"),
    ];
    let blocked = pre_upgrade_session(&redis, 3, "oOldBlocked", "");
    let by_unionid = pre_upgrade_session(&redis, 4, "oOldOther", "uOtherPerson");
    let app = admin_instance(&redis, None).await;
    let user = |openid: &str| format!("/admin/apps/default/users/{openid}");

    let found = app
        .admin(reqwest::Method::GET, &user("oOldStolen"), None)
        .await;
    assert_eq!(found.json()["sessions"], 2, "{}", found.text);
    let revoked = app
        .admin(
            reqwest::Method::DELETE,
            &format!("{}/sessions", user("oOldStolen")),
            None,
        )
        .await;
    assert_eq!(revoked.json(), json!({ "revoked": 2 }), "{}", revoked.text);
    for token in &stolen {
        app.get_session(token)
            .await
            .assert_error(401, "invalid_token");
    }

    let block = json!({ "until": CLOCK_START + 600, "reason": "old session" });
    let blocking = app
        .admin(
            reqwest::Method::PUT,
            &format!("{}/block", user("oOldBlocked")),
            Some(&block),
        )
        .await;
    assert_eq!(
        blocking.json(),
        json!({ "revoked": 1 }),
        "{}",
        blocking.text
    );
    app.get_session(&blocked)
        .await
        .assert_error(401, "invalid_token");

    // The unionid's index is filled in from the old sessions, in the background.
    eventually("the old sessions indexed by unionid", || async {
        redis
            .cli(&["SMEMBERS", "wxlogin:unionid:{uOtherPerson}"])
            .contains("default oOldOther")
    })
    .await;
    let revoked = app
        .admin(
            reqwest::Method::DELETE,
            "/admin/unionids/uOtherPerson/sessions",
            None,
        )
        .await;
    assert_eq!(revoked.json(), json!({ "revoked": 1 }), "{}", revoked.text);
    app.get_session(&by_unionid)
        .await
        .assert_error(401, "invalid_token");
    eventually("the old indexes gone", || async {
        !redis
            .keys()
            .iter()
            .any(|key| key.starts_with("wxlogin:openid:"))
    })
    .await;
}

/// An instance with the admin API on.
async fn admin_instance(redis: &impl SharedRedis, wechat_url: Option<&str>) -> TestApp {
    instance_with(redis, wechat_url, &[("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN)]).await
}

/// An admin request about the user `oStolenAcct`: `rest` follows the user's path.
async fn stolen(app: &TestApp, method: reqwest::Method, rest: &str) -> Reply {
    let route = format!("/admin/apps/default/users/oStolenAcct{rest}");
    app.admin(method, &route, None).await
}

async fn an_operator_on_one_instance_revokes_and_blocks_for_every_instance(
    redis: &impl SharedRedis,
) {
    let a = admin_instance(redis, None).await;
    let b = admin_instance(redis, Some(&a.wechat.uri())).await;
    // Sessions whose keys land on different slots (and, in a cluster, nodes).
    let mut tokens = Vec::new();
    for i in 0..6 {
        tokens.push(
            a.login_as_person(&format!("c{i}"), "oStolenAcct", "uStolenPerson")
                .await,
        );
    }
    let bystander = a.login_as("c-other", "oInnocent").await;
    let user = stolen(&b, reqwest::Method::GET, "").await;
    assert_eq!(
        user.json(),
        json!({ "openid": "oStolenAcct", "unionid": "uStolenPerson", "sessions": 6 })
    );
    a.delete_session(&tokens[0]).await;
    let user = stolen(&b, reqwest::Method::GET, "").await;
    assert_eq!(
        user.json()["sessions"],
        5,
        "a logged-out session is not counted"
    );

    let revoked = stolen(&a, reqwest::Method::DELETE, "/sessions").await;
    assert_eq!(revoked.json(), json!({ "revoked": 5 }), "{}", revoked.text);
    for token in &tokens {
        b.get_session(token)
            .await
            .assert_error(401, "invalid_token");
    }
    assert_eq!(b.get_session(&bystander).await.status, 200);

    let again = a.login_as("c-back", "oStolenAcct").await;
    let blocked = b
        .admin(
            reqwest::Method::PUT,
            "/admin/apps/default/users/oStolenAcct/block",
            Some(&json!({ "until": CLOCK_START + 3600, "reason": "stolen" })),
        )
        .await;
    assert_eq!(blocked.json(), json!({ "revoked": 1 }), "{}", blocked.text);
    a.get_session(&again)
        .await
        .assert_error(401, "invalid_token");
    wechat_answers(&a.wechat, success("oStolenAcct", None)).await;
    a.post_openid(&json!({ "code": "c-refused" }))
        .await
        .assert_error(403, "user_blocked");
    let user = stolen(&a, reqwest::Method::GET, "").await;
    assert_eq!(
        user.json()["sessions"],
        0,
        "a refused login stored no session"
    );
    assert_eq!(user.json()["blocked_until"], CLOCK_START + 3600);
    assert_eq!(user.json()["block_reason"], "stolen");

    let lifted = stolen(&b, reqwest::Method::DELETE, "/block").await;
    assert_eq!(lifted.json(), json!({ "unblocked": true }));
    assert_eq!(a.post_openid(&json!({ "code": "c-ok" })).await.status, 200);
}

async fn a_unionid_revocation_reaches_every_app_through_redis(redis: &impl SharedRedis) {
    let mut env: Vec<(String, String)> = redis
        .settings()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.push(("WXLOGIN_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_apps(
        &[("shop", "wx_shop_appid"), ("club", "wx_club_appid")],
        &env,
    )
    .await;
    let mut tokens = Vec::new();
    for (name, openid) in [("shop", "oShopSide"), ("club", "oClubSide")] {
        wechat_answers(&app.wechat, success(openid, Some("uOnePerson"))).await;
        let url = format!("{}/apps/{name}/openid", app.address);
        let reply = app
            .send(app.http.post(url).json(&json!({ "code": name })))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let token = reply.json()["token"].as_str().expect("a token").to_owned();
        tokens.push((name, token));
    }
    let revoked = app
        .admin(
            reqwest::Method::DELETE,
            "/admin/unionids/uOnePerson/sessions",
            None,
        )
        .await;
    assert_eq!(revoked.json(), json!({ "revoked": 2 }), "{}", revoked.text);
    for (name, token) in &tokens {
        app.get_as(token, &format!("/apps/{name}/session"))
            .await
            .assert_error(401, "invalid_token");
    }
}

#[tokio::test]
async fn a_session_record_says_when_it_ends_under_both_names_and_reads_with_either() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = instance(&redis, None).await;
    let token = app.login_as("code-1", "oRenamedField").await;
    let hash: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let key = format!("wxlogin:session:{hash}");

    let fields = redis.cli(&["HMGET", &key, "ends_at", "expires_at"]);
    let fields: Vec<&str> = fields.lines().collect();
    assert_eq!(fields.len(), 2, "{fields:?}");
    assert_eq!(fields[0], (CLOCK_START + 604_800).to_string(), "{fields:?}");
    assert_eq!(
        fields[0], fields[1],
        "the previous release reads expires_at"
    );

    // A record with the new name only, as a later release will write it, reads as well.
    redis.cli(&["HDEL", &key, "expires_at"]);
    let session = app.get_session(&token).await;
    assert_eq!(session.status, 200, "{}", session.text);
    assert_eq!(session.json()["openid"], "oRenamedField");
}
