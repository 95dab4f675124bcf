//! Graceful shutdown: a stop signal lets the logins in flight finish, within a limit.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wxlogin::clock::Clock;
use wxlogin::config::{Mode, Settings};
use wxlogin::startup::Application;

use crate::held_wechat::{HeldWeChat, held_wechat};

/// Starts wxlogin against `wechat`; it stops when the returned sender fires.
async fn start(
    wechat: &HeldWeChat,
    shutdown_timeout_secs: &str,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let env = [
        ("WXLOGIN_APPID", "wx_test_appid"),
        ("WXLOGIN_SECRET", "shutdown-secret"),
        ("WXLOGIN_WECHAT_BASE_URL", wechat.url.as_str()),
        ("WXLOGIN_LISTEN", "127.0.0.1:0"),
        ("WXLOGIN_SHUTDOWN_TIMEOUT_SECS", shutdown_timeout_secs),
        // Far beyond any drain limit here: only the shutdown timeout may end a held login.
        ("WXLOGIN_WECHAT_TIMEOUT_MS", "600000"),
    ];
    let settings = Settings::load(env, Mode::Production).expect("settings");
    let app = Application::build(settings, Clock::System)
        .await
        .expect("app");
    let address = format!("http://{}", app.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        stopped.await.ok();
    }));
    (address, stop, server)
}

/// How long WeChat keeps the in-flight login after SIGTERM, in the test below.
const HOLD_AFTER_SIGTERM: Duration = Duration::from_millis(500);

/// The real binary, as a container runtime stops it: SIGTERM while a login waits on WeChat.
#[tokio::test]
async fn on_sigterm_a_login_in_flight_completes_and_the_process_exits_0() {
    let mut wechat = held_wechat().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .env_clear()
        .envs([
            ("WXLOGIN_APPID", "wx_test_appid"),
            ("WXLOGIN_SECRET", "shutdown-secret"),
            ("WXLOGIN_WECHAT_BASE_URL", wechat.url.as_str()),
            ("WXLOGIN_LISTEN", "127.0.0.1:0"),
            ("WXLOGIN_LOG_FORMAT", "json"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("wxlogin starts");
    let mut log = log_lines(child.stderr.take().expect("stderr"));
    let listening = wait_for(&mut log, "wxlogin listening").await;
    let addr =
        serde_json::from_str::<serde_json::Value>(&listening).expect("a JSON log line")["addr"]
            .as_str()
            .expect("the bound address")
            .to_owned();

    let login = wechat.hold_a_login(&format!("http://{addr}"), "held").await;
    let sigterm = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(sigterm.expect("kill runs").success());
    wait_for(&mut log, "shutting down").await;

    let late = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(
        late.is_err(),
        "a new connection after the shutdown signal must not be served"
    );
    // Not a synchronisation: a correct drain passes however long WeChat holds the login.
    // The hold gives a process that would exit without draining the time to do so.
    tokio::time::sleep(HOLD_AFTER_SIGTERM).await;
    wechat.release(1);

    let response = login
        .await
        .expect("join")
        .expect("the login was answered, not cut off");
    assert_eq!(response.status(), 200);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("exit status");
    assert!(status.success(), "{status}");
}

/// Each line the child writes to `stderr`, as it comes.
fn log_lines(stderr: std::process::ChildStderr) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line containing `needle`. The time limit is a guard against hanging, not a wait.
async fn wait_for(log: &mut mpsc::UnboundedReceiver<String>, needle: &str) -> String {
    let find = async {
        while let Some(line) = log.recv().await {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("wxlogin exited without logging {needle:?}");
    };
    tokio::time::timeout(Duration::from_secs(60), find)
        .await
        .expect("the log line within a minute")
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_that_outlast_the_timeout() {
    let mut wechat = held_wechat().await;
    let (address, stop, server) = start(&wechat, "1").await;
    let _stuck = wechat.hold_a_login(&address, "held").await;

    stop.send(()).expect("the server is running");

    // WeChat is never released: only the shutdown timeout can end the server. The outer
    // limit only turns a regression into a failure instead of a hang.
    let exited = tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the server gave up on the request");
    exited.expect("join").expect("a clean exit at the timeout");
}
