//! `wxlogin healthcheck`, the container HEALTHCHECK for an image without curl.

use std::process::{Command, Output};

use crate::helpers::spawn_app;
use crate::tools::free_port;

fn healthcheck(listen: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .arg("healthcheck")
        .env_clear()
        .env("WXLOGIN_LISTEN", listen)
        .output()
        .expect("wxlogin runs")
}

/// Runs the healthcheck off the test's runtime (the app serving it lives there) and
/// asserts it exits 0.
async fn assert_healthy(listen: String) {
    let output = tokio::task::spawn_blocking(move || healthcheck(&listen))
        .await
        .expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn healthcheck_exits_0_when_the_server_answers_and_needs_no_credentials() {
    let app = spawn_app().await;
    let listen = app.address.trim_start_matches("http://").to_owned();

    assert_healthy(listen).await;
}

#[tokio::test]
async fn a_server_on_all_interfaces_is_probed_on_loopback() {
    let app = spawn_app().await;
    let port = app.address.rsplit(':').next().expect("a port");

    assert_healthy(format!("0.0.0.0:{port}")).await;
}

#[test]
fn healthcheck_exits_1_and_says_why_when_nothing_answers() {
    let output = healthcheck(&format!("127.0.0.1:{}", free_port()));

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unhealthy"), "{stderr}");
}
