//! A WeChat that holds logins until the test lets them go: for tests that need requests
//! in flight (graceful shutdown, load shedding).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

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
    calls: Arc<AtomicUsize>,
    /// The errcode held calls are answered with; 0 answers a session.
    errcode: Arc<AtomicI64>,
}

pub async fn held_wechat() -> HeldWeChat {
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let answers = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&answers);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let errcode = Arc::new(AtomicI64::new(0));
    let answer_with = Arc::clone(&errcode);
    let app = Router::new().route(
        "/sns/jscode2session",
        get(move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            arrived_tx.send(()).ok();
            held.acquire().await.expect("never closed").forget();
            match answer_with.load(Ordering::SeqCst) {
                0 => json!({ "openid": "oDraining", "session_key": SESSION_KEY }).to_string(),
                errcode => {
                    json!({ "errcode": errcode, "errmsg": "held, then refused" }).to_string()
                }
            }
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
        calls,
        errcode,
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
        self.hold_a_forwarded_login(base_url, code, None).await
    }

    /// As [`HeldWeChat::hold_a_login`], as a proxy would send it for `client`, if given.
    pub async fn hold_a_forwarded_login(
        &mut self,
        base_url: &str,
        code: &str,
        client: Option<&str>,
    ) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
        let mut login = reqwest::Client::new()
            .post(format!("{base_url}/openid"))
            .json(&json!({ "code": code }));
        if let Some(client) = client {
            login = login.header("x-forwarded-for", client);
        }
        let login = tokio::spawn(login.send());
        self.arrived.recv().await.expect("the login reached WeChat");
        login
    }

    /// A login with `code` that WeChat answers at once.
    pub async fn answer_a_login(&mut self, base_url: &str, code: &str) -> reqwest::Response {
        self.release(1);
        let login = self.hold_a_login(base_url, code).await;
        login.await.expect("join").expect("answered")
    }

    /// How many code2Session calls have arrived so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes the calls answered from now on fail with `errcode`.
    pub fn fail_held_with(&self, errcode: i64) {
        self.errcode.store(errcode, Ordering::SeqCst);
    }

    /// Lets `n` held calls (or calls still to come) be answered.
    pub fn release(&self, n: usize) {
        self.answers.add_permits(n);
    }
}
