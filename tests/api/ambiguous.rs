//! Requests that could be read two ways are refused, and what a client puts in a request
//! id does not reach the logs unchecked.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::open_data::{ENCRYPTED, IV};

#[tokio::test]
async fn two_authorization_headers_are_refused_whichever_comes_first() {
    let app = spawn_app().await;
    let good = app.login_as("c-two-headers", "oTwoHeaders").await;
    let bad = "A".repeat(43);

    for route in ["/session", "/auth"] {
        for (first, second) in [(&good, &bad), (&bad, &good)] {
            let reply = app
                .send(
                    app.http
                        .get(format!("{}{route}", app.address))
                        .header("authorization", format!("Bearer {first}"))
                        .header("authorization", format!("Bearer {second}")),
                )
                .await;
            reply.assert_error(400, "ambiguous_request");
        }
    }
}

/// What the server answers to `request`, sent as it is on a connection of its own.
async fn raw(app: &TestApp, request: &str) -> String {
    let addr = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 4096];
    let read = stream.read(&mut answer).await.expect("read");
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

#[tokio::test]
async fn an_http_1_1_request_needs_exactly_one_host() {
    let app = spawn_app().await;

    let none = raw(&app, "GET /healthz HTTP/1.1\r\n\r\n").await;
    let two = raw(&app, "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
    let one = raw(&app, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let http_1_0 = raw(&app, "GET /healthz HTTP/1.0\r\n\r\n").await;

    for answer in [&none, &two] {
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("ambiguous_request"), "{answer}");
    }
    assert!(one.starts_with("HTTP/1.1 200"), "{one}");
    assert!(
        http_1_0.starts_with("HTTP/1.0 200"),
        "HTTP/1.0 has no Host rule: {http_1_0}"
    );
}

#[tokio::test]
async fn a_request_id_is_kept_only_if_it_is_a_short_plain_token() {
    let app = spawn_app().await;
    let healthz = format!("{}/healthz", app.address);
    let echoed = |id: &str| {
        let request = app.http.get(&healthz).header("x-request-id", id);
        async {
            app.send(request)
                .await
                .header("x-request-id")
                .map(str::to_owned)
        }
    };
    let long = "x".repeat(65);
    let forged = "abc\tdef ghi";

    assert_eq!(echoed("trace-1.2_3").await.as_deref(), Some("trace-1.2_3"));
    assert_eq!(echoed(&"y".repeat(64)).await, Some("y".repeat(64)));
    for refused in [long.as_str(), forged, "a/b", "{json}"] {
        let replaced = echoed(refused).await.expect("an id");
        assert_ne!(replaced, refused);
        assert!(
            uuid::Uuid::parse_str(&replaced).is_ok(),
            "a fresh id: {replaced}"
        );
    }
    assert!(
        !captured_logs().contains(&long),
        "the long id reached a log line"
    );
}

#[tokio::test]
async fn a_json_body_must_be_utf8_even_where_its_fields_are_ignored() {
    let app = spawn_app().await;
    wechat_answers(&app.wechat, success("oUtf8", None)).await;
    let mut body = br#"{"code":"fine-code","ignored":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}"#);

    let reply = app
        .send(
            app.http
                .post(format!("{}/openid", app.address))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;

    reply.assert_error(400, "malformed_json");
    assert_eq!(calls_to(&app.wechat, CODE2SESSION).await, 0);
}

#[tokio::test]
async fn data_sealed_for_another_user_of_the_app_is_a_watermark_mismatch() {
    let app = spawn_app().await;
    // WeChat sealed ENCRYPTED for oTestUser0001; this user holds the same session_key.
    let token = app.login_as("c-someone-else", "oSomeoneElse").await;

    let reply = app
        .post_as(
            &token,
            "/wechat/decrypt",
            &serde_json::json!({ "encryptedData": ENCRYPTED, "iv": IV }),
        )
        .await;

    reply.assert_error(400, "watermark_mismatch");
}
