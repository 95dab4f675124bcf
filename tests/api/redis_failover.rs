//! A Redis Cluster losing a primary, moving a slot, or losing a whole shard, and wxlogin
//! pointed at the wrong kind of Redis. Against six real redis-server processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, Request, ResponseTemplate};

use crate::helpers::*;
use crate::redis_cluster::RedisCluster;
use crate::redis_server::RedisServer;
use crate::redis_store::instance;

/// WeChat's answer to code `c`: the openid `o<c>`, so one stub serves any number of users.
fn openid_from_code(request: &Request) -> ResponseTemplate {
    let code = request
        .url
        .query_pairs()
        .find(|(name, _)| name == "js_code")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    wechat_json(json!({ "openid": format!("o{code}"), "session_key": SESSION_KEY }))
}

async fn log_in(app: &TestApp, code: &str) -> Reply {
    app.post_openid(&json!({ "code": code })).await
}

/// What any request may answer while the cluster fails over: its right answer, or a 503
/// that says when to come back. Never a 500, never someone else's session.
fn assert_served_or_told_to_retry(reply: &Reply, openid: &str) {
    match reply.status {
        200 => assert_eq!(reply.json()["openid"], openid, "{}", reply.text),
        503 => {
            reply.assert_error(503, "store_unavailable");
            assert!(reply.header("retry-after").is_some(), "{}", reply.text);
        }
        _ => panic!("during a failover: {} {}", reply.status, reply.text),
    }
}

/// As above for a login, which may also find its code spent: WeChat accepted it and the
/// write failed after, which the answer says without a Retry-After (the same code would be
/// refused), so that the client fetches a new one.
fn assert_logged_in_or_told_what_to_do(reply: &Reply, openid: &str) {
    if reply.status == 503 && reply.header("retry-after").is_none() {
        reply.assert_error(503, "store_unavailable");
        assert!(
            reply.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains("wx.login()"))
        );
    } else {
        assert_served_or_told_to_retry(reply, openid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_a_primary_loses_no_acknowledged_session() {
    let Some(mut cluster) = RedisCluster::start().await else {
        return;
    };
    let a = instance(&cluster, None).await;
    let b = instance(&cluster, Some(&a.wechat.uri())).await;
    Mock::given(path(CODE2SESSION))
        .respond_with(openid_from_code)
        .mount(&a.wechat)
        .await;

    let mut sessions = Vec::new();
    for i in 0..300 {
        let app = if i % 2 == 0 { &a } else { &b };
        let code = format!("User{i:04}");
        let reply = log_in(app, &code).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let token = reply.json()["token"].as_str().expect("a token").to_owned();
        sessions.push((token, format!("o{code}")));
    }
    let spread = cluster.keys_per_primary();
    assert!(spread.values().all(|&keys| keys > 0), "{spread:?}");
    cluster.wait_until_replicated().await;

    // Keep both instances busy with lookups and logins while a primary dies.
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (http, addresses, sessions, done) = (
                a.http.clone(),
                [a.address.clone(), b.address.clone()],
                sessions.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = worker;
                while !done.load(Ordering::Relaxed) {
                    let address = &addresses[n % 2];
                    let (token, openid) = &sessions[n % sessions.len()];
                    let lookup = http.get(format!("{address}/session")).bearer_auth(token);
                    let reply = Reply::read(lookup.send().await.expect("answered")).await;
                    answers.push((reply, openid.clone(), false));
                    let code = format!("During{worker}x{n:05}");
                    let login = http
                        .post(format!("{address}/openid"))
                        .json(&json!({ "code": code }));
                    let reply = Reply::read(login.send().await.expect("answered")).await;
                    answers.push((reply, format!("o{code}"), true));
                    n += 8;
                }
                answers
            })
        })
        .collect();
    let victim = cluster
        .primaries()
        .into_iter()
        .find(|n| cluster.seeds(2).contains(&format!(":{}", n.port)))
        .expect("a seed node is a primary");
    cluster.kill(victim.port);
    cluster.wait_for_failover(victim.port).await;
    done.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.expect("a traffic worker"));
    }
    assert!(answers.len() > 2, "there was traffic during the failover");
    for (reply, openid, is_login) in &answers {
        if *is_login {
            assert_logged_in_or_told_what_to_do(reply, openid);
        } else {
            assert_served_or_told_to_retry(reply, openid);
        }
    }

    for (token, openid) in &sessions {
        for app in [&a, &b] {
            eventually("every session is served again", || async {
                app.get_session(token).await.status == 200
            })
            .await;
            let reply = app.get_session(token).await;
            assert_eq!(reply.json()["openid"], openid.as_str(), "{}", reply.text);
        }
    }
    for (i, app) in [&a, &b].into_iter().enumerate() {
        eventually("logins work again", || async {
            log_in(app, &format!("After{i}")).await.status == 200
        })
        .await;
        for j in 0..20 {
            let reply = log_in(app, &format!("Then{i}x{j}")).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_whose_user_slot_just_moved_succeeds() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let app = instance(&cluster, None).await;
    Mock::given(path(CODE2SESSION))
        .respond_with(openid_from_code)
        .mount(&app.wechat)
        .await;
    // The client learns the slot map now, before the slot moves.
    assert_eq!(log_in(&app, "Warm").await.status, 200);

    // A user whose record lives in one of the lowest slots of its primary: those are the
    // slots `reshard` moves first.
    let (code, slot) = (0..)
        .map(|i| format!("Moved{i}"))
        .map(|code| {
            let tag = format!("default:o{code}");
            let slot: u16 = cluster
                .cli_any(&["CLUSTER", "KEYSLOT", &tag])
                .trim()
                .parse()
                .expect("a slot");
            (code, slot)
        })
        .find(|(_, slot)| cluster.owner_of(*slot).slots[0].0 + 50 > *slot)
        .expect("such a user");
    let from = cluster.owner_of(slot);
    let to = cluster
        .primaries()
        .into_iter()
        .find(|n| n.id != from.id)
        .expect("another primary");
    let redirects_before = cluster.moved_replies(from.port);
    cluster.reshard(&from, &to, 50);
    assert_eq!(cluster.owner_of(slot).id, to.id, "the slot moved");

    let reply = log_in(&app, &code).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        cluster.moved_replies(from.port) > redirects_before,
        "wxlogin was sent to the slot's old primary and redirected"
    );
    let user_key = format!("wxlogin:user:{{default:o{code}}}");
    assert_eq!(cluster.cli(to.port, &["EXISTS", &user_key]).trim(), "1");
    let token = reply.json()["token"].as_str().expect("a token").to_owned();
    assert_eq!(
        app.get_session(&token).await.json()["openid"],
        format!("o{code}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_missing_a_whole_shard_is_not_ready_and_says_why() {
    let Some(mut cluster) = RedisCluster::start().await else {
        return;
    };
    let app = instance(&cluster, None).await;
    let token = app.login_as("code-1", "oBeforeTheLoss").await;
    let topology = cluster.topology();
    let lost = cluster.owner_of(0);
    for node in topology
        .iter()
        .filter(|n| n.id == lost.id || n.replica_of.as_deref() == Some(lost.id.as_str()))
    {
        cluster.kill(node.port);
    }

    eventually(
        "/readyz says the cluster cannot serve every slot",
        || async {
            let reply = app.get_as("", "/readyz").await;
            reply.status == 503 && reply.text.contains("cannot serve every slot")
        },
    )
    .await;
    let ready = app.get_as("", "/readyz").await;
    ready.assert_error(503, "store_unavailable");
    let lookup = app.get_session(&token).await;
    lookup.assert_error(503, "store_unavailable");
    assert!(lookup.header("retry-after").is_some());
}

/// `/readyz` with a message that contains `words`, reached without a hang: every request
/// of the test client gives up after ten seconds.
async fn not_ready_saying(app: &TestApp, words: &str) -> Value {
    eventually(&format!("/readyz says {words:?}"), || async {
        app.get_as("", "/readyz").await.text.contains(words)
    })
    .await;
    let reply = app.get_as("", "/readyz").await;
    reply.assert_error(503, "store_unavailable");
    reply.json()
}

/// A login answers 503 before it asks WeChat: the user's code is kept.
async fn a_login_is_refused_without_spending_its_code(app: &TestApp) {
    log_in(app, "kept")
        .await
        .assert_error(503, "store_unavailable");
    assert_eq!(
        calls_to(&app.wechat, CODE2SESSION).await,
        0,
        "the code was not spent"
    );
}

#[tokio::test]
async fn cluster_mode_pointed_at_one_plain_redis_says_to_use_standalone() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = spawn_app_with(&[
        ("WXLOGIN_SESSION_STORE", "redis"),
        ("WXLOGIN_REDIS_MODE", "cluster"),
        ("WXLOGIN_REDIS_URL", &redis.url()),
        ("WXLOGIN_REDIS_TIMEOUT_MS", "500"),
    ])
    .await;
    not_ready_saying(&app, "WXLOGIN_REDIS_MODE=standalone").await;
    a_login_is_refused_without_spending_its_code(&app).await;
    assert!(captured_logs().contains("WXLOGIN_REDIS_MODE=standalone"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_mode_pointed_at_a_cluster_node_says_to_use_cluster() {
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let app = spawn_app_with(&[
        ("WXLOGIN_SESSION_STORE", "redis"),
        ("WXLOGIN_REDIS_URL", &cluster.seeds(1)),
        ("WXLOGIN_REDIS_TIMEOUT_MS", "500"),
    ])
    .await;
    not_ready_saying(&app, "WXLOGIN_REDIS_MODE=cluster").await;
    a_login_is_refused_without_spending_its_code(&app).await;
}

#[tokio::test]
async fn an_unreachable_seed_list_is_not_ready_and_never_hangs() {
    let seeds = format!(
        "redis://127.0.0.1:{},redis://127.0.0.1:{}",
        crate::tools::free_port(),
        crate::tools::free_port()
    );
    let app = spawn_app_with(&[
        ("WXLOGIN_SESSION_STORE", "redis"),
        ("WXLOGIN_REDIS_MODE", "cluster"),
        ("WXLOGIN_REDIS_URL", &seeds),
        ("WXLOGIN_REDIS_TIMEOUT_MS", "500"),
    ])
    .await;
    let answer = not_ready_saying(&app, "unreachable").await;
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("session store"))
    );
    a_login_is_refused_without_spending_its_code(&app).await;
}
