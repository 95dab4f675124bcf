//! `GET /openapi.json`: an OpenAPI 3.1 document that covers every route the router has,
//! and that an independent validator accepts.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::helpers::{Requests, spawn_app};
use crate::tools;

async fn document() -> Value {
    let app = spawn_app().await;
    let reply = app
        .send(app.http.get(format!("{}/openapi.json", app.address)))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |method| (path.clone(), method.to_uppercase()))
        })
        .collect()
}

/// Every `.route("/path", get(…).post(…))` in `src/http`, read from the source: a route
/// added there without documentation is found, whatever the document says.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("src/http") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(path).expect("source");
        for call in source.split(".route(").skip(1) {
            let path = call.split('"').nth(1).expect("a literal path").to_owned();
            // The method routers, up to the call's closing parenthesis.
            let mut depth = 1;
            let end = call
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(call.len(), |(at, _)| at);
            let methods = &call[..end];
            for method in [
                "get", "post", "put", "patch", "delete", "head", "options", "trace", "any",
            ] {
                let call = format!("{method}(");
                let called = methods.match_indices(&call).any(|(at, _)| {
                    !methods[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                });
                if called && method == "any" {
                    // `any` answers every method, and each is documented.
                    for method in [
                        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
                    ] {
                        routes.insert((path.clone(), method.to_owned()));
                    }
                } else if called {
                    routes.insert((path.clone(), method.to_uppercase()));
                }
            }
        }
    }
    routes
}

#[tokio::test]
async fn every_route_in_the_router_is_documented() {
    let doc = document().await;
    let documented = documented(&doc);
    let routes = routes_in_source();
    assert!(routes.len() >= 14, "the source scan found {routes:?}");

    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "undocumented routes: {undocumented:?}"
    );
    let phantom: Vec<_> = documented.difference(&routes).collect();
    assert!(phantom.is_empty(), "documented but not routed: {phantom:?}");
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = spawn_app().await;
    let doc = document().await;
    for (path, method) in documented(&doc) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let reply = app
            .send(
                app.http
                    .request(method.clone(), format!("{}{path}", app.address)),
            )
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
