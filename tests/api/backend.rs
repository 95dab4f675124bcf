//! The team's other backends get the apps' access_token from wxlogin: one token for every
//! replica, a reported rejection refreshed once however many report it, backend
//! credentials apart from the admin token, and none of it in a log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::*;
use crate::redis_server::{RedisServer, SharedRedis};

const MESSAGES: &str = "messages-backend-token-0123456789abcdef";
const QR_CODES: &str = "qr-codes-backend-token-0123456789abcdef";

fn backends() -> String {
    format!("messages={MESSAGES},qr-codes={QR_CODES}")
}

/// A `stable_token` that behaves as WeChat's: the same token until a forced refresh makes
/// the next (`TOKEN_1`, `TOKEN_2`, …), and a count of the forced ones.
#[derive(Clone, Default)]
struct StableToken {
    generation: Arc<AtomicUsize>,
    forced: Arc<AtomicUsize>,
}

impl Respond for StableToken {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        if body["force_refresh"] == true {
            self.forced.fetch_add(1, Ordering::SeqCst);
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        let token = format!("TOKEN_{}", self.generation.load(Ordering::SeqCst) + 1);
        wechat_json(json!({ "access_token": token, "expires_in": 7200 }))
    }
}

impl StableToken {
    async fn mount(&self, wechat: &MockServer) {
        Mock::given(method("POST"))
            .and(path(STABLE_TOKEN))
            .respond_with(self.clone())
            .mount(wechat)
            .await;
    }

    fn forced(&self) -> usize {
        self.forced.load(Ordering::SeqCst)
    }
}

async fn spawn(extra: &[(&str, &str)]) -> (TestApp, StableToken) {
    let backends = backends();
    let mut env = vec![("WXLOGIN_BACKEND_TOKENS", backends.as_str())];
    env.extend_from_slice(extra);
    let app = spawn_app_with(&env).await;
    let stub = StableToken::default();
    stub.mount(&app.wechat).await;
    (app, stub)
}

async fn backend_call(
    base: &str,
    token: &str,
    method: Method,
    route: &str,
    body: Option<&Value>,
) -> Reply {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{route}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    Reply::read(request.send().await.expect("wxlogin answers")).await
}

async fn get_token(base: &str, token: &str) -> Reply {
    backend_call(base, token, Method::GET, "/apps/default/access_token", None).await
}

async fn report(base: &str, token: &str, rejected: &str) -> Reply {
    let body = json!({ "rejected": rejected });
    backend_call(
        base,
        token,
        Method::POST,
        "/apps/default/access_token/refresh",
        Some(&body),
    )
    .await
}

#[tokio::test]
async fn a_backend_gets_the_token_wxlogin_uses_never_cacheable_by_name_or_appid() {
    let (app, _) = spawn(&[]).await;
    let reply = get_token(&app.address, MESSAGES).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["access_token"], "TOKEN_1");
    let expires_in = reply.json()["expires_in"].as_u64().expect("expires_in");
    assert!((1..=7200).contains(&expires_in), "{expires_in}");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let by_appid = backend_call(
        &app.address,
        QR_CODES,
        Method::GET,
        &format!("/apps/{APPID}/access_token"),
        None,
    )
    .await;
    assert_eq!(by_appid.json()["access_token"], "TOKEN_1");
    backend_call(
        &app.address,
        MESSAGES,
        Method::GET,
        "/apps/nope/access_token",
        None,
    )
    .await
    .assert_error(404, "unknown_app");
}

#[tokio::test]
async fn a_stale_report_gets_the_current_token_and_a_second_force_within_30_s_waits() {
    let (app, stub) = spawn(&[]).await;
    assert_eq!(
        get_token(&app.address, MESSAGES).await.json()["access_token"],
        "TOKEN_1"
    );

    let refreshed = report(&app.address, MESSAGES, "TOKEN_1").await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert_eq!(refreshed.json()["access_token"], "TOKEN_2");
    assert_eq!(refreshed.json()["refreshed"], true);
    assert_eq!(stub.forced(), 1);

    let calls = calls_to(&app.wechat, STABLE_TOKEN).await;
    let stale = report(&app.address, QR_CODES, "TOKEN_1").await;
    assert_eq!(stale.json()["access_token"], "TOKEN_2");
    assert_eq!(stale.json()["refreshed"], false);
    assert_eq!(
        calls_to(&app.wechat, STABLE_TOKEN).await,
        calls,
        "no WeChat call"
    );

    let too_soon = report(&app.address, MESSAGES, "TOKEN_2").await;
    too_soon.assert_error(503, "force_refresh_limited");
    assert_eq!(too_soon.header("retry-after"), Some("30"));
    assert_eq!(stub.forced(), 1, "never twice within 30 s");
    app.clock.advance(Duration::from_secs(30));
    let later = report(&app.address, MESSAGES, "TOKEN_2").await;
    assert_eq!(later.json()["access_token"], "TOKEN_3", "{}", later.text);
    assert_eq!(stub.forced(), 2);

    let metrics = app.get("/metrics").await.text;
    for series in [
        r#"wxlogin_backend_requests_total{backend="messages",app="default",route="refresh",outcome="refreshed"} 2"#,
        r#"wxlogin_backend_requests_total{backend="qr-codes",app="default",route="refresh",outcome="ok"} 1"#,
        r#"wxlogin_access_token_refreshes_total{app="default",kind="forced"} 2"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

#[tokio::test]
async fn two_replicas_hand_out_one_token_and_24_reports_of_it_force_one_refresh() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let backends = backends();
    let mut env: Vec<(&str, String)> = redis.settings();
    env.push(("WXLOGIN_BACKEND_TOKENS", backends.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = spawn_app_with(&env).await;
    let stub = StableToken::default();
    stub.mount(&a.wechat).await;
    let wechat = a.wechat.uri();
    let mut b_env = env.clone();
    b_env.push(("WXLOGIN_WECHAT_BASE_URL", wechat.as_str()));
    let b = spawn_app_with(&b_env).await;

    for replica in [&a, &b] {
        let reply = get_token(&replica.address, MESSAGES).await;
        assert_eq!(reply.json()["access_token"], "TOKEN_1", "{}", reply.text);
    }
    let reports = (0..24).map(|n| {
        let base = if n % 2 == 0 { &a.address } else { &b.address };
        let token = if n % 3 == 0 { QR_CODES } else { MESSAGES };
        report(base, token, "TOKEN_1")
    });
    let answers = join_all(reports).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.json()["access_token"], "TOKEN_2");
    }
    assert_eq!(stub.forced(), 1, "one forced refresh for all 24");
    let refreshed = answers
        .iter()
        .filter(|answer| answer.json()["refreshed"] == true)
        .count();
    assert_eq!(refreshed, 1, "one report made the refresh");

    let calls = calls_to(&a.wechat, STABLE_TOKEN).await;
    let stale = report(&b.address, MESSAGES, "TOKEN_1").await;
    assert_eq!(stale.json()["refreshed"], false);
    assert_eq!(calls_to(&a.wechat, STABLE_TOKEN).await, calls);
}

#[tokio::test]
async fn off_every_backend_route_is_404() {
    let app = spawn_app().await;
    get_token(&app.address, MESSAGES)
        .await
        .assert_error(404, "not_found");
    report(&app.address, MESSAGES, "TOKEN_1")
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn with_a_private_listener_the_routes_are_there_and_404_on_the_public_one() {
    let (app, _) = spawn(&[("WXLOGIN_ADMIN_LISTEN", "127.0.0.1:0")]).await;
    let private = app.admin_address.clone().expect("a private listener");
    get_token(&app.address, MESSAGES)
        .await
        .assert_error(404, "not_found");
    let reply = get_token(&private, MESSAGES).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        app.get("/admin/apps/default/users/oA").await.status == 404,
        "the admin API stays off: no admin token"
    );
}

#[tokio::test]
async fn the_admin_token_is_refused_here_and_a_backend_token_on_admin() {
    let (app, _) = spawn(&[("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    for wrong in [ADMIN_TOKEN, "", &MESSAGES[1..]] {
        let reply = get_token(&app.address, wrong).await;
        reply.assert_error(401, "invalid_backend_token");
        assert!(reply.header("www-authenticate").is_some());
    }
    backend_call(
        &app.address,
        "",
        Method::DELETE,
        "/apps/default/access_token",
        None,
    )
    .await
    .assert_error(401, "invalid_backend_token");
    backend_call(
        &app.address,
        MESSAGES,
        Method::GET,
        "/admin/apps/default/users/oA",
        None,
    )
    .await
    .assert_error(401, "invalid_admin_token");
}

#[tokio::test]
async fn no_backend_token_and_no_access_token_reaches_a_log_line() {
    let (app, _) = spawn(&[]).await;
    get_token(&app.address, MESSAGES).await;
    report(&app.address, MESSAGES, "TOKEN_1").await;
    get_token(&app.address, "wrong-token-0123456789abcdefghijklmn").await;
    let logs = captured_logs();
    assert!(
        logs.contains(r#""backend":"messages""#),
        "the refresh is audited by backend name"
    );
    for secret in [MESSAGES, QR_CODES, "TOKEN_1", "TOKEN_2", &app.secret] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}
