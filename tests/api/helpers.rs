use std::io::Write;
use std::sync::{LazyLock, Mutex, Once};
use std::time::Duration;

use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wxlogin::clock::{Clock, ManualClock};
use wxlogin::config::{LogFormat, Mode, Settings};
use wxlogin::startup::Application;

pub const APPID: &str = "wx_test_appid";
pub const CODE2SESSION: &str = "/sns/jscode2session";
pub const STABLE_TOKEN: &str = "/cgi-bin/stable_token";
pub const PHONE_NUMBER: &str = "/wxa/business/getuserphonenumber";
pub const CHECK_SESSION: &str = "/wxa/checksession";
/// A valid session_key: base64 of the bytes 0..16.
pub const SESSION_KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";
/// Another valid one, the bytes 16..32: for a login WeChat gives a different key.
pub const OTHER_SESSION_KEY: &str = "EBESExQVFhcYGRobHB0eHw==";
/// An admin token for tests that turn the admin API on: 32 characters or more.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghij";
/// The manual clock's starting time; any fixed instant will do.
pub const CLOCK_START: u64 = 1_800_000_000;

/// The issuer of the JWTs in the tests that turn them on.
pub const JWT_ISSUER: &str = "https://login.example.test";

/// A fresh P-256 private key in PKCS#8 PEM, written to a file of its own; its path.
pub fn jwt_key_file() -> String {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .expect("a key")
        .serialize_pem();
    let dir = std::env::temp_dir().join(format!("wxlogin-jwt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a key directory");
    let path = dir.join("key.pem");
    std::fs::write(&path, pem).expect("the key file");
    path.display().to_string()
}

pub struct TestApp {
    pub address: String,
    pub wechat: MockServer,
    pub http: reqwest::Client,
    pub clock: ManualClock,
    /// Unique to this app, so a test can search all captured logs for it.
    pub secret: String,
    /// With several apps (`spawn_apps`): each one's name, appid and secret.
    pub apps: Vec<AppUnderTest>,
    /// The admin listener's base URL, when `WXLOGIN_ADMIN_LISTEN` gave it one.
    pub admin_address: Option<String>,
    /// Dropping it (with the app) shuts the app down, as SIGTERM would.
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Spawns wxlogin against a fresh wiremock WeChat. `overrides` are extra `WXLOGIN_*`
/// variables, applied after the test defaults.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let secret = format!("test-secret-{}", uuid::Uuid::new_v4().simple());
    let apps = [
        ("WXLOGIN_APPID".to_owned(), APPID.to_owned()),
        ("WXLOGIN_SECRET".to_owned(), secret.clone()),
    ];
    spawn(&apps, secret, Vec::new(), overrides).await
}

/// An app of a multi-app deployment: its name, appid and (made-up) secret.
#[derive(Clone)]
pub struct AppUnderTest {
    pub name: String,
    pub appid: String,
    pub secret: String,
}

/// Spawns wxlogin serving the apps `apps` (name, appid), declared by the environment alone
/// (`WXLOGIN_APP_<NAME>_APPID` and `_SECRET`), each with a secret of its own.
pub async fn spawn_apps(apps: &[(&str, &str)], overrides: &[(&str, &str)]) -> TestApp {
    let apps: Vec<AppUnderTest> = apps
        .iter()
        .map(|(name, appid)| AppUnderTest {
            name: (*name).to_owned(),
            appid: (*appid).to_owned(),
            secret: format!("secret-of-{name}-{}", uuid::Uuid::new_v4().simple()),
        })
        .collect();
    let env: Vec<(String, String)> = apps
        .iter()
        .flat_map(|app| {
            let upper = app.name.to_ascii_uppercase();
            [
                (format!("WXLOGIN_APP_{upper}_APPID"), app.appid.clone()),
                (format!("WXLOGIN_APP_{upper}_SECRET"), app.secret.clone()),
            ]
        })
        .collect();
    let secret = apps.first().map(|a| a.secret.clone()).unwrap_or_default();
    spawn(&env, secret, apps, overrides).await
}

async fn spawn(
    apps_env: &[(String, String)],
    secret: String,
    apps: Vec<AppUnderTest>,
    overrides: &[(&str, &str)],
) -> TestApp {
    capture_logs();
    let wechat = MockServer::start().await;
    let mut env = apps_env.to_vec();
    env.extend([
        ("WXLOGIN_WECHAT_BASE_URL".to_owned(), wechat.uri()),
        ("WXLOGIN_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("WXLOGIN_WECHAT_BUSY_RETRY_MS".to_owned(), "10".to_owned()),
    ]);
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let settings = Settings::load(env, Mode::Production).expect("test settings load");
    let clock = ManualClock::starting_at(CLOCK_START);
    let app = Application::build(settings, Clock::Manual(clock.clone()))
        .await
        .expect("app builds");
    let address = format!("http://{}", app.local_addr().expect("bound"));
    let admin_address = app.admin_addr().map(|addr| format!("http://{addr}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        admin_address,
        wechat,
        http: http_client(),
        clock,
        secret,
        apps,
        _stop: stop,
    }
}

/// A wxlogin in development mode, with the built-in emulator as its WeChat.
pub struct DevApp {
    pub address: String,
    /// The built-in emulator's base URL, for its `/dev/*` routes.
    pub emulator: String,
    pub http: reqwest::Client,
}

pub async fn spawn_dev_app() -> DevApp {
    spawn_dev_app_with(&[]).await
}

/// As `spawn_dev_app`, with extra `WXLOGIN_*` variables (apps to emulate, say).
pub async fn spawn_dev_app_with(overrides: &[(&str, &str)]) -> DevApp {
    capture_logs();
    let mut env = vec![("WXLOGIN_LISTEN", "127.0.0.1:0")];
    env.extend_from_slice(overrides);
    let settings = Settings::load(env, Mode::Development).expect("dev settings load");
    let app = Application::build_with_emulator(settings, Clock::System)
        .await
        .expect("dev app builds");
    let address = format!("http://{}", app.local_addr().expect("bound"));
    let emulator = app.emulator_url().expect("an emulator").to_owned();
    tokio::spawn(app.run_until(std::future::pending()));
    DevApp {
        address,
        emulator,
        http: http_client(),
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A response, read whole, so assertions can look at everything.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Self {
            status,
            headers,
            text,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and our error shape, `{"error": kind, "message": "…"}`.
    pub fn assert_error(&self, status: u16, kind: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["error"], kind, "{}", self.text);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.text
        );
    }
}

/// Requests to a running wxlogin, from a test: the same for `TestApp` and `DevApp`.
pub trait Requests {
    fn address(&self) -> &str;
    fn http(&self) -> &reqwest::Client;

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("wxlogin answers")).await
    }

    async fn post_openid(&self, body: &Value) -> Reply {
        let url = format!("{}/openid", self.address());
        self.send(self.http().post(url).json(body)).await
    }

    /// POSTs `body` as JSON to `route` with `token` as the bearer token.
    async fn post_as(&self, token: &str, route: &str, body: &Value) -> Reply {
        let url = format!("{}{route}", self.address());
        self.send(self.http().post(url).bearer_auth(token).json(body))
            .await
    }

    /// The `/metrics` text, checked to be a 200.
    async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.address());
        let reply = self.send(self.http().get(url)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.text
    }

    /// GETs `route` without credentials.
    async fn get(&self, route: &str) -> Reply {
        let url = format!("{}{route}", self.address());
        self.send(self.http().get(url)).await
    }

    async fn get_as(&self, token: &str, route: &str) -> Reply {
        let url = format!("{}{route}", self.address());
        self.send(self.http().get(url).bearer_auth(token)).await
    }
}

impl Requests for TestApp {
    fn address(&self) -> &str {
        &self.address
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Requests for DevApp {
    fn address(&self) -> &str {
        &self.address
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl TestApp {
    /// An admin API request with the admin token, on the admin listener if there is one.
    pub async fn admin(&self, method: reqwest::Method, route: &str, body: Option<&Value>) -> Reply {
        let base = self.admin_address.as_deref().unwrap_or(&self.address);
        let mut request = self
            .http
            .request(method, format!("{base}{route}"))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// Logs in with `code` as `openid` of `unionid`, and returns the token.
    pub async fn login_as_person(&self, code: &str, openid: &str, unionid: &str) -> String {
        wechat_answers(&self.wechat, success(openid, Some(unionid))).await;
        let reply = self.post_openid(&json!({ "code": code })).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["token"].as_str().expect("a token").to_owned()
    }

    pub async fn get_session(&self, token: &str) -> Reply {
        self.send(
            self.http
                .get(format!("{}/session", self.address))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn delete_session(&self, token: &str) -> Reply {
        self.send(
            self.http
                .delete(format!("{}/session", self.address))
                .bearer_auth(token),
        )
        .await
    }

    /// Logs in with `code` against a WeChat that vouches for `openid`, and returns the token.
    pub async fn login_as(&self, code: &str, openid: &str) -> String {
        self.login_with_key(code, openid, SESSION_KEY).await
    }

    /// As `login_as`, with WeChat handing out `session_key`.
    pub async fn login_with_key(&self, code: &str, openid: &str, session_key: &str) -> String {
        let answer = json!({ "openid": openid, "session_key": session_key });
        wechat_answers(&self.wechat, wechat_json(answer)).await;
        let reply = self.post_openid(&json!({ "code": code })).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["token"].as_str().expect("a token").to_owned()
    }
}

/// Polls `condition` until it holds, for at most a minute: for state that a test can
/// observe only from outside (a metric, a log line), never as a stand-in for an event.
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still not true after a minute: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Makes the stub answer every code2Session call with `response`.
pub async fn wechat_answers(wechat: &MockServer, response: ResponseTemplate) {
    wechat.reset().await;
    Mock::given(method("GET"))
        .and(path(CODE2SESSION))
        .respond_with(response)
        .mount(wechat)
        .await;
}

/// Makes the stub's `stable_token` hand out `token`, valid for `expires_in` seconds.
pub async fn stable_token_answers(wechat: &MockServer, token: &str, expires_in: u64) {
    Mock::given(method("POST"))
        .and(path(STABLE_TOKEN))
        .respond_with(wechat_json(
            json!({ "access_token": token, "expires_in": expires_in }),
        ))
        .mount(wechat)
        .await;
}

/// As `stable_token_answers`, with a 7200 s token, for the first request only: mounted
/// before another, it makes the first token differ from the next.
pub async fn stable_token_answers_once(wechat: &MockServer, token: &str) {
    Mock::given(method("POST"))
        .and(path(STABLE_TOKEN))
        .respond_with(wechat_json(
            json!({ "access_token": token, "expires_in": 7200 }),
        ))
        .up_to_n_times(1)
        .mount(wechat)
        .await;
}

/// As `stable_token_answers`, with a 7200 s token, each answer `delay` late.
pub async fn stable_token_answers_after(wechat: &MockServer, token: &str, delay: Duration) {
    Mock::given(method("POST"))
        .and(path(STABLE_TOKEN))
        .respond_with(
            wechat_json(json!({ "access_token": token, "expires_in": 7200 })).set_delay(delay),
        )
        .mount(wechat)
        .await;
}

/// How many requests the stub has had for `api`.
pub async fn calls_to(wechat: &MockServer, api: &str) -> usize {
    wechat
        .received_requests()
        .await
        .expect("the stub records requests")
        .iter()
        .filter(|request| request.url.path() == api)
        .count()
}

/// A WeChat answer: JSON labelled `text/plain`, as WeChat sends it.
pub fn wechat_json(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.to_string(), "text/plain")
}

pub fn success(openid: &str, unionid: Option<&str>) -> ResponseTemplate {
    let mut body = json!({ "openid": openid, "session_key": SESSION_KEY });
    if let Some(unionid) = unionid {
        body["unionid"] = unionid.into();
    }
    wechat_json(body)
}

pub fn errcode(code: i64) -> ResponseTemplate {
    wechat_json(json!({ "errcode": code, "errmsg": format!("emulated error, rid: rid-{code}") }))
}

/// Everything every test has logged so far, at every level, as JSON lines.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().expect("log buffer")).into_owned()
}

static LOGS: LazyLock<Mutex<Vec<u8>>> = LazyLock::new(Mutex::default);

/// Captures every log line of the whole test binary (all levels, all of wxlogin's
/// dependencies that log through tracing) so tests can search it. `TEST_LOG=1` also
/// prints it. wiremock is left out: it logs the requests *it* receives, secret included,
/// and it is our test double, not our service.
fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let subscriber = wxlogin::telemetry::subscriber(
            LogFormat::Json,
            "trace,wiremock=off",
            CaptureWriter,
            false,
        );
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    });
}

struct CaptureWriter;

impl<'a> MakeWriter<'a> for CaptureWriter {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter
    }
}

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().expect("log buffer").extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stdout().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
