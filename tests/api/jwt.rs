//! JWTs for gateways that only trust JWTs: the RFC 8693 exchange, the JWKS and metadata
//! verifiers discover, rotation, start-up and logs; and the helpers `introspection` shares.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{
    CLOCK_START, JWT_ISSUER, Reply, Requests, TestApp, captured_logs, jwt_key_file, spawn_app_with,
};
use crate::redis_server::RedisServer;

pub(crate) const BACKEND_TOKEN: &str = "jwt-test-backend-token-0123456789abcdef";
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

pub(crate) fn jwt_settings(key_file: &str) -> Vec<(&'static str, String)> {
    vec![
        ("WXLOGIN_JWT_ISSUER", JWT_ISSUER.to_owned()),
        ("WXLOGIN_JWT_KEY_FILE", key_file.to_owned()),
        ("WXLOGIN_BACKEND_TOKENS", format!("gateway={BACKEND_TOKEN}")),
    ]
}

pub(crate) async fn spawn_with(settings: &[(&'static str, String)]) -> TestApp {
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&settings).await
}

pub(crate) async fn spawn_jwt_app() -> TestApp {
    spawn_with(&jwt_settings(&jwt_key_file())).await
}

pub(crate) async fn post_form(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    bearer: Option<&str>,
) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = app
        .http
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    app.send(request).await
}

pub(crate) async fn exchange(app: &TestApp, session_token: &str) -> Reply {
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", session_token),
        ("subject_token_type", ACCESS_TOKEN),
    ];
    post_form(app, "/oauth/token", &form, None).await
}

pub(crate) async fn jwt_for(app: &TestApp, session_token: &str) -> String {
    let reply = exchange(app, session_token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["access_token"]
        .as_str()
        .expect("a JWT")
        .to_owned()
}

pub(crate) async fn introspect(app: &TestApp, token: &str) -> Value {
    let reply = post_form(
        app,
        "/oauth/introspect",
        &[("token", token)],
        Some(BACKEND_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    reply.json()
}

fn decoded(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

pub(crate) fn header_and_claims(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let header = decoded(parts.next().expect("a header"));
    (header, decoded(parts.next().expect("claims")))
}

/// Asserts an answer in RFC 6749 §5.2's shape.
pub(crate) fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["error"], error, "{}", reply.text);
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert!(
        body.get("message").is_none(),
        "RFC 6749's shape: {}",
        reply.text
    );
}

#[tokio::test]
async fn a_session_is_exchanged_for_a_short_lived_jwt_that_verifies_with_the_published_key() {
    let app = spawn_jwt_app().await;
    let session = app.login_as_person("c1", "oJwtUser", "uJwtPerson").await;

    let reply = exchange(&app, &session).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let answer = reply.json();
    assert_eq!(
        answer["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 300);
    let jwt = answer["access_token"].as_str().expect("a JWT");

    let (header, claims) = header_and_claims(jwt);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["iss"], JWT_ISSUER);
    assert_eq!(claims["sub"], "oJwtUser");
    assert_eq!(claims["aud"], crate::helpers::APPID, "the appid by default");
    assert_eq!(claims["app"], "default");
    assert_eq!(claims["appid"], crate::helpers::APPID);
    assert_eq!(claims["unionid"], "uJwtPerson");
    assert_eq!(claims["iat"], CLOCK_START);
    assert_eq!(claims["nbf"], CLOCK_START);
    assert_eq!(claims["exp"], CLOCK_START + 300);
    assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() >= 32));
    let sid = claims["sid"].as_str().expect("a sid");
    assert!(
        !jwt.contains(&session) && sid != session,
        "the session token stays out of the JWT"
    );

    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", app.address))
        .await
        .expect("the JWKS")
        .json()
        .await
        .expect("JSON");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], header["kid"]);
    assert!(keys[0].get("d").is_none(), "never the private key");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).expect("a JWK");
    let thumbprint = jwk
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .expect("a thumbprint");
    assert_eq!(header["kid"], thumbprint, "kid is the RFC 7638 thumbprint");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[JWT_ISSUER]);
    validation.set_audience(&[crate::helpers::APPID]);
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("a key");
    jsonwebtoken::decode::<Value>(jwt, &key, &validation).expect("the signature verifies");
}

#[tokio::test]
async fn a_jwt_never_outlives_its_session() {
    let mut settings = jwt_settings(&jwt_key_file());
    settings.push(("WXLOGIN_SESSION_TTL_SECS", "120".to_owned()));
    let app = spawn_with(&settings).await;
    let session = app.login_as("c1", "oShort").await;
    let reply = exchange(&app, &session).await;
    assert_eq!(reply.json()["expires_in"], 120);
    let (_, claims) = header_and_claims(reply.json()["access_token"].as_str().expect("a JWT"));
    assert_eq!(claims["exp"], CLOCK_START + 120);
}

#[tokio::test]
async fn an_app_can_name_its_own_audience() {
    let mut settings = jwt_settings(&jwt_key_file());
    settings.extend([
        ("WXLOGIN_APP_SHOP_APPID", "wx_shop".to_owned()),
        ("WXLOGIN_APP_SHOP_SECRET", "shop-secret".to_owned()),
        (
            "WXLOGIN_APP_SHOP_AUDIENCE",
            "https://api.shop.example".to_owned(),
        ),
    ]);
    let app = spawn_with(&settings).await;
    crate::helpers::wechat_answers(&app.wechat, crate::helpers::success("oShopper", None)).await;
    let login = app
        .http
        .post(format!("{}/apps/shop/openid", app.address))
        .json(&json!({ "code": "shop-code" }));
    let login = app.send(login).await;
    let session = login.json()["token"].as_str().expect("a token").to_owned();
    let (_, claims) = header_and_claims(&jwt_for(&app, &session).await);
    assert_eq!(claims["aud"], "https://api.shop.example");
    assert_eq!(claims["app"], "shop");
    assert_eq!(claims["appid"], "wx_shop");
}

#[tokio::test]
async fn the_exchange_refuses_in_rfc_6749s_shape() {
    let app = spawn_jwt_app().await;
    let session = app.login_as("c1", "oRefused").await;
    let form = |grant: &'static str, token: &str, kind: &'static str| {
        vec![
            ("grant_type", grant.to_owned()),
            ("subject_token", token.to_owned()),
            ("subject_token_type", kind.to_owned()),
        ]
    };
    let cases = [
        (
            form("password", &session, ACCESS_TOKEN),
            400,
            "unsupported_grant_type",
        ),
        (
            form(
                TOKEN_EXCHANGE,
                &session,
                "urn:ietf:params:oauth:token-type:id_token",
            ),
            400,
            "invalid_request",
        ),
        (
            form(TOKEN_EXCHANGE, "not-a-token", ACCESS_TOKEN),
            400,
            "invalid_request",
        ),
        (
            form(TOKEN_EXCHANGE, &"A".repeat(43), ACCESS_TOKEN),
            400,
            "invalid_request",
        ),
        (
            vec![("grant_type", TOKEN_EXCHANGE.to_owned())],
            400,
            "invalid_request",
        ),
    ];
    for (form, status, error) in cases {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = post_form(&app, "/oauth/token", &pairs, None).await;
        assert_oauth_error(&reply, status, error);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    let json = app
        .http
        .post(format!("{}/oauth/token", app.address))
        .json(&json!({ "grant_type": TOKEN_EXCHANGE }));
    assert_oauth_error(&app.send(json).await, 415, "invalid_request");
    let get = app.http.get(format!("{}/oauth/token", app.address));
    assert_oauth_error(&app.send(get).await, 405, "invalid_request");
    let twice = app
        .http
        .post(format!("{}/oauth/token", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type={TOKEN_EXCHANGE}&grant_type=password"));
    assert_oauth_error(&app.send(twice).await, 400, "invalid_request");
}

#[tokio::test]
async fn the_metadata_names_the_routes_that_serve_it() {
    let app = spawn_jwt_app().await;
    let session = app.login_as("c1", "oDiscovering").await;
    let get = |path: &str| {
        let request = app.http.get(format!("{}{path}", app.address));
        app.send(request)
    };
    let oauth = get("/.well-known/oauth-authorization-server").await;
    let openid = get("/.well-known/openid-configuration").await;
    for reply in [&oauth, &openid] {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
        let metadata = reply.json();
        assert_eq!(metadata["issuer"], JWT_ISSUER);
        assert_eq!(metadata["grant_types_supported"], json!([TOKEN_EXCHANGE]));
        for (field, path) in [
            ("jwks_uri", "/.well-known/jwks.json"),
            ("token_endpoint", "/oauth/token"),
            ("introspection_endpoint", "/oauth/introspect"),
        ] {
            assert_eq!(metadata[field], format!("{JWT_ISSUER}{path}"), "{field}");
        }
    }
    assert_eq!(
        openid.json()["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    // Each endpoint the metadata names is served where it says, under the issuer.
    let metadata = oauth.json();
    let path_of = |field: &str| {
        metadata[field]
            .as_str()
            .and_then(|url| url.strip_prefix(JWT_ISSUER))
            .expect("under the issuer")
            .to_owned()
    };
    let jwks = get(&path_of("jwks_uri")).await;
    assert_eq!(jwks.json()["keys"].as_array().map(Vec::len), Some(1));
    let token_path = path_of("token_endpoint");
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", session.as_str()),
        ("subject_token_type", ACCESS_TOKEN),
    ];
    assert_eq!(post_form(&app, &token_path, &form, None).await.status, 200);
    let introspection = path_of("introspection_endpoint");
    let reply = post_form(
        &app,
        &introspection,
        &[("token", &session)],
        Some(BACKEND_TOKEN),
    )
    .await;
    assert_eq!(reply.json()["active"], true);
}

#[tokio::test]
async fn without_an_issuer_the_routes_are_not_there() {
    let app = spawn_app_with(&[]).await;
    let session = app.login_as("c1", "oNoJwt").await;
    exchange(&app, &session)
        .await
        .assert_error(404, "not_found");
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let request = app.http.get(format!("{}{path}", app.address));
        app.send(request).await.assert_error(404, "not_found");
    }
}

#[tokio::test]
async fn after_a_rotation_replicas_on_one_redis_accept_the_old_keys_jwts_and_sign_with_the_new() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (old_key, new_key) = (jwt_key_file(), jwt_key_file());
    let store = [
        ("WXLOGIN_SESSION_STORE", "redis".to_owned()),
        ("WXLOGIN_REDIS_URL", redis.url()),
    ];
    let mut before = jwt_settings(&old_key);
    before.extend(store.clone());
    let before = spawn_with(&before).await;
    let session = before.login_as("c1", "oRotated").await;
    let old_jwt = jwt_for(&before, &session).await;

    let mut after = jwt_settings(&new_key);
    after.extend(store);
    after.push(("WXLOGIN_JWT_OLD_KEYS_FILE", old_key));
    let after = spawn_with(&after).await;
    assert_eq!(introspect(&after, &old_jwt).await["active"], true);
    let new_jwt = jwt_for(&after, &session).await;
    let kid = |jwt: &str| header_and_claims(jwt).0["kid"].clone();
    assert_ne!(kid(&new_jwt), kid(&old_jwt));
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", after.address))
        .await
        .expect("the JWKS")
        .json()
        .await
        .expect("JSON");
    let kids: Vec<&Value> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(
        kids,
        [&kid(&new_jwt), &kid(&old_jwt)],
        "the current key first"
    );
}

#[tokio::test]
async fn no_jwt_session_token_or_key_reaches_the_logs() {
    let key_file = jwt_key_file();
    let app = spawn_with(&jwt_settings(&key_file)).await;
    let session = app.login_as("c1", "oLogged").await;
    let jwt = jwt_for(&app, &session).await;
    introspect(&app, &jwt).await;
    introspect(&app, &session).await;
    let key = std::fs::read_to_string(&key_file).expect("the key");
    let logs = captured_logs();
    for secret in [jwt.as_str(), session.as_str(), BACKEND_TOKEN] {
        assert!(!logs.contains(secret), "logged: {secret}");
    }
    let signature = jwt.rsplit('.').next().expect("a signature");
    assert!(!logs.contains(signature));
    for line in key.lines().filter(|line| !line.starts_with("-----")) {
        assert!(!logs.contains(line), "a line of the key was logged");
    }
}

/// The binary with the one app and `env`, expected to refuse to start; its stderr.
fn refused_start(env: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .env_clear()
        .env("WXLOGIN_LISTEN", "127.0.0.1:0")
        .env("WXLOGIN_APPID", "wx1")
        .env("WXLOGIN_SECRET", "s")
        .envs(env.iter().copied())
        .output()
        .expect("wxlogin runs");
    assert!(!output.status.success(), "it started with {env:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_jwt_settings_stop_start_up_naming_the_setting_or_the_file_never_the_key() {
    let key_file = jwt_key_file();
    let dir = std::path::Path::new(&key_file).parent().expect("a folder");
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .expect("a key")
        .serialize_pem();
    let wrong_curve = dir.join("p384.pem");
    std::fs::write(&wrong_curve, &p384).expect("a key file");
    let wrong_curve = wrong_curve.display().to_string();
    let missing = dir.join("missing.pem").display().to_string();

    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[
                ("WXLOGIN_JWT_ISSUER", "http://login.example.test"),
                ("WXLOGIN_JWT_KEY_FILE", &key_file),
            ],
            "WXLOGIN_JWT_ISSUER",
        ),
        (
            &[("WXLOGIN_JWT_ISSUER", JWT_ISSUER)],
            "WXLOGIN_JWT_KEY_FILE",
        ),
        (
            &[
                ("WXLOGIN_JWT_ISSUER", JWT_ISSUER),
                ("WXLOGIN_JWT_KEY_FILE", &missing),
            ],
            "missing.pem",
        ),
        (
            &[
                ("WXLOGIN_JWT_ISSUER", JWT_ISSUER),
                ("WXLOGIN_JWT_KEY_FILE", &wrong_curve),
            ],
            "p384.pem: is not a P-256 private key",
        ),
        (
            &[
                ("WXLOGIN_JWT_ISSUER", JWT_ISSUER),
                ("WXLOGIN_JWT_KEY_FILE", &key_file),
                ("WXLOGIN_JWT_TTL_SECS", "3601"),
            ],
            "WXLOGIN_JWT_TTL_SECS",
        ),
        (
            &[
                ("WXLOGIN_JWT_ISSUER", JWT_ISSUER),
                ("WXLOGIN_JWT_KEY_FILE", &key_file),
                ("WXLOGIN_JWT_OLD_KEYS_FILE", &missing),
            ],
            "WXLOGIN_JWT_OLD_KEYS_FILE",
        ),
    ];
    for (env, named) in cases {
        let stderr = refused_start(env);
        assert!(stderr.contains(named), "{env:?}: {stderr}");
        for line in p384.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!stderr.contains(line), "never the key: {stderr}");
        }
    }
}
