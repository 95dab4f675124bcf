//! Sliding expiry (`WXLOGIN_SESSION_IDLE_SECS`): a session in use lives on, an idle one
//! dies, and none outlives its absolute TTL; `expires_in` always names the earlier
//! deadline. On the memory store and on Redis, with the manual clock.

use std::time::Duration;

use crate::helpers::*;
use crate::redis_server::{RedisServer, SharedRedis};

const IDLE: u64 = 600;
const TTL: u64 = 3600;
/// What a session is given beyond the window each time its deadline moves.
const GRACE: u64 = IDLE / 4;

fn sliding() -> Vec<(&'static str, String)> {
    vec![
        ("WXLOGIN_SESSION_IDLE_SECS", IDLE.to_string()),
        ("WXLOGIN_SESSION_TTL_SECS", TTL.to_string()),
    ]
}

async fn spawn(extra: Vec<(&'static str, String)>) -> TestApp {
    let mut env = sliding();
    env.extend(extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&env).await
}

async fn expires_in(app: &TestApp, token: &str) -> Option<u64> {
    let reply = app.get_session(token).await;
    match reply.status {
        200 => reply.json()["expires_in"].as_u64(),
        _ => {
            reply.assert_error(401, "invalid_token");
            None
        }
    }
}

/// At `CLOCK_START + at`.
fn move_to(app: &TestApp, at: u64) {
    let now = wxlogin::clock::Clock::Manual(app.clock.clone()).now() - CLOCK_START;
    app.clock.advance(Duration::from_secs(at - now));
}

async fn a_used_session_lives_on_an_idle_one_dies_and_none_outlives_the_ttl(app: &TestApp) {
    wechat_answers(&app.wechat, success("oSlider", None)).await;
    let reply = app.post_openid(&serde_json::json!({ "code": "c1" })).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json()["expires_in"],
        IDLE + GRACE,
        "the earlier deadline: the window and its grace"
    );
    let busy = reply.json()["token"].as_str().expect("a token").to_owned();
    let idle = app.login_as("c2", "oSlider").await;

    move_to(app, 100);
    assert_eq!(
        expires_in(app, &busy).await,
        Some(IDLE + GRACE - 100),
        "not moved yet: more than the window left"
    );
    move_to(app, 200);
    assert_eq!(
        expires_in(app, &busy).await,
        Some(IDLE + GRACE),
        "moved once less than the window was left"
    );
    move_to(app, IDLE + GRACE);
    assert_eq!(
        expires_in(app, &idle).await,
        None,
        "unused for the window and its grace: gone"
    );
    assert_eq!(expires_in(app, &busy).await, Some(IDLE + GRACE));

    let mut at = IDLE;
    while at + 250 < TTL {
        at += 250;
        move_to(app, at);
        let left = expires_in(app, &busy).await.expect("in use, it lives on");
        assert!(
            left <= TTL - at,
            "never past the TTL: {left} s left at {at}"
        );
    }
    move_to(app, TTL - 100);
    assert_eq!(expires_in(app, &busy).await, Some(100), "capped at the TTL");
    move_to(app, TTL);
    assert_eq!(
        expires_in(app, &busy).await,
        None,
        "dead at the TTL, however busy"
    );
}

#[tokio::test]
async fn in_memory_a_used_session_lives_on_an_idle_one_dies_and_none_outlives_the_ttl() {
    let app = spawn(Vec::new()).await;
    a_used_session_lives_on_an_idle_one_dies_and_none_outlives_the_ttl(&app).await;
}

#[tokio::test]
async fn in_redis_a_used_session_lives_on_an_idle_one_dies_and_none_outlives_the_ttl() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn(redis.settings()).await;
    a_used_session_lives_on_an_idle_one_dies_and_none_outlives_the_ttl(&app).await;
}

#[tokio::test]
async fn redis_moves_a_deadline_only_once_less_than_the_window_is_left() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn(redis.settings()).await;
    let token = app.login_as("c1", "oCounted").await;
    let key = redis
        .keys()
        .into_iter()
        .find(|key| key.starts_with("wxlogin:session:"))
        .expect("the session's key");
    let idle_until = || redis.cli(&["HGET", &key, "idle_until"]).trim().to_owned();
    let redis_ttl = || {
        redis
            .cli(&["TTL", &key])
            .trim()
            .parse::<u64>()
            .expect("a TTL")
    };
    assert_eq!(idle_until(), (CLOCK_START + IDLE + GRACE).to_string());
    assert!(
        redis_ttl() <= IDLE + GRACE,
        "Redis expires it at the idle deadline"
    );

    let touches_before = touches(&redis);
    for at in [10, 100, GRACE - 1] {
        move_to(&app, at);
        assert!(expires_in(&app, &token).await.is_some());
    }
    assert_eq!(
        idle_until(),
        (CLOCK_START + IDLE + GRACE).to_string(),
        "no write yet"
    );
    assert_eq!(
        touches(&redis),
        touches_before,
        "lookups alone: no extra command"
    );
    move_to(&app, GRACE);
    assert_eq!(expires_in(&app, &token).await, Some(IDLE + GRACE));
    assert_eq!(
        idle_until(),
        (CLOCK_START + GRACE + IDLE + GRACE).to_string()
    );
    assert_eq!(touches(&redis), touches_before + 1, "one extra command");
}

/// Scripts Redis has run to the end (`evalsha` calls, less those that failed: the first
/// call of a script Redis does not have yet fails with NOSCRIPT and is sent again after a
/// SCRIPT LOAD). The login's and the deadline's moves.
fn touches(redis: &RedisServer) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    let Some(line) = stats
        .lines()
        .find_map(|line| line.trim().strip_prefix("cmdstat_evalsha:"))
    else {
        return 0;
    };
    let field = |name: &str| -> u64 {
        line.split(',')
            .find_map(|pair| pair.strip_prefix(name))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    field("calls=") - field("failed_calls=") - field("rejected_calls=")
}
