use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde_json::{Value, json};
use wxlogin::config::DEV_APPID as EMULATOR_APPID;
use wxlogin::domain::Credentials;
use wxlogin::wechat::emulator::{Emulator, MAGIC_CODES, MagicAnswer};

use crate::helpers::*;

pub async fn dev_login(app: &DevApp, code: &str) -> Reply {
    app.post_openid(&json!({ "code": code })).await
}

#[tokio::test]
async fn development_mode_logs_in_through_the_emulator_and_codes_are_single_use() {
    let app = spawn_dev_app().await;

    let first = dev_login(&app, "alice@1").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let openid = first.json()["openid"].as_str().expect("openid").to_owned();
    assert_eq!(openid.len(), 28);
    assert!(
        openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{openid}"
    );
    assert!(first.json().get("unionid").is_none());

    dev_login(&app, "alice@1")
        .await
        .assert_error(409, "code_used");
    assert_eq!(
        dev_login(&app, "alice@2").await.json()["openid"],
        openid.as_str(),
        "same user, new code"
    );
    assert_ne!(
        dev_login(&app, "bob@1").await.json()["openid"],
        openid.as_str()
    );
    assert!(dev_login(&app, "union-carol@1").await.json()["unionid"].is_string());
}

#[tokio::test]
async fn magic_codes_trigger_each_failure_through_the_whole_stack() {
    let app = spawn_dev_app().await;
    for (code, answer) in MAGIC_CODES {
        let expected = match answer {
            MagicAnswer::Errcode(40029, _) => (401, "invalid_code"),
            MagicAnswer::Errcode(40163, _) => (409, "code_used"),
            MagicAnswer::Errcode(40226, _) => (403, "user_blocked"),
            MagicAnswer::Errcode(45011, _) => (429, "rate_limited"),
            MagicAnswer::Errcode(-1, _) => (503, "upstream_busy"),
            MagicAnswer::Errcode(40125, _) => (500, "misconfigured"),
            MagicAnswer::Errcode(_, _) | MagicAnswer::Html => (502, "upstream_error"),
            // Waiting out the client timeout proves nothing the wiremock timeout test doesn't.
            MagicAnswer::Silence => continue,
        };
        for _ in 0..2 {
            dev_login(&app, code)
                .await
                .assert_error(expected.0, expected.1);
        }
    }
}

/// An emulator with known credentials, called directly as wxlogin's client would.
pub async fn emulator() -> Emulator {
    let credentials = Credentials {
        appid: EMULATOR_APPID.to_owned(),
        secret: SecretString::from("emu-secret"),
    };
    Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), vec![credentials])
        .await
        .expect("emulator starts")
}

pub async fn code2session(
    emulator: &Emulator,
    query: &[(&str, String)],
) -> (Option<String>, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/sns/jscode2session", emulator.base_url()))
        .query(query)
        .send()
        .await
        .expect("emulator answers");
    assert_eq!(
        response.status(),
        200,
        "WeChat answers errors with HTTP 200"
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON body");
    (content_type, body)
}

pub fn login_query(code: &str) -> Vec<(&'static str, String)> {
    vec![
        ("appid", EMULATOR_APPID.to_owned()),
        ("secret", "emu-secret".to_owned()),
        ("js_code", code.to_owned()),
        ("grant_type", "authorization_code".to_owned()),
    ]
}

#[tokio::test]
async fn the_emulator_answers_like_wechat_json_as_text_plain_with_a_fresh_session_key() {
    let emulator = emulator().await;

    let (content_type, first) = code2session(&emulator, &login_query("dave@1")).await;
    let (_, second) = code2session(&emulator, &login_query("dave@2")).await;

    assert_eq!(content_type.as_deref(), Some("text/plain"));
    assert!(first.get("errcode").is_none(), "{first}");
    assert_eq!(first["openid"], second["openid"]);
    for answer in [&first, &second] {
        let key = STANDARD
            .decode(answer["session_key"].as_str().expect("session_key"))
            .expect("base64");
        assert_eq!(key.len(), 16);
    }
    assert_ne!(
        first["session_key"], second["session_key"],
        "every login gets a fresh session_key"
    );

    let (_, again) = code2session(&emulator, &login_query("dave@1")).await;
    assert_eq!(again["errcode"], 40163);
    assert!(
        again["errmsg"]
            .as_str()
            .is_some_and(|m| m.contains("rid: ")),
        "{again}"
    );
}

#[tokio::test]
async fn the_emulator_checks_credentials_method_and_parameters_as_wechat_does() {
    let emulator = emulator().await;
    let mut wrong_secret = login_query("e1");
    wrong_secret[1].1 = "guess".to_owned();
    let mut wrong_appid = login_query("e2");
    wrong_appid[0].1 = "wx_someone_else".to_owned();
    let mut wrong_grant = login_query("e3");
    wrong_grant[3].1 = "client_credential".to_owned();
    let mut no_code = login_query("e4");
    no_code.remove(2);
    let mut long_code = login_query("e5");
    long_code[2].1 = "z".repeat(129);

    for (query, expected) in [
        (wrong_secret, 40125),
        (wrong_appid, 40013),
        (wrong_grant, 40002),
        (no_code, 41008),
        (long_code, 40029),
    ] {
        let (_, answer) = code2session(&emulator, &query).await;
        assert_eq!(answer["errcode"], expected, "{answer}");
    }
    let (_, no_credentials) = code2session(&emulator, &[("js_code", "e6".to_owned())]).await;
    assert_eq!(no_credentials["errcode"], 41002);

    let post = reqwest::Client::new()
        .post(format!("{}/sns/jscode2session", emulator.base_url()))
        .query(&login_query("e7"))
        .send()
        .await
        .expect("answers");
    let body: Value = serde_json::from_slice(&post.bytes().await.expect("body")).expect("JSON");
    assert_eq!(body["errcode"], 43001);
}

#[tokio::test]
async fn the_emulators_token_apis_check_body_shape_credentials_and_token() {
    let emulator = emulator().await;
    let http = reqwest::Client::new();
    let stable_token = format!("{}/cgi-bin/stable_token", emulator.base_url());
    let answer = |response: reqwest::Response| async move {
        serde_json::from_slice::<Value>(&response.bytes().await.expect("body")).expect("JSON")
    };
    let form = http
        .post(&stable_token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credential&appid={EMULATOR_APPID}&secret=emu-secret"
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        answer(form).await["errcode"],
        41002,
        "a form body is not read"
    );
    let wrong_secret = http
        .post(&stable_token)
        .json(&json!({ "grant_type": "client_credential", "appid": EMULATOR_APPID, "secret": "guess" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer(wrong_secret).await["errcode"], 40125);

    let phone = format!("{}/wxa/business/getuserphonenumber", emulator.base_url());
    for (query, errcode) in [(vec![], 41001), (vec![("access_token", "forged")], 40001)] {
        let reply = http
            .post(&phone)
            .query(&query)
            .json(&json!({ "code": "p1" }))
            .send()
            .await
            .expect("answers");
        assert_eq!(answer(reply).await["errcode"], errcode);
    }
}

/// `wxlogin emulator`: the emulator alone, as front-end teams and the benchmark run it,
/// with a wxlogin pointed at it as docs/emulator.md says.
#[tokio::test]
async fn the_emulator_subcommand_serves_a_wechat_that_wxlogin_can_log_in_against() {
    use std::io::{BufRead, BufReader};

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--app",
            &format!("default={EMULATOR_APPID}:front-end"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wxlogin emulator starts");
    let stdout = child.stdout.take().expect("stdout");
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let banner = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| line.starts_with("WeChat emulator listening on "));
        // Keep reading: a closed pipe would fail the emulator's next line of output.
        std::thread::spawn(move || lines.for_each(drop));
        banner
    })
    .await
    .expect("join")
    .expect("the banner");
    let url = banner.trim_start_matches("WeChat emulator listening on ");

    let app = spawn_app_with(&[
        ("WXLOGIN_WECHAT_BASE_URL", url),
        ("WXLOGIN_APPID", EMULATOR_APPID),
        ("WXLOGIN_SECRET", "front-end"),
    ])
    .await;
    let login = app.post_openid(&json!({ "code": "carol@1" })).await;
    let again = app.post_openid(&json!({ "code": "carol@2" })).await;
    let wrong_secret = spawn_app_with(&[
        ("WXLOGIN_WECHAT_BASE_URL", url),
        ("WXLOGIN_APPID", EMULATOR_APPID),
        ("WXLOGIN_SECRET", "not-the-one"),
    ])
    .await
    .post_openid(&json!({ "code": "carol@3" }))
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("exit status");

    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(
        login.json()["openid"],
        again.json()["openid"],
        "carol is carol"
    );
    wrong_secret.assert_error(500, "misconfigured");
    assert!(status.success(), "{status}");
}
