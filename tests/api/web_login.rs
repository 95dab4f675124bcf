//! The web-login helper: to WeChat's consent page and back, with the redirect_uri held to
//! the app's allow-list, a single-use state bound to the browser by an HttpOnly cookie,
//! and the session handed over in the auth cookie, never in a URL.

use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::helpers::*;
use crate::other_logins::{SNS_ACCESS_TOKEN, grant, sns_answers, spawn_every_kind};
use crate::redis_server::{RedisServer, SharedRedis};

const PAGE: &str = "https://h5.example.com/done";
const SITE: &str = "https://www.example.com/after-login?from=header";
const PUBLIC_URL: &str = "https://login.example.com";
const OPEN_BASE: &str = "https://open.example.test";
const AUTH_COOKIE: &str = "wxsid";

const HELPER: [(&str, &str); 5] = [
    ("WXLOGIN_APP_OA_REDIRECT_URIS", PAGE),
    ("WXLOGIN_APP_WEB_REDIRECT_URIS", SITE),
    ("WXLOGIN_AUTH_COOKIE", AUTH_COOKIE),
    ("WXLOGIN_PUBLIC_URL", PUBLIC_URL),
    ("WXLOGIN_WECHAT_OPEN_BASE_URL", OPEN_BASE),
];

async fn spawn_helper(extra: &[(&str, &str)]) -> TestApp {
    let env: Vec<(&str, &str)> = HELPER.iter().chain(extra).copied().collect();
    spawn_every_kind(&env).await
}

/// A browser's view of one answer: it follows no redirect and keeps no cookie by itself.
struct Hop {
    status: u16,
    location: Option<reqwest::Url>,
    cookies: Vec<String>,
    text: String,
}

impl Hop {
    fn param(&self, name: &str) -> Option<String> {
        let location = self.location.as_ref()?;
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The value of the cookie `name` that this answer sets, with its attributes.
    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .map(String::as_str)
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    fn cookie_value(&self, name: &str) -> Option<String> {
        let cookie = self.cookie(name)?;
        let value = cookie.split(';').next()?.split_once('=')?.1;
        Some(value.to_owned())
    }
}

async fn visit(address: &str, route: &str, cookie: Option<&str>) -> Hop {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut request = browser.get(format!("{address}{route}"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("wxlogin answers");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| reqwest::Url::parse(l.to_str().expect("text")).expect("a URL"));
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().expect("text").to_owned())
        .collect();
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().ok()),
        Some(Some("no-store"))
    );
    let text = response.text().await.expect("body");
    Hop {
        status,
        location,
        cookies,
        text,
    }
}

fn error_of(hop: &Hop) -> String {
    let body: serde_json::Value = serde_json::from_str(&hop.text).expect("JSON");
    body["error"].as_str().expect("a kind").to_owned()
}

/// Starts a login for the official account's page: the state and the binding cookie.
async fn start(address: &str) -> (String, String) {
    let route = format!("/apps/oa/oauth/authorize?redirect_uri={}", enc(PAGE));
    let hop = visit(address, &route, None).await;
    assert_eq!(hop.status, 303, "{}", hop.text);
    let state = hop.param("state").expect("a state");
    let binding = hop
        .cookie_value("wxlogin_web_login")
        .expect("the binding cookie");
    (state, format!("wxlogin_web_login={binding}"))
}

fn enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn callback(code: &str, state: &str) -> String {
    format!(
        "/apps/oa/oauth/callback?code={}&state={}",
        enc(code),
        enc(state)
    )
}

#[tokio::test]
async fn authorize_sends_the_browser_to_wechats_consent_page_with_our_callback() {
    let app = spawn_helper(&[]).await;
    let route = format!("/apps/oa/oauth/authorize?redirect_uri={}", enc(PAGE));
    let hop = visit(&app.address, &route, None).await;
    assert_eq!(hop.status, 303, "{}", hop.text);
    let location = hop.location.clone().expect("a Location");
    assert_eq!(
        format!(
            "{}://{}{}",
            location.scheme(),
            location.host_str().unwrap_or(""),
            location.path()
        ),
        format!("{OPEN_BASE}/connect/oauth2/authorize")
    );
    let names: Vec<String> = location
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    assert_eq!(
        names,
        ["appid", "redirect_uri", "response_type", "scope", "state"]
    );
    assert_eq!(hop.param("appid").as_deref(), Some("wx_oa_appid"));
    assert_eq!(
        hop.param("redirect_uri").as_deref(),
        Some("https://login.example.com/apps/oa/oauth/callback")
    );
    assert_eq!(hop.param("scope").as_deref(), Some("snsapi_base"));
    assert_eq!(location.fragment(), Some("wechat_redirect"));
    assert!(
        hop.param("state").is_some_and(|s| s.len() >= 22),
        "at least 128 bits"
    );
    let cookie = hop.cookie("wxlogin_web_login").expect("a binding cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/apps/oa/oauth"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // Two starts, two states: none is guessable from another.
    let again = visit(&app.address, &route, None).await;
    assert_ne!(again.param("state"), hop.param("state"));

    let userinfo = format!("{route}&scope=snsapi_userinfo");
    let hop = visit(&app.address, &userinfo, None).await;
    assert_eq!(hop.param("scope").as_deref(), Some("snsapi_userinfo"));

    let website = format!("/apps/web/oauth/authorize?redirect_uri={}", enc(SITE));
    let hop = visit(&app.address, &website, None).await;
    assert_eq!(hop.status, 303, "{}", hop.text);
    let location = hop.location.clone().expect("a Location");
    assert_eq!(location.path(), "/connect/qrconnect");
    assert_eq!(hop.param("scope").as_deref(), Some("snsapi_login"));
}

#[tokio::test]
async fn only_an_allowed_redirect_uri_exactly_as_written_a_known_scope_and_a_browser_kind_start_a_login()
 {
    let app = spawn_helper(&[]).await;
    for uri in [
        "https://evil.example.com/done",
        "https://h5.example.com/done/",
        "https://h5.example.com/done?x=1",
        "https://h5.example.com/done/../evil",
        "http://h5.example.com/done",
        "https://h5.example.com",
        SITE, // another app's
    ] {
        let route = format!("/apps/oa/oauth/authorize?redirect_uri={}", enc(uri));
        let hop = visit(&app.address, &route, None).await;
        assert_eq!(hop.status, 400, "{uri}: {}", hop.text);
        assert_eq!(error_of(&hop), "invalid_redirect_uri");
        assert!(hop.location.is_none() && hop.cookies.is_empty(), "{uri}");
    }
    let hop = visit(&app.address, "/apps/oa/oauth/authorize", None).await;
    assert_eq!(error_of(&hop), "invalid_redirect_uri");
    for (name, uri, scope) in [
        ("oa", PAGE, "snsapi_login"),
        ("web", SITE, "snsapi_base"),
        ("oa", PAGE, "x"),
    ] {
        let route = format!(
            "/apps/{name}/oauth/authorize?redirect_uri={}&scope={scope}",
            enc(uri)
        );
        let hop = visit(&app.address, &route, None).await;
        assert_eq!(
            (hop.status, error_of(&hop)),
            (400, "invalid_scope".to_owned()),
            "{name} {scope}"
        );
    }
    for name in ["mini", "mobile"] {
        let route = format!("/apps/{name}/oauth/authorize?redirect_uri={}", enc(PAGE));
        let hop = visit(&app.address, &route, None).await;
        assert_eq!(
            (hop.status, error_of(&hop)),
            (400, "wrong_app_kind".to_owned()),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_callback_hands_the_session_over_in_the_auth_cookie_once_and_never_in_a_url() {
    let app = spawn_helper(&[]).await;
    sns_answers(
        &app.wechat,
        "wx_oa_appid",
        grant("oH5Reader", "snsapi_base", None),
    )
    .await;
    let (state, binding) = start(&app.address).await;
    let hop = visit(
        &app.address,
        &callback("wechat-code", &state),
        Some(&binding),
    )
    .await;
    assert_eq!(hop.status, 303, "{}", hop.text);
    let location = hop.location.clone().expect("a Location");
    assert_eq!(location.as_str(), PAGE);
    let cookie = hop.cookie(AUTH_COOKIE).expect("the session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let token = hop.cookie_value(AUTH_COOKIE).expect("a token");
    assert!(!location.as_str().contains(&token));
    let cleared = hop
        .cookie("wxlogin_web_login")
        .expect("the binding cookie, cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // /auth reads the cookie: the session is the official account's user.
    let url = format!("{}/apps/oa/auth", app.address);
    let auth = app
        .send(
            app.http
                .get(url)
                .header("cookie", format!("{AUTH_COOKIE}={token}")),
        )
        .await;
    assert_eq!(auth.status, 200, "{}", auth.text);
    assert_eq!(auth.header("x-wxlogin-openid"), Some("oH5Reader"));

    // Neither the session, nor the state, nor the browser's binding reaches a log line.
    let logs = captured_logs();
    for secret in [&token, &state, &binding[binding.len() - 43..].to_owned()] {
        assert!(!logs.contains(secret.as_str()), "logged: {secret}");
    }

    // The same callback again: the state was spent, and WeChat is not asked twice.
    let replay = visit(
        &app.address,
        &callback("wechat-code", &state),
        Some(&binding),
    )
    .await;
    assert_eq!(
        (replay.status, error_of(&replay)),
        (400, "invalid_state".to_owned())
    );
    assert_eq!(calls_to(&app.wechat, SNS_ACCESS_TOKEN).await, 1);
}

#[tokio::test]
async fn a_callback_without_its_browsers_cookie_or_with_a_forged_or_stale_state_asks_wechat_nothing()
 {
    let app = spawn_helper(&[]).await;
    Mock::given(method("GET"))
        .and(path(SNS_ACCESS_TOKEN))
        .respond_with(grant("oNever", "snsapi_base", None))
        .expect(0)
        .mount(&app.wechat)
        .await;
    let (state, binding) = start(&app.address).await;
    let (_, other_browser) = start(&app.address).await;
    // Another well-formed state: the last character of 32 bytes' base64url carries 4 bits.
    let last = if state.ends_with('A') { 'E' } else { 'A' };
    let forged = format!("{}{last}", &state[..state.len() - 1]);
    for (route, cookie) in [
        (callback("c", &state), None),
        (callback("c", &state), Some("wxlogin_web_login=junk")),
        (callback("c", &forged), Some(binding.as_str())),
        (
            "/apps/oa/oauth/callback?code=c".to_owned(),
            Some(binding.as_str()),
        ),
        (
            format!("/apps/web/oauth/callback?code=c&state={state}"),
            Some(binding.as_str()),
        ),
        (callback("c", &state), Some(other_browser.as_str())),
    ] {
        let hop = visit(&app.address, &route, cookie).await;
        assert_eq!(
            (hop.status, error_of(&hop)),
            (400, "invalid_state".to_owned()),
            "{route} {cookie:?}"
        );
        assert!(hop.cookie(AUTH_COOKIE).is_none());
    }
    // Ten minutes on, a state is stale.
    let (state, binding) = start(&app.address).await;
    app.clock.advance(std::time::Duration::from_secs(601));
    let hop = visit(&app.address, &callback("c", &state), Some(&binding)).await;
    assert_eq!(
        (hop.status, error_of(&hop)),
        (400, "invalid_state".to_owned())
    );
    app.wechat.verify().await;
}

#[tokio::test]
async fn a_failed_or_declined_login_goes_back_to_the_page_with_its_error_kind_and_no_session() {
    let app = spawn_helper(&[]).await;
    sns_answers(&app.wechat, "wx_oa_appid", errcode(40163)).await;
    let (state, binding) = start(&app.address).await;
    let hop = visit(&app.address, &callback("spent", &state), Some(&binding)).await;
    assert_eq!(hop.status, 303, "{}", hop.text);
    assert_eq!(hop.param("error").as_deref(), Some("code_used"));
    assert!(hop.cookie(AUTH_COOKIE).is_none());

    let (state, binding) = start(&app.address).await;
    let declined = format!("/apps/oa/oauth/callback?state={}", enc(&state));
    let hop = visit(&app.address, &declined, Some(&binding)).await;
    assert_eq!(hop.param("error").as_deref(), Some("access_denied"));
    assert!(hop.cookie(AUTH_COOKIE).is_none());
    let metrics = app.metrics().await;
    assert!(metrics.contains("outcome=\"code_used\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_started_on_one_replica_finishes_on_another_through_redis_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let settings = redis.settings();
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = spawn_helper(&env).await;
    let mut second_env = env.clone();
    let wechat = first.wechat.uri();
    second_env.push(("WXLOGIN_WECHAT_BASE_URL", &wechat));
    let second = spawn_helper(&second_env).await;
    sns_answers(
        &first.wechat,
        "wx_oa_appid",
        grant("oAcross", "snsapi_base", None),
    )
    .await;
    let (state, binding) = start(&first.address).await;
    let hop = visit(&second.address, &callback("across", &state), Some(&binding)).await;
    assert_eq!(hop.status, 303, "{}", hop.text);
    assert!(hop.cookie(AUTH_COOKIE).is_some());
    let replay = visit(&first.address, &callback("across", &state), Some(&binding)).await;
    assert_eq!(error_of(&replay), "invalid_state");
}
