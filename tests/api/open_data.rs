//! `/wechat/verify_signature` and `/wechat/decrypt`, with vectors made outside this crate
//! (Python's `hashlib` and `cryptography`) under the stub's session_key, bytes 0..16.

use serde_json::json;

use crate::helpers::*;

/// python3 -c 'import hashlib; print(hashlib.sha1(b"{\"nickName\":\"Band\",\"gender\":1}" + b"AAECAwQFBgcICQoLDA0ODw==").hexdigest())'
const RAW_DATA: &str = r#"{"nickName":"Band","gender":1}"#;
const RAW_DATA_SIGNATURE: &str = "496808cd634b4f856b599ae80c73f6abb1be50fc";

/// Encrypted with Python's `cryptography` (AES-128-CBC, PKCS7) under key bytes 0..16 and
/// iv bytes 16..32. The plaintext is
/// `{"openId":"oTestUser0001","nickName":"测试","gender":0,"watermark":{"timestamp":1800000000,"appid":"wx_test_appid"}}`.
pub const ENCRYPTED: &str = "AEF1Q3woI5VkZ9H+FS6Do/rmTCB3Nos//6EH4m8C6uhqySl7QA9QvJ49RP2EJL6AhMYdQoRr9iIXXuol7ODJ6XfUaVJXn7l2IWfvonys5xjfKbOxoML3Nc1CO38IQI42xLMt2LhAXuocYgufe+1GOlTOpndD0nucBanMnGv/OHU=";
pub const IV: &str = "EBESExQVFhcYGRobHB0eHw==";
/// The same way, with the watermark of another app: `wx_other_app`.
const ENCRYPTED_FOR_ANOTHER_APP: &str = "AEF1Q3woI5VkZ9H+FS6DozeWFr0cNgS0u11apG6+PKGQjBSVUXc/w5kT6HoGmP+Tv7JXITgLvmOPP07rb89bBRVo5kxoPSUlH27JG6GiIAYfuORjGqNW1pk49oji9+xW";

async fn logged_in() -> (TestApp, String) {
    let app = spawn_app().await;
    let token = app.login_as("code-1", "oTestUser0001").await;
    (app, token)
}

#[tokio::test]
async fn a_signature_made_with_the_session_key_is_valid() {
    let (app, token) = logged_in().await;
    let body = json!({ "rawData": RAW_DATA, "signature": RAW_DATA_SIGNATURE });
    let reply = app.post_as(&token, "/wechat/verify_signature", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json(), json!({ "valid": true }));
}

#[tokio::test]
async fn a_wrong_signature_or_one_changed_byte_of_raw_data_is_rejected() {
    let (app, token) = logged_in().await;
    let mut wrong_signature = RAW_DATA_SIGNATURE.to_owned();
    wrong_signature.replace_range(..1, "c");
    for body in [
        json!({ "rawData": RAW_DATA, "signature": wrong_signature }),
        json!({ "rawData": RAW_DATA.replace("Band", "Banc"), "signature": RAW_DATA_SIGNATURE }),
        // Re-serialised rawData (a space after the colon) is different bytes.
        json!({ "rawData": RAW_DATA.replace(":1", ": 1"), "signature": RAW_DATA_SIGNATURE }),
    ] {
        app.post_as(&token, "/wechat/verify_signature", &body)
            .await
            .assert_error(400, "invalid_signature");
    }
}

#[tokio::test]
async fn decrypting_returns_the_sealed_object_byte_for_byte() {
    let (app, token) = logged_in().await;
    let body = json!({ "encryptedData": ENCRYPTED, "iv": IV });
    let reply = app.post_as(&token, "/wechat/decrypt", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.text,
        r#"{"data":{"openId":"oTestUser0001","nickName":"测试","gender":0,"watermark":{"timestamp":1800000000,"appid":"wx_test_appid"}}}"#
    );
}

#[tokio::test]
async fn base64_wrapped_over_lines_still_decrypts() {
    let (app, token) = logged_in().await;
    let wrapped = format!("{}\n{}\r\n", &ENCRYPTED[..76], &ENCRYPTED[76..]);
    let body = json!({ "encryptedData": wrapped, "iv": format!(" {IV} ") });
    let reply = app.post_as(&token, "/wechat/decrypt", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn each_decryption_failure_has_its_own_kind() {
    let (app, token) = logged_in().await;
    let truncated = &ENCRYPTED[..ENCRYPTED.len() - 8];
    for (encrypted, iv, kind) in [
        ("not base64!", IV, "malformed_base64"),
        (ENCRYPTED, "%%%", "malformed_base64"),
        (truncated, IV, "invalid_length"),
        (ENCRYPTED, "AAECAwQFBgcICQoL", "invalid_length"),
        // A wrong iv garbles only the first block; the padding still checks out.
        (ENCRYPTED, "AAAAAAAAAAAAAAAAAAAAAA==", "decryption_failed"),
        (ENCRYPTED_FOR_ANOTHER_APP, IV, "watermark_mismatch"),
    ] {
        let body = json!({ "encryptedData": encrypted, "iv": iv });
        let reply = app.post_as(&token, "/wechat/decrypt", &body).await;
        reply.assert_error(400, kind);
    }
}

#[tokio::test]
async fn a_stale_session_key_says_to_log_in_again() {
    let app = spawn_app().await;
    // WeChat gives this login another key than the one the data was sealed with.
    let token = app
        .login_with_key("c", "oTestUser0001", OTHER_SESSION_KEY)
        .await;
    let body = json!({ "encryptedData": ENCRYPTED, "iv": IV });
    let reply = app.post_as(&token, "/wechat/decrypt", &body).await;
    reply.assert_error(400, "decryption_failed");
    assert!(
        reply.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("re-login"))
    );
}

#[tokio::test]
async fn a_new_login_of_the_same_user_rotates_the_key_of_the_older_session() {
    let app = spawn_app().await;
    let old = app
        .login_with_key("first", "oTestUser0001", OTHER_SESSION_KEY)
        .await;
    let body = json!({ "encryptedData": ENCRYPTED, "iv": IV });
    app.post_as(&old, "/wechat/decrypt", &body)
        .await
        .assert_error(400, "decryption_failed");

    // The user logs in again; WeChat now holds the key the data was sealed with.
    let _new = app.login_as("second", "oTestUser0001").await;
    let reply = app.post_as(&old, "/wechat/decrypt", &body).await;
    assert_eq!(
        reply.status, 200,
        "the old session uses the newest key: {}",
        reply.text
    );
}

#[tokio::test]
async fn user_data_routes_need_a_live_session() {
    let app = spawn_app().await;
    let body = json!({ "encryptedData": ENCRYPTED, "iv": IV });
    let anonymous = app
        .send(
            app.http
                .post(format!("{}/wechat/decrypt", app.address))
                .json(&body),
        )
        .await;
    anonymous.assert_error(401, "invalid_token");
    let unknown = "A".repeat(43);
    for (route, body) in [
        ("/wechat/decrypt", body.clone()),
        (
            "/wechat/verify_signature",
            json!({ "rawData": "{}", "signature": "00" }),
        ),
        ("/wechat/phone_number", json!({ "code": "p" })),
    ] {
        app.post_as(&unknown, route, &body)
            .await
            .assert_error(401, "invalid_token");
    }
    app.get_as(&unknown, "/wechat/check_session")
        .await
        .assert_error(401, "invalid_token");
    assert_eq!(calls_to(&app.wechat, STABLE_TOKEN).await, 0);
}

#[tokio::test]
async fn bodies_of_the_wrong_shape_say_what_the_route_expects() {
    let (app, token) = logged_in().await;
    for (route, body, expected) in [
        ("/wechat/decrypt", json!({ "iv": IV }), "encryptedData"),
        (
            "/wechat/verify_signature",
            json!({ "rawData": 1 }),
            "rawData",
        ),
    ] {
        let reply = app.post_as(&token, route, &body).await;
        reply.assert_error(400, "invalid_body");
        let message = reply.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(expected), "{message}");
    }
    let not_json = app
        .send(
            app.http
                .post(format!("{}/wechat/decrypt", app.address))
                .bearer_auth(&token)
                .body("encryptedData=x"),
        )
        .await;
    not_json.assert_error(415, "unsupported_media_type");
}
