//! Our own outage never spends the user's one-time code: a login checks that the store
//! takes writes before it asks WeChat, and when the store fails after WeChat answered, the
//! answer says that the code is spent. Against a real redis-server.

use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::path;

use crate::held_wechat::held_wechat;
use crate::helpers::*;
use crate::redis_server::RedisServer;

async fn instance(redis: &RedisServer, wechat_url: Option<&str>) -> TestApp {
    let url = redis.url();
    let mut env = vec![
        ("WXLOGIN_SESSION_STORE", "redis"),
        ("WXLOGIN_REDIS_URL", url.as_str()),
        ("WXLOGIN_REDIS_TIMEOUT_MS", "500"),
    ];
    if let Some(wechat_url) = wechat_url {
        env.push(("WXLOGIN_WECHAT_BASE_URL", wechat_url));
    }
    spawn_app_with(&env).await
}

/// Waits until `/readyz` answers `status`: the moment wxlogin has seen the store's state.
async fn ready_is(app: &TestApp, status: u16) -> Reply {
    eventually(&format!("/readyz answers {status}"), || async {
        app.get_as("", "/readyz").await.status == status
    })
    .await;
    app.get_as("", "/readyz").await
}

/// A login refused before WeChat, so that the client may send the same code again.
fn assert_refused_unspent(reply: &Reply) {
    reply.assert_error(503, "store_unavailable");
    assert!(reply.header("retry-after").is_some(), "{}", reply.text);
}

#[tokio::test]
async fn with_redis_down_a_login_is_refused_before_wechat_and_its_code_works_once_redis_is_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = instance(&redis, None).await;
    Mock::given(path(CODE2SESSION))
        .respond_with(success("oPatient", None))
        .mount(&app.wechat)
        .await;
    let code = json!({ "code": "kept-for-later" });

    redis.stop();
    ready_is(&app, 503).await;
    assert_refused_unspent(&app.post_openid(&code).await);
    assert_eq!(
        calls_to(&app.wechat, CODE2SESSION).await,
        0,
        "the code was not spent"
    );

    redis.restart();
    ready_is(&app, 200).await;
    let retried = app.post_openid(&code).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(calls_to(&app.wechat, CODE2SESSION).await, 1);
}

#[tokio::test]
async fn a_redis_out_of_memory_is_refused_before_wechat_and_readyz_says_so() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = instance(&redis, None).await;
    wechat_answers(&app.wechat, success("oNoRoom", None)).await;

    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let not_ready = ready_is(&app, 503).await;
    let refused = app.post_openid(&json!({ "code": "oom-code" })).await;

    not_ready.assert_error(503, "store_unavailable");
    assert!(
        not_ready.text.contains("out of memory"),
        "{}",
        not_ready.text
    );
    assert_refused_unspent(&refused);
    assert_eq!(calls_to(&app.wechat, CODE2SESSION).await, 0);

    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    ready_is(&app, 200).await;
}

#[tokio::test]
async fn a_read_only_redis_is_refused_before_wechat_and_readyz_says_so() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = instance(&redis, None).await;
    wechat_answers(&app.wechat, success("oReadOnly", None)).await;

    // A replica of a primary that does not exist: it refuses every write with READONLY.
    redis.cli(&["REPLICAOF", "127.0.0.1", "1"]);
    let not_ready = ready_is(&app, 503).await;
    let refused = app.post_openid(&json!({ "code": "readonly-code" })).await;

    assert!(not_ready.text.contains("read-only"), "{}", not_ready.text);
    assert_refused_unspent(&refused);
    assert_eq!(calls_to(&app.wechat, CODE2SESSION).await, 0);

    redis.cli(&["REPLICAOF", "NO", "ONE"]);
    ready_is(&app, 200).await;
}

#[tokio::test]
async fn when_redis_fails_after_wechat_answered_the_client_is_told_to_get_a_new_code() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut wechat = held_wechat().await;
    let app = instance(&redis, Some(&wechat.url)).await;
    let login = wechat.hold_a_login(&app.address, "spent").await;

    redis.stop();
    wechat.release(1);
    let reply = Reply::read(login.await.expect("join").expect("answered")).await;

    reply.assert_error(503, "store_unavailable");
    assert_eq!(
        reply.header("retry-after"),
        None,
        "retrying this code can only fail"
    );
    assert!(
        reply.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("wx.login()")),
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn a_session_write_that_timed_out_does_not_land_later_as_an_orphan() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut wechat = held_wechat().await;
    let app = instance(&redis, Some(&wechat.url)).await;
    // Redis knows the session script from then on, so the frozen login's write is one
    // EVALSHA that Redis can run when it wakes.
    let warm_up = wechat.answer_a_login(&app.address, "warm-up").await;
    assert_eq!(warm_up.status(), 200);
    let warm_up: serde_json::Value = warm_up.json().await.expect("JSON");
    let live = redis
        .keys()
        .iter()
        .filter(|k| k.starts_with("wxlogin:session:"))
        .count();
    assert_eq!(live, 1, "{warm_up}");
    let login = wechat.hold_a_login(&app.address, "frozen").await;

    redis.pause();
    wechat.release(1);
    let reply = Reply::read(login.await.expect("join").expect("answered")).await;
    redis.resume();

    reply.assert_error(503, "store_unavailable");
    assert_eq!(reply.header("retry-after"), None);
    // The probe's write comes after the frozen write and its removal on the connection:
    // once a probe has landed, so have they.
    redis.cli(&["DEL", "wxlogin:writable"]);
    eventually("a probe after Redis woke", || async {
        redis.cli(&["EXISTS", "wxlogin:writable"]).trim() == "1"
    })
    .await;
    let sessions = redis
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("wxlogin:session:"))
        .count();
    assert_eq!(
        sessions, 1,
        "only the warm-up's session: the frozen one was removed"
    );
}

#[tokio::test]
async fn an_operator_lookup_on_a_read_only_redis_does_not_let_a_login_spend_its_code() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let app = spawn_app_with(&[
        ("WXLOGIN_SESSION_STORE", "redis"),
        ("WXLOGIN_REDIS_URL", url.as_str()),
        ("WXLOGIN_REDIS_TIMEOUT_MS", "500"),
        ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN),
    ])
    .await;
    app.login_as("c1", "oLookedUp").await;

    redis.cli(&["REPLICAOF", "127.0.0.1", "1"]);
    ready_is(&app, 503).await;
    // A replica answers reads: the lookup succeeds, and must not vouch for writes.
    let user = app
        .admin(
            reqwest::Method::GET,
            "/admin/apps/default/users/oLookedUp",
            None,
        )
        .await;
    assert_eq!(user.status, 200, "{}", user.text);
    assert_eq!(user.json()["sessions"], 1);
    let refused = app.post_openid(&json!({ "code": "after-lookup" })).await;
    assert_refused_unspent(&refused);
    assert_eq!(
        calls_to(&app.wechat, CODE2SESSION).await,
        1,
        "only the login before Redis turned read-only reached WeChat"
    );

    redis.cli(&["REPLICAOF", "NO", "ONE"]);
    ready_is(&app, 200).await;
}

/// Redis refuses writes that need memory once `maxmemory` is reached, but still takes DEL and
/// ZREM: a logout during the fault must not vouch for writes, or the next logins reach
/// WeChat and their codes are spent.
#[tokio::test]
async fn a_logout_on_a_redis_out_of_memory_does_not_let_a_login_spend_its_code() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = instance(&redis, None).await;
    wechat_answers(&app.wechat, success("oFreesMemory", None)).await;
    let token = app.login_as("before-oom", "oFreesMemory").await;

    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    ready_is(&app, 503).await;
    let logout = app
        .send(
            app.http
                .delete(format!("{}/session", app.address))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(
        logout.status, 204,
        "Redis takes a DEL when full: {}",
        logout.text
    );
    let refused = app.post_openid(&json!({ "code": "after-logout" })).await;

    assert_refused_unspent(&refused);
    assert_eq!(
        calls_to(&app.wechat, CODE2SESSION).await,
        1,
        "only the login before Redis filled up reached WeChat"
    );
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    ready_is(&app, 200).await;
}
