//! Graceful shutdown: a stop signal lets the logins in flight finish, within a limit.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::json;
use tokio::sync::{Notify, mpsc, oneshot};
use wxlogin::config::{Mode, Settings};
use wxlogin::session::Clock;
use wxlogin::startup::Application;

use crate::helpers::SESSION_KEY;

/// A WeChat that reports each call as it arrives and answers only when released, so a
/// test knows for certain that a login is in flight.
struct HeldWeChat {
    url: String,
    arrived: mpsc::UnboundedReceiver<()>,
    release: Arc<Notify>,
}

async fn held_wechat() -> HeldWeChat {
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let held = Arc::clone(&release);
    let app = Router::new().route(
        "/sns/jscode2session",
        get(move || async move {
            arrived_tx.send(()).ok();
            held.notified().await;
            json!({ "openid": "oDraining", "session_key": SESSION_KEY }).to_string()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    HeldWeChat {
        url,
        arrived,
        release,
    }
}

/// Starts wxlogin against `wechat`; it stops when the returned sender fires.
async fn start(
    wechat: &HeldWeChat,
    shutdown_timeout_secs: &str,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let env = [
        ("WXLOGIN_APPID", "wx_test_appid"),
        ("WXLOGIN_SECRET", "shutdown-secret"),
        ("WXLOGIN_WECHAT_BASE_URL", wechat.url.as_str()),
        ("WXLOGIN_LISTEN", "127.0.0.1:0"),
        ("WXLOGIN_SHUTDOWN_TIMEOUT_SECS", shutdown_timeout_secs),
    ];
    let settings = Settings::load(env, Mode::Production).expect("settings");
    let app = Application::build(settings, Clock::System)
        .await
        .expect("app");
    let address = format!("http://{}", app.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        stopped.await.ok();
    }));
    (address, stop, server)
}

#[tokio::test]
async fn a_login_in_flight_at_shutdown_still_completes() {
    let mut wechat = held_wechat().await;
    let (address, stop, server) = start(&wechat, "30").await;
    let login = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{address}/openid"))
            .json(&json!({ "code": "in-flight" }))
            .send(),
    );
    wechat
        .arrived
        .recv()
        .await
        .expect("the login reached WeChat");

    stop.send(()).expect("the server is running");
    wechat.release.notify_one();

    let response = login.await.expect("join").expect("the login was answered");
    assert_eq!(response.status(), 200);
    server
        .await
        .expect("join")
        .expect("a clean exit once the login finished");
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_that_outlast_the_timeout() {
    let mut wechat = held_wechat().await;
    let (address, stop, server) = start(&wechat, "1").await;
    let _stuck = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{address}/openid"))
            .json(&json!({ "code": "never-answered" }))
            .send(),
    );
    wechat
        .arrived
        .recv()
        .await
        .expect("the login reached WeChat");

    stop.send(()).expect("the server is running");

    // WeChat is never released: only the shutdown timeout can end the server.
    server
        .await
        .expect("join")
        .expect("exits cleanly at the timeout");
}
