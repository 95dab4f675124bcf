//! The emulator's other logins: a consent page that sends a named user straight back with
//! a code, `sns/oauth2/access_token` and `sns/userinfo`, and one person with one unionid in
//! every app it serves, so an H5 login can be tried with no WeChat account.

use serde_json::json;

use crate::helpers::*;

/// A mini-program `shop` and an official account `oa`, both emulated.
async fn spawn_two_kinds() -> DevApp {
    spawn_dev_app_with(&[
        ("WXLOGIN_APP_SHOP_APPID", "wxdev_shop"),
        ("WXLOGIN_APP_OA_KIND", "official_account"),
    ])
    .await
}

/// The code the emulator's consent page hands `user` for the official account's page.
async fn consented_code(app: &DevApp, user: &str, scope: &str) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = "https://h5.example.com/back?from=menu";
    let response = browser
        .get(format!("{}/connect/oauth2/authorize", app.emulator))
        .query(&[
            ("appid", "wxdev_oa"),
            ("redirect_uri", page),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "page-state"),
            ("user", user),
        ])
        .send()
        .await
        .expect("the consent page answers");
    assert_eq!(response.status().as_u16(), 303);
    let location = response.headers()["location"].to_str().expect("text");
    let back = reqwest::Url::parse(location).expect("a URL");
    assert!(
        location.starts_with("https://h5.example.com/back?from=menu&"),
        "{location}"
    );
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some("page-state"));
    param("code").expect("a code")
}

async fn login(app: &DevApp, name: &str, code: &str) -> Reply {
    let url = format!("{}/apps/{name}/openid", app.address);
    app.send(app.http.post(url).json(&json!({ "code": code })))
        .await
}

#[tokio::test]
async fn one_emulated_person_has_one_unionid_in_a_mini_program_and_an_official_account() {
    let app = spawn_two_kinds().await;
    let code = consented_code(&app, "union_bob", "snsapi_userinfo").await;
    let h5 = login(&app, "oa", &code).await;
    assert_eq!(h5.status, 200, "{}", h5.text);
    let mini = login(&app, "shop", "union_bob@1").await;
    assert_eq!(mini.status, 200, "{}", mini.text);
    let (h5, mini) = (h5.json(), mini.json());
    assert!(h5["unionid"].is_string(), "{h5}");
    assert_eq!(h5["unionid"], mini["unionid"]);
    assert_ne!(h5["openid"], mini["openid"], "openids differ per app");
    assert_eq!(h5["profile"]["nickname"], "union_bob");
    // The code was spent.
    login(&app, "oa", &code)
        .await
        .assert_error(409, "code_used");
}

#[tokio::test]
async fn the_emulators_snsapi_base_has_no_unionid_and_its_snapshot_user_no_session() {
    let app = spawn_two_kinds().await;
    let code = consented_code(&app, "union_carol", "snsapi_base").await;
    let reply = login(&app, "oa", &code).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.json().get("unionid").is_none(), "{}", reply.text);
    assert!(reply.json().get("profile").is_none(), "{}", reply.text);
    let code = consented_code(&app, "snapshot", "snsapi_base").await;
    login(&app, "oa", &code)
        .await
        .assert_error(403, "snapshot_user");
}
