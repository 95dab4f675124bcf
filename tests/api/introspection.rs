//! RFC 7662 introspection: a live session and its JWTs are active, anything else is not;
//! a revocation shows at once; only the holders of a backend token may ask.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{CLOCK_START, JWT_ISSUER, Requests, jwt_key_file};
use crate::jwt::{
    BACKEND_TOKEN, assert_oauth_error, exchange, header_and_claims, introspect, jwt_for,
    jwt_settings, post_form, spawn_jwt_app, spawn_with,
};

#[tokio::test]
async fn introspection_answers_for_a_live_session_and_its_jwt_and_nothing_else() {
    let app = spawn_jwt_app().await;
    let session = app.login_as_person("c1", "oLooked", "uLooked").await;
    let jwt = jwt_for(&app, &session).await;

    let of_session = introspect(&app, &session).await;
    assert_eq!(of_session["active"], true);
    assert_eq!(of_session["sub"], "oLooked");
    assert_eq!(of_session["unionid"], "uLooked");
    assert_eq!(of_session["app"], "default");
    assert_eq!(of_session["iss"], JWT_ISSUER);
    assert_eq!(of_session["iat"], CLOCK_START);
    assert_eq!(of_session["token_type"], "Bearer");

    let of_jwt = introspect(&app, &jwt).await;
    let (_, claims) = header_and_claims(&jwt);
    assert_eq!(of_jwt["active"], true);
    assert_eq!(of_jwt["sub"], "oLooked");
    assert_eq!(of_jwt["exp"], claims["exp"]);
    assert_eq!(of_jwt["aud"], claims["aud"]);
    assert_eq!(of_jwt["sid"], claims["sid"]);
    assert_eq!(of_session["sid"], claims["sid"], "one session, one sid");

    for junk in ["", "x", &"A".repeat(43), "a.b.c"] {
        assert_eq!(
            introspect(&app, junk).await,
            json!({ "active": false }),
            "{junk:?}"
        );
    }
    app.clock.advance(std::time::Duration::from_secs(300));
    assert_eq!(
        introspect(&app, &jwt).await,
        json!({ "active": false }),
        "expired"
    );
    assert_eq!(
        introspect(&app, &session).await["active"],
        true,
        "the session lives on"
    );
}

#[tokio::test]
async fn a_revoked_sessions_exchange_is_refused_and_its_jwt_inactive_at_once() {
    let app = spawn_jwt_app().await;
    let session = app.login_as("c1", "oRevoked").await;
    let jwt = jwt_for(&app, &session).await;
    assert_eq!(introspect(&app, &jwt).await["active"], true);

    assert_eq!(app.delete_session(&session).await.status, 204);
    assert_eq!(introspect(&app, &jwt).await, json!({ "active": false }));
    assert_eq!(introspect(&app, &session).await, json!({ "active": false }));
    assert_oauth_error(&exchange(&app, &session).await, 400, "invalid_request");
}

#[tokio::test]
async fn forged_jwts_are_inactive() {
    let app = spawn_jwt_app().await;
    let session = app.login_as("c1", "oVictim").await;
    let jwt = jwt_for(&app, &session).await;
    let (header, claims) = header_and_claims(&jwt);
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());

    let mut none = header.clone();
    none["alg"] = "none".into();
    let unsigned = format!("{}.{}.", encode(&none), encode(&claims));

    let jwks = reqwest::get(format!("{}/.well-known/jwks.json", app.address))
        .await
        .expect("the JWKS")
        .text()
        .await
        .expect("text");
    let mut hs = header.clone();
    hs["alg"] = "HS256".into();
    let signed = format!("{}.{}", encode(&hs), encode(&claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(jwks.as_bytes()).expect("any key");
    mac.update(signed.as_bytes());
    let confused = format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );

    let mut other = claims.clone();
    other["sub"] = "oAttacker".into();
    let signature = jwt.rsplit('.').next().expect("a signature");
    let tampered = format!("{}.{}.{signature}", encode(&header), encode(&other));

    let stranger = spawn_jwt_app().await;
    let their_session = stranger.login_as("c1", "oVictim").await;
    let foreign = jwt_for(&stranger, &their_session).await;

    for forged in [unsigned, confused, tampered, foreign] {
        assert_eq!(
            introspect(&app, &forged).await,
            json!({ "active": false }),
            "{forged}"
        );
    }
}

#[tokio::test]
async fn introspection_needs_a_backend_token_and_says_so_in_rfc_6749s_shape() {
    let app = spawn_jwt_app().await;
    for bearer in [
        None,
        Some("not-a-backend-token"),
        Some(crate::helpers::ADMIN_TOKEN),
    ] {
        let reply = post_form(&app, "/oauth/introspect", &[("token", "x")], bearer).await;
        assert_oauth_error(&reply, 401, "invalid_client");
        assert!(reply.header("www-authenticate").is_some());
    }
    let reply = post_form(&app, "/oauth/introspect", &[], Some(BACKEND_TOKEN)).await;
    assert_oauth_error(&reply, 400, "invalid_request");
}

/// `client_secret_basic` (RFC 6749 §2.3.1), as APISIX's `openid-connect` sends it: the
/// backend's name and token, each form-encoded, then base64.
fn client_secret_basic(name: &str, token: &str) -> String {
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(name), encode(token));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[tokio::test]
async fn introspection_takes_the_backend_token_as_client_secret_basic_too() {
    let token = "jwt-test+backend/token=0123456789abcdef";
    let mut settings = jwt_settings(&jwt_key_file());
    settings.retain(|(name, _)| *name != "WXLOGIN_BACKEND_TOKENS");
    settings.push(("WXLOGIN_BACKEND_TOKENS", format!("apisix={token}")));
    let app = spawn_with(&settings).await;
    let session = app.login_as("c1", "oBasic").await;
    let introspect_as = |authorization: String| {
        let request = app
            .http
            .post(format!("{}/oauth/introspect", app.address))
            .header("authorization", authorization)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={session}"));
        app.send(request)
    };

    let admitted = introspect_as(client_secret_basic("apisix", token)).await;
    assert_eq!(admitted.status, 200, "{}", admitted.text);
    assert_eq!(admitted.json()["active"], true);
    for refused in [
        client_secret_basic("someone-else", token),
        client_secret_basic("apisix", "wrong"),
        "Basic not-base64".to_owned(),
    ] {
        assert_oauth_error(&introspect_as(refused).await, 401, "invalid_client");
    }
}
