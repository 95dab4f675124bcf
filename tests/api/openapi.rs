//! `GET /openapi.json`: an OpenAPI 3.1 document that covers every route the router has,
//! and that an independent validator accepts.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, JWT_ISSUER, Requests, TestApp, jwt_key_file, spawn_app, spawn_app_with,
};
use crate::tools;

async fn document() -> Value {
    document_at(&spawn_app().await.address).await
}

/// The document the listener at `address` serves.
async fn document_at(address: &str) -> Value {
    let reply = reqwest::get(format!("{address}/openapi.json"))
        .await
        .expect("wxlogin answers");
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    reply.json().await.expect("JSON")
}

fn paths(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect()
}

/// Every (path, method) the document lists. A path item's `parameters` is not a method.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .filter(|key| *key != "parameters")
                .map(move |method| (path.clone(), method.to_uppercase()))
        })
        .collect()
}

/// Every `.route("/path", …)` in `src/http`, read from the source: a route added there
/// without documentation is found, whatever the document says.
fn paths_in_source() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    routes_in(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"),
        &mut paths,
    );
    paths
}

fn routes_in(dir: &std::path::Path, paths: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            routes_in(&path, paths);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(path).expect("source");
        for call in source.split(".route(").skip(1) {
            paths.insert(call.split('"').nth(1).expect("a literal path").to_owned());
        }
    }
}

/// The path as a request would name it: `{app}` is the test's one app.
fn concrete(path: &str) -> String {
    path.replace("{app}", "default")
        .replace("{openid}", "oSomeUser")
        .replace("{unionid}", "uSomePerson")
}

const BACKEND_TOKEN: &str = "openapi-backend-token-0123456789abcdef";

/// An app with every route mounted: the admin API, the backend routes and JWTs are on.
async fn spawn_app_with_every_route() -> TestApp {
    let backends = format!("probe={BACKEND_TOKEN}");
    spawn_app_with(&[
        ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN),
        ("WXLOGIN_BACKEND_TOKENS", &backends),
        ("WXLOGIN_JWT_ISSUER", JWT_ISSUER),
        ("WXLOGIN_JWT_KEY_FILE", &jwt_key_file()),
    ])
    .await
}

/// The credential a path's guard admits: without it, a guard answers 401 whatever the
/// method, which would hide what the path serves.
fn credential_for(path: &str) -> &'static str {
    if path.starts_with("/apps/{app}/access_token") || path == "/oauth/introspect" {
        BACKEND_TOKEN
    } else {
        ADMIN_TOKEN
    }
}

/// Which methods the server answers on each routed path, found by asking it: every method
/// that is not a 405. HEAD is left out: it is GET without a body (RFC 9110 §9.3.2), and
/// axum answers it wherever GET is answered. So is CONNECT, which an HTTP client sends to
/// an authority, never to a path.
async fn served(app: &TestApp) -> BTreeSet<(String, String)> {
    let mut served = BTreeSet::new();
    for path in paths_in_source() {
        for method in [
            "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "QUERY",
        ] {
            let request = app
                .http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).expect("a method"),
                    format!("{}{}", app.address, concrete(&path)),
                )
                .bearer_auth(credential_for(&path));
            if app.send(request).await.status != 405 {
                served.insert((path.clone(), method.to_owned()));
            }
        }
    }
    served
}

#[tokio::test]
async fn every_method_the_server_answers_is_documented_and_no_other() {
    let app = spawn_app_with_every_route().await;
    let documented: BTreeSet<_> = documented(&document_at(&app.address).await)
        .into_iter()
        .filter(|(_, method)| method != "HEAD")
        .collect();
    let served = served(&app).await;
    assert!(served.len() >= 20, "the probe found {served:?}");

    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "answered but undocumented: {undocumented:?}"
    );
    let phantom: Vec<_> = documented.difference(&served).collect();
    assert!(
        phantom.is_empty(),
        "documented but answered 405: {phantom:?}"
    );
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = spawn_app_with_every_route().await;
    let doc = document_at(&app.address).await;
    for (path, method) in documented(&doc) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let reply = app
            .send(app.http.request(
                method.clone(),
                format!("{}{}", app.address, concrete(&path)),
            ))
            .await;
        assert!(
            ![404, 405].contains(&reply.status),
            "{method} {path}: {} {}",
            reply.status,
            reply.text
        );
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_error_bodies() {
    let doc = document().await;

    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["type"],
        "http"
    );
    let session = &doc["paths"]["/session"]["get"];
    assert_eq!(session["security"][0]["bearer"], serde_json::json!([]));
    assert_eq!(
        session["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error", "message"]));
    let login = &doc["paths"]["/openid"]["post"];
    assert_eq!(
        login["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CodeField"
    );
    for status in ["200", "400", "401", "409", "429", "503", "504"] {
        assert!(
            login["responses"][status].is_object(),
            "POST /openid lacks {status}"
        );
    }
}

#[tokio::test]
async fn openapi_spec_validator_accepts_the_document() {
    let validator = ["-m", "openapi_spec_validator"];
    if !tools::available(
        "python3",
        &["-c", "import openapi_spec_validator"],
        "python3 -m pip install openapi-spec-validator",
    ) {
        return;
    }
    let doc = document().await;
    let file = std::env::temp_dir().join(format!("wxlogin-openapi-{}.json", std::process::id()));
    std::fs::write(&file, doc.to_string()).expect("write the document");

    let output = Command::new("python3")
        .args(validator)
        .arg(&file)
        .output()
        .expect("the validator runs");
    std::fs::remove_file(&file).ok();

    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn each_listener_documents_the_routes_it_serves_and_admin_routes_their_404() {
    let is_admin = |path: &String| path.starts_with("/admin/");
    let off = document().await;
    let admin_ops: Vec<&Value> = off["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| is_admin(path))
        .flat_map(|(_, item)| item.as_object().expect("an item").values())
        .collect();
    assert_eq!(
        admin_ops.len(),
        5,
        "the admin routes, answered 404 while off"
    );
    for operation in admin_ops {
        assert!(
            operation["responses"]["404"].is_object(),
            "{}",
            operation["operationId"]
        );
    }

    let app = spawn_app_with(&[
        ("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN),
        ("WXLOGIN_ADMIN_LISTEN", "127.0.0.1:0"),
    ])
    .await;
    let public = paths(&document_at(&app.address).await);
    assert!(public.contains("/openid"), "{public:?}");
    assert!(
        !public.iter().any(is_admin) && !public.contains("/metrics"),
        "served on the admin listener, not here: {public:?}"
    );
    let admin_address = app.admin_address.clone().expect("an admin listener");
    let admin = paths(&document_at(&admin_address).await);
    assert!(admin.contains("/metrics"), "{admin:?}");
    assert_eq!(admin.iter().filter(|path| is_admin(path)).count(), 4);
    assert!(
        !admin.contains("/openid") && !admin.contains("/healthz"),
        "served on the public listener only: {admin:?}"
    );
}

/// The document's description of `status` on `method` `path`.
fn described(doc: &Value, path: &str, method: &str, status: u16) -> String {
    doc["paths"][path][method]["responses"][status.to_string()]["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn every_way_a_block_is_refused_for_its_input_is_documented() {
    let app = spawn_app_with(&[("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let doc = document_at(&app.address).await;
    let documented = described(&doc, "/admin/apps/{app}/users/{openid}/block", "put", 400);
    let refusals = [
        ("oA", json!({ "until": "next tuesday", "reason": "r" })),
        ("oA", json!({ "until": 1, "reason": "r" })),
        (
            "oA",
            json!({ "until": 4_000_000_000u64, "reason": "r".repeat(201) }),
        ),
        ("o%20A", json!({ "until": 4_000_000_000u64, "reason": "r" })),
    ];
    for (openid, body) in refusals {
        let reply = app
            .admin(
                reqwest::Method::PUT,
                &format!("/admin/apps/default/users/{openid}/block"),
                Some(&body),
            )
            .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        let message = reply.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            documented.contains(&message),
            "{message:?} is not in the document's 400: {documented}"
        );
    }
}
