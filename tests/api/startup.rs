//! The real binary, started as a user starts it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const WXLOGIN: &str = env!("CARGO_BIN_EXE_wxlogin");

/// Waits for the child to exit, killing it if it is still running after `limit`: a
/// wxlogin that wrongly starts serving must fail the test, not hang it.
fn exit_within(mut child: Child, limit: Duration) -> std::process::Output {
    let started = Instant::now();
    while child.try_wait().expect("child status").is_none() {
        if started.elapsed() > limit {
            child.kill().ok();
            panic!("wxlogin was still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Starts the binary with only `env` and waits for it to exit.
fn run_with_only(env: &[(&str, &str)]) -> std::process::Output {
    let child = Command::new(WXLOGIN)
        .env_clear()
        .env("WXLOGIN_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wxlogin starts");
    exit_within(child, Duration::from_secs(30))
}

#[test]
fn without_credentials_or_dev_it_exits_non_zero_naming_the_missing_variables() {
    let output = run_with_only(&[]);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WXLOGIN_APPID"), "{stderr}");
    assert!(stderr.contains("WXLOGIN_SECRET"), "{stderr}");
    assert!(stderr.contains("--dev"), "{stderr}");
}

#[test]
fn a_dev_setting_in_the_environment_does_not_switch_on_development_mode() {
    let output = run_with_only(&[("WXLOGIN_DEV", "true"), ("WXLOGIN_MODE", "development")]);

    assert!(!output.status.success(), "only --dev starts the emulator");
    assert!(String::from_utf8_lossy(&output.stderr).contains("WXLOGIN_APPID"));
}

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// `wxlogin --dev` listening on `listen`, with nothing else in its environment, its stdout
/// piped and its stderr going to `stderr`.
fn dev_mode(listen: &str, stderr: Stdio) -> Command {
    let mut command = Command::new(WXLOGIN);
    command
        .arg("--dev")
        .env_clear()
        .env("WXLOGIN_LISTEN", listen)
        .stdout(Stdio::piped())
        .stderr(stderr);
    command
}

/// `wxlogin --dev` on a port of its own, killed when the test ends.
fn spawn_dev_mode(stderr: Stdio) -> KillOnDrop {
    KillOnDrop(
        dev_mode("127.0.0.1:0", stderr)
            .spawn()
            .expect("wxlogin --dev starts"),
    )
}

/// Runs `read`, a blocking read of a dev-mode child's output, off the runtime. A guard, not
/// a wait: output that changed shape must fail the test, not hang it (killing the child on
/// drop then ends the blocked read).
async fn read_within_a_minute<T: Send + 'static>(
    what: &str,
    read: impl FnOnce() -> T + Send + 'static,
) -> T {
    tokio::time::timeout(Duration::from_secs(60), tokio::task::spawn_blocking(read))
        .await
        .unwrap_or_else(|_| panic!("{what} within a minute"))
        .expect("the read finishes")
}

/// Logs in with the emulator's code `alice@1` at `url` (a dev-mode `/openid`) and checks
/// that a token comes back.
async fn log_in_alice(url: &str) {
    let reply = reqwest::Client::new()
        .post(url)
        .json(&json!({ "code": "alice@1" }))
        .send()
        .await
        .expect("wxlogin answers");
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&reply.bytes().await.expect("body")).expect("JSON");
    assert!(body["token"].is_string(), "{body}");
}

#[tokio::test]
async fn dev_mode_prints_a_banner_whose_curl_line_logs_in() {
    let mut child = spawn_dev_mode(Stdio::null());
    let stdout = child.0.stdout.take().expect("stdout");
    let banner = read_within_a_minute("the banner", move || {
        let mut banner = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("banner line");
            banner.push_str(&line);
            banner.push('\n');
            if line.trim_start().starts_with("Magic codes") {
                break;
            }
        }
        banner
    })
    .await;

    assert!(banner.contains("DEVELOPMENT MODE"), "{banner}");
    let curl = banner
        .lines()
        .find(|l| l.trim_start().starts_with("curl -s -X POST"))
        .expect("a curl line");
    let url = curl
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL in the curl line");

    log_in_alice(url).await;
}

#[tokio::test]
async fn a_closed_stdout_does_not_stop_the_dev_server() {
    let mut child = spawn_dev_mode(Stdio::piped());
    // Closed before the banner is written: writing it fails with a broken pipe.
    drop(child.0.stdout.take());
    let stderr = child.0.stderr.take().expect("stderr");
    let addr = read_within_a_minute("the log line", move || {
        BufReader::new(stderr)
            .lines()
            .map(|line| line.expect("log line"))
            .find(|line| line.contains("DEVELOPMENT MODE"))
            .and_then(|line| {
                let addr = line.split_once("addr=")?.1.split_whitespace().next()?;
                Some(addr.to_owned())
            })
    })
    .await
    .expect("a DEVELOPMENT MODE line with the address");

    log_in_alice(&format!("http://{addr}/openid")).await;
}

#[test]
fn when_start_up_fails_the_error_comes_after_the_warnings_logged_before_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to take");
    let addr = taken.local_addr().expect("its address").to_string();
    let child = dev_mode(&addr, Stdio::piped())
        .env("WXLOGIN_SESION_TTL", "1h")
        .spawn()
        .expect("wxlogin starts");
    let output = exit_within(child, Duration::from_secs(30));

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let warning = lines
        .iter()
        .position(|line| line.contains("WXLOGIN_SESION_TTL"))
        .expect("the misspelt setting named");
    let error = lines
        .iter()
        .position(|line| line.starts_with("wxlogin: "))
        .expect("the error line");
    assert!(warning < error, "{stderr}");
    assert!(lines[error].contains(&addr), "{stderr}");
}

#[tokio::test]
async fn with_few_file_descriptors_idle_connections_make_room_and_healthz_still_answers() {
    let port = crate::tools::free_port();
    let listen = format!("127.0.0.1:{port}");
    // ulimit in the shell lowers both limits, so wxlogin cannot raise its own.
    let mut shell = Command::new("sh");
    shell
        .args(["-c", "ulimit -n 128 && exec \"$0\" --dev", WXLOGIN])
        .env_clear()
        .env("WXLOGIN_LISTEN", &listen)
        .env("WXLOGIN_MAX_CONNECTIONS", "10000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(shell.spawn().expect("wxlogin starts"));
    let stderr = child.0.stderr.take().expect("stderr");
    let capped = read_within_a_minute("the cap warning", move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("capping connections lower"))
    })
    .await;
    assert!(
        capped.is_some(),
        "wxlogin says it keeps under the open-file limit"
    );

    let mut idle = Vec::new();
    for _ in 0..200 {
        match tokio::net::TcpStream::connect(&listen).await {
            Ok(stream) => idle.push(stream),
            Err(err) => panic!("connection {}: {err}", idle.len()),
        }
    }
    let health = reqwest::Client::new()
        .get(format!("http://{listen}/healthz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("wxlogin answers with 200 idle connections open");

    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn with_several_apps_the_dev_banner_has_a_login_line_for_each_and_each_works() {
    let mut child = KillOnDrop(
        dev_mode("127.0.0.1:0", Stdio::null())
            .env("WXLOGIN_APP_SHOP_APPID", "wxdev_shop")
            .env("WXLOGIN_APP_CLUB_APPID", "wxdev_club")
            .spawn()
            .expect("wxlogin --dev starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let banner = read_within_a_minute("the banner", move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|line| !line.trim_start().starts_with("Magic codes"))
            .collect::<Vec<_>>()
    })
    .await;

    let logins: Vec<&String> = banner
        .iter()
        .filter(|l| l.trim_start().starts_with("curl -s -X POST"))
        .collect();
    assert_eq!(logins.len(), 2, "{banner:#?}");
    for (app, appid) in [("club", "wxdev_club"), ("shop", "wxdev_shop")] {
        let line = logins
            .iter()
            .find(|l| l.contains(&format!("/apps/{app}/openid")))
            .unwrap_or_else(|| panic!("no line for {app}: {banner:#?}"));
        assert!(line.contains(appid), "{line}");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("a URL");
        let body = line.split('\'').nth(3).expect("the -d body");
        let reply = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("wxlogin answers");
        assert_eq!(reply.status(), 200, "{line}");
    }
}
