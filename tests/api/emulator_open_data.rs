//! The user-data routes end to end against the built-in emulator: what a front-end
//! developer does in `--dev` mode, with no phone and no real WeChat.

use serde_json::json;

use crate::emulator::{code2session, dev_login, emulator, login_query};
use crate::helpers::*;
use wxlogin::config::DEV_APPID as EMULATOR_APPID;

impl DevApp {
    async fn emulator_get(&self, route: &str) -> Reply {
        let request = self.http.get(format!("{}{route}", self.emulator));
        Reply::read(request.send().await.expect("the emulator answers")).await
    }
}

/// Logs in as `code` and returns the token and openid.
async fn login(app: &DevApp, code: &str) -> (String, String) {
    let reply = dev_login(app, code).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    let field = |name: &str| body[name].as_str().expect(name).to_owned();
    (field("token"), field("openid"))
}

#[tokio::test]
async fn the_emulators_user_info_verifies_and_decrypts_through_wxlogin() {
    let app = spawn_dev_app().await;
    let (token, openid) = login(&app, "union-erin@1").await;

    let info = app
        .emulator_get(&format!("/dev/user_info?openid={openid}"))
        .await;
    assert_eq!(info.status, 200, "{}", info.text);
    let info = info.json();

    let signed = json!({ "rawData": info["rawData"], "signature": info["signature"] });
    let verified = app
        .post_as(&token, "/wechat/verify_signature", &signed)
        .await;
    assert_eq!(
        verified.json(),
        json!({ "valid": true }),
        "{}",
        verified.text
    );

    let sealed = json!({ "encryptedData": info["encryptedData"], "iv": info["iv"] });
    let decrypted = app.post_as(&token, "/wechat/decrypt", &sealed).await;
    assert_eq!(decrypted.status, 200, "{}", decrypted.text);
    let data = &decrypted.json()["data"];
    assert_eq!(data["openId"], openid.as_str());
    assert!(data["unionId"].is_string(), "{data}");
    assert_eq!(data["watermark"]["appid"], EMULATOR_APPID);

    // A new login rotates the key: the data fetched before it no longer decrypts, and
    // data fetched after it does, with the older token as well.
    let (newer_token, _) = login(&app, "union-erin@2").await;
    app.post_as(&token, "/wechat/decrypt", &sealed)
        .await
        .assert_error(400, "decryption_failed");
    let fresh = app
        .emulator_get(&format!("/dev/user_info?openid={openid}"))
        .await
        .json();
    let sealed = json!({ "encryptedData": fresh["encryptedData"], "iv": fresh["iv"] });
    for token in [&token, &newer_token] {
        let reply = app.post_as(token, "/wechat/decrypt", &sealed).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

#[tokio::test]
async fn user_info_for_an_openid_that_never_logged_in_is_a_clear_404() {
    let app = spawn_dev_app().await;
    let reply = app.emulator_get("/dev/user_info?openid=oNobody").await;
    reply.assert_error(404, "unknown_openid");
}

#[tokio::test]
async fn phone_numbers_and_check_session_work_in_development_mode() {
    let app = spawn_dev_app().await;
    let (token, _) = login(&app, "frank@1").await;

    let phone = app
        .post_as(
            &token,
            "/wechat/phone_number",
            &json!({ "code": "frank-phone" }),
        )
        .await;
    assert_eq!(phone.status, 200, "{}", phone.text);
    let phone = phone.json();
    assert_eq!(phone["countryCode"], "86");
    let number = phone["purePhoneNumber"].as_str().expect("number");
    assert!(
        number.len() == 11 && number.bytes().all(|b| b.is_ascii_digit()),
        "{number}"
    );
    app.post_as(
        &token,
        "/wechat/phone_number",
        &json!({ "code": "frank-phone" }),
    )
    .await
    .assert_error(409, "code_used");
    app.post_as(
        &token,
        "/wechat/phone_number",
        &json!({ "code": "invalid" }),
    )
    .await
    .assert_error(401, "invalid_code");

    let checked = app.get_as(&token, "/wechat/check_session").await;
    assert_eq!(checked.json(), json!({ "valid": true }), "{}", checked.text);

    let stats = app.emulator_get("/dev/stats").await.json();
    assert_eq!(
        stats["stable_token_requests"], 1,
        "one token served all calls"
    );
}

#[tokio::test]
async fn concurrent_calls_in_development_mode_fetch_one_token() {
    let app = spawn_dev_app().await;
    let (token, _) = login(&app, "gina@1").await;
    let checks =
        futures::future::join_all((0..50).map(|_| app.get_as(&token, "/wechat/check_session")))
            .await;
    assert!(checks.iter().all(|c| c.json() == json!({ "valid": true })));
    let stats = app.emulator_get("/dev/stats").await.json();
    assert_eq!(stats["stable_token_requests"], 1);
}

#[tokio::test]
async fn check_session_reports_false_once_wechat_has_issued_a_newer_key_elsewhere() {
    let emulator = emulator().await;
    let app = spawn_app_with(&[
        ("WXLOGIN_APPID", EMULATOR_APPID),
        ("WXLOGIN_SECRET", "emu-secret"),
        ("WXLOGIN_WECHAT_BASE_URL", emulator.base_url()),
    ])
    .await;
    let reply = app.post_openid(&json!({ "code": "hank@1" })).await;
    let token = reply.json()["token"].as_str().expect("token").to_owned();
    let valid = app.get_as(&token, "/wechat/check_session").await;
    assert_eq!(valid.json(), json!({ "valid": true }), "{}", valid.text);

    // Another backend trades a code of the same user: WeChat retires wxlogin's key.
    let (_, answer) = code2session(&emulator, &login_query("hank@2")).await;
    assert!(answer["session_key"].is_string());
    let stale = app.get_as(&token, "/wechat/check_session").await;
    assert_eq!(stale.json(), json!({ "valid": false }), "{}", stale.text);
}
