//! session_keys sealed at rest in Redis (`WXLOGIN_STORE_KEY_FILE`): no dump of wxlogin's
//! keys holds one, another instance with the key uses them, a wrong key is a clear 500 that `/readyz` reports,
//! a rotation keeps old sessions working, and values from before a key still read.

use std::path::PathBuf;

use serde_json::json;
use wiremock::Mock;
use wiremock::matchers::{method, path, query_param};

use crate::helpers::*;
use crate::open_data::{ENCRYPTED, IV};
use crate::redis_server::{RedisServer, SharedRedis};
use crate::server_apis::SESSION_KEY_HMAC;

const KEY_1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The user the open-data vector (`ENCRYPTED`) was sealed for.
const OPENID: &str = "oTestUser0001";
const KEY_2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// A file holding `contents`, as a container secret would be mounted.
fn secret_file(contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wxlogin-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("key");
    std::fs::write(&path, format!("{contents}\n")).expect("the key file");
    path
}

/// An instance on `redis` sealing with `current`, and reading with `old` too.
async fn instance(redis: &RedisServer, current: Option<&str>, old: &[&str]) -> TestApp {
    let mut env: Vec<(&str, String)> = redis.settings();
    if let Some(key) = current {
        env.push((
            "WXLOGIN_STORE_KEY_FILE",
            secret_file(key).display().to_string(),
        ));
    }
    if !old.is_empty() {
        let file = secret_file(&format!("# retired keys\n{}", old.join("\n")));
        env.push(("WXLOGIN_STORE_OLD_KEYS_FILE", file.display().to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&env).await
}

async fn decrypts(app: &TestApp, token: &str) -> Reply {
    let sealed = json!({ "encryptedData": ENCRYPTED, "iv": IV });
    app.post_as(token, "/wechat/decrypt", &sealed).await
}

/// Everything Redis holds under each of wxlogin's keys: its fields and values, and its
/// serialised form (`DUMP`).
fn dump(redis: &RedisServer) -> String {
    let mut all = String::new();
    for key in redis.keys() {
        let contents = match redis.cli(&["TYPE", &key]).trim() {
            "hash" => redis.cli(&["HGETALL", &key]),
            "zset" => redis.cli(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]),
            "set" => redis.cli(&["SMEMBERS", &key]),
            _ => redis.cli(&["GET", &key]),
        };
        all.push_str(&format!(
            "{key}\n{contents}\n{}\n",
            redis.cli(&["DUMP", &key])
        ));
    }
    all
}

fn user_record_key(redis: &RedisServer, openid: &str) -> String {
    redis
        .cli(&[
            "HGET",
            &format!("wxlogin:user:{{default:{openid}}}"),
            "session_key",
        ])
        .trim()
        .to_owned()
}

#[tokio::test]
async fn no_dump_holds_a_session_key_and_another_instance_with_the_key_uses_it() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis, Some(KEY_1), &[]).await;
    let b = instance(&redis, Some(KEY_1), &[]).await;
    let token = a.login_as("c1", OPENID).await;

    let dump = dump(&redis);
    assert!(dump.contains("wxlogin:user:"), "{dump}");
    assert!(
        !dump.contains(SESSION_KEY),
        "the session_key in base64: {dump}"
    );
    let raw: String = (0u8..16).map(char::from).collect();
    assert!(!dump.contains(&raw), "the session_key's bytes");
    assert!(user_record_key(&redis, OPENID).starts_with("sealed1:"));

    let opened = decrypts(&b, &token).await;
    assert_eq!(opened.status, 200, "{}", opened.text);
    stable_token_answers(&b.wechat, "AT-1", 7200).await;
    Mock::given(method("GET"))
        .and(path(CHECK_SESSION))
        .and(query_param("signature", SESSION_KEY_HMAC))
        .respond_with(wechat_json(json!({ "errcode": 0, "errmsg": "ok" })))
        .mount(&b.wechat)
        .await;
    let checked = b.get_as(&token, "/wechat/check_session").await;
    assert_eq!(
        checked.status, 200,
        "signed with the unsealed key: {}",
        checked.text
    );
    assert_eq!(checked.json(), json!({ "valid": true }));
}

#[tokio::test]
async fn a_wrong_key_is_a_500_misconfigured_that_readyz_and_metrics_report_logged_without_the_value()
 {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = instance(&redis, Some(KEY_1), &[]).await;
    let stranger = instance(&redis, Some(KEY_2), &[]).await;
    let token = a.login_as("c1", OPENID).await;
    let sealed = user_record_key(&redis, OPENID);
    let ready = stranger.get("/readyz").await;
    assert_eq!(
        ready.json(),
        json!({ "status": "ready" }),
        "nothing seen yet"
    );

    let reply = decrypts(&stranger, &token).await;
    reply.assert_error(500, "misconfigured");
    assert_eq!(
        reply.header("retry-after"),
        None,
        "sending it again never heals a wrong key"
    );
    assert_eq!(
        stranger.get_session(&token).await.status,
        200,
        "lookups need no key"
    );
    let ready = stranger.get("/readyz").await;
    assert_eq!(
        ready.status, 200,
        "one unreadable record must not pull every replica"
    );
    let warning = &ready.json()["warnings"][0];
    assert_eq!(warning["kind"], "store_key_mismatch", "{}", ready.text);
    assert_eq!(warning["count"], 1, "{}", ready.text);
    let key_id = sealed.split(':').nth(1).expect("a key id");
    assert_eq!(warning["key_id"], key_id, "{}", ready.text);
    assert!(
        stranger
            .metrics()
            .await
            .contains("wxlogin_store_key_mismatches_total 1"),
        "counted for alerts"
    );
    assert_eq!(a.get("/readyz").await.json(), json!({ "status": "ready" }));

    let logs = captured_logs();
    let line = logs
        .lines()
        .find(|line| line.contains("store key mismatch"))
        .expect("the mismatch is logged");
    assert!(line.contains("ERROR"), "{line}");
    let body = sealed.split(':').nth(2).expect("a sealed body");
    for secret in [body, KEY_1, KEY_2, SESSION_KEY] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(!ready.text.contains(secret), "{secret} in /readyz");
    }

    let again = stranger.login_as("c2", OPENID).await;
    assert_eq!(
        decrypts(&stranger, &again).await.status,
        200,
        "a new login reseals the user's session_key under the configured key"
    );
}

#[tokio::test]
async fn a_rotated_key_keeps_old_sessions_working_and_the_next_login_reseals() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let before = instance(&redis, Some(KEY_1), &[]).await;
    let token = before.login_as("c1", OPENID).await;
    let under_key_1 = user_record_key(&redis, OPENID);

    let rotated = instance(&redis, Some(KEY_2), &[KEY_1]).await;
    let opened = decrypts(&rotated, &token).await;
    assert_eq!(
        opened.status, 200,
        "an old key still reads: {}",
        opened.text
    );
    rotated.login_as("c2", OPENID).await;
    let under_key_2 = user_record_key(&redis, OPENID);
    let key_id = |sealed: &str| sealed.split(':').nth(1).map(str::to_owned);
    assert_ne!(key_id(&under_key_1), key_id(&under_key_2), "resealed");

    let retired = instance(&redis, Some(KEY_2), &[]).await;
    let opened = decrypts(&retired, &token).await;
    assert_eq!(
        opened.status, 200,
        "the old key is no longer needed: {}",
        opened.text
    );
}

#[tokio::test]
async fn without_a_key_values_are_in_the_clear_with_a_warning_and_read_once_a_key_is_set() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let plain = instance(&redis, None, &[]).await;
    let token = plain.login_as("c1", OPENID).await;
    assert_eq!(user_record_key(&redis, OPENID), SESSION_KEY);
    assert!(
        captured_logs()
            .lines()
            .any(|line| line.contains("WARN") && line.contains("in the clear")),
        "the start-up warning"
    );

    let sealing = instance(&redis, Some(KEY_1), &[]).await;
    let opened = decrypts(&sealing, &token).await;
    assert_eq!(opened.status, 200, "{}", opened.text);
}
