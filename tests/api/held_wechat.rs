//! A WeChat that holds logins until the test lets them go: for tests that need requests
//! in flight (graceful shutdown, load shedding).

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::helpers::SESSION_KEY;

/// A WeChat that reports each call as it arrives and answers only when released, so a
/// test knows for certain that a login is in flight.
pub struct HeldWeChat {
    pub url: String,
    arrived: mpsc::UnboundedReceiver<()>,
    /// One permit answers one held call, whether it arrived yet or not.
    answers: Arc<Semaphore>,
}

pub async fn held_wechat() -> HeldWeChat {
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let answers = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&answers);
    let app = Router::new().route(
        "/sns/jscode2session",
        get(move || async move {
            arrived_tx.send(()).ok();
            held.acquire().await.expect("never closed").forget();
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
        answers,
    }
}

impl HeldWeChat {
    /// Sends a login with `code` to the wxlogin at `base_url` and returns once WeChat is
    /// holding it.
    pub async fn hold_a_login(
        &mut self,
        base_url: &str,
        code: &str,
    ) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
        let login = tokio::spawn(
            reqwest::Client::new()
                .post(format!("{base_url}/openid"))
                .json(&json!({ "code": code }))
                .send(),
        );
        self.arrived.recv().await.expect("the login reached WeChat");
        login
    }

    /// A login with `code` that WeChat answers at once.
    pub async fn answer_a_login(&mut self, base_url: &str, code: &str) -> reqwest::Response {
        self.release(1);
        let login = self.hold_a_login(base_url, code).await;
        login.await.expect("join").expect("answered")
    }

    /// Lets `n` held calls (or calls still to come) be answered.
    pub fn release(&self, n: usize) {
        self.answers.add_permits(n);
    }
}
