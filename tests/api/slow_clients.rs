//! Slow, idle and greedy clients, on real sockets against the real server, with limits small
//! enough that each test runs in seconds. Every wait here is for the server to act (to close
//! a connection, or to exit); the outer limits only turn a regression into a failure instead
//! of a hang.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use wxlogin::clock::Clock;
use wxlogin::config::{Mode, Settings};
use wxlogin::startup::Application;

use crate::held_wechat::{HeldWeChat, held_wechat};

/// Far longer than any test runs: a limit the test does not exercise.
const NEVER: &str = "600";
const GUARD: Duration = Duration::from_secs(60);

struct Server {
    addr: String,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// wxlogin against `wechat`, with every connection limit at `NEVER` unless `limits` says.
async fn start(wechat: &HeldWeChat, limits: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("WXLOGIN_APPID", "wx_test_appid"),
        ("WXLOGIN_SECRET", "slow-clients-secret"),
        ("WXLOGIN_WECHAT_BASE_URL", wechat.url.as_str()),
        ("WXLOGIN_LISTEN", "127.0.0.1:0"),
        ("WXLOGIN_WECHAT_TIMEOUT_MS", "600000"),
        ("WXLOGIN_HEADER_READ_TIMEOUT_SECS", NEVER),
        ("WXLOGIN_BODY_READ_TIMEOUT_SECS", NEVER),
        ("WXLOGIN_IDLE_TIMEOUT_SECS", NEVER),
        ("WXLOGIN_SHUTDOWN_TIMEOUT_SECS", NEVER),
    ];
    env.extend_from_slice(limits);
    let settings = Settings::load(env, Mode::Production).expect("settings");
    let app = Application::build(settings, Clock::System)
        .await
        .expect("app");
    let addr = app.local_addr().expect("addr").to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(app.run_until(async move {
        stopped.await.ok();
    }));
    Server { addr, stop, served }
}

/// Reads until the server closes the connection; returns what it sent before.
async fn closed_by_server(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(GUARD, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

/// Lets WeChat answer the held `logins`, each of which must then succeed: the busy
/// connections were not disturbed.
async fn served_once_released<const N: usize>(
    wechat: &HeldWeChat,
    logins: [tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>; N],
) {
    wechat.release(N);
    for login in logins {
        let reply = login.await.expect("join").expect("answered");
        assert_eq!(reply.status(), 200, "a held login was disturbed");
    }
}

/// A keep-alive connection that has had one `/healthz` answered.
async fn kept_alive(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wxlogin\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 1024];
    let read = stream.read(&mut answer).await.expect("read");
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
    stream
}

/// Whether the server still answers on `stream`.
async fn still_served(stream: &mut TcpStream) -> bool {
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wxlogin\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut answer = [0u8; 1024];
    matches!(
        tokio::time::timeout(GUARD, stream.read(&mut answer)).await,
        Ok(Ok(read)) if answer[..read].starts_with(b"HTTP/1.1 200")
    )
}

#[tokio::test]
async fn a_header_that_never_finishes_is_cut_off_at_the_header_deadline() {
    let wechat = held_wechat().await;
    let server = start(&wechat, &[("WXLOGIN_HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let mut slowloris = TcpStream::connect(&server.addr).await.expect("connect");
    slowloris
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: a")
        .await
        .expect("write");

    let answered = closed_by_server(&mut slowloris).await;

    assert_eq!(answered, "", "closed without an answer");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_deadline() {
    let wechat = held_wechat().await;
    let server = start(&wechat, &[("WXLOGIN_IDLE_TIMEOUT_SECS", "1")]).await;
    let mut idle = kept_alive(&server.addr).await;

    assert_eq!(closed_by_server(&mut idle).await, "");
}

#[tokio::test]
async fn a_body_trickled_past_its_deadline_is_answered_408_and_the_connection_closed() {
    let wechat = held_wechat().await;
    let server = start(&wechat, &[("WXLOGIN_BODY_READ_TIMEOUT_SECS", "1")]).await;
    let mut trickle = TcpStream::connect(&server.addr).await.expect("connect");
    trickle
        .write_all(
            b"POST /openid HTTP/1.1\r\nHost: wxlogin\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{\"co",
        )
        .await
        .expect("write");

    let answered = closed_by_server(&mut trickle).await;

    assert!(answered.starts_with("HTTP/1.1 408"), "{answered}");
    assert!(
        answered.contains(r#""error":"request_timeout""#),
        "{answered}"
    );
    assert!(answered.contains("connection: close"), "{answered}");
}

#[tokio::test]
async fn at_the_cap_the_longest_idle_connection_makes_room_for_a_new_one() {
    let wechat = held_wechat().await;
    let server = start(&wechat, &[("WXLOGIN_MAX_CONNECTIONS", "2")]).await;
    let mut oldest = kept_alive(&server.addr).await;
    let mut newer = kept_alive(&server.addr).await;

    let mut third = kept_alive(&server.addr).await;

    assert_eq!(
        closed_by_server(&mut oldest).await,
        "",
        "the longest idle made room"
    );
    assert!(still_served(&mut newer).await);
    assert!(still_served(&mut third).await);
}

#[tokio::test]
async fn at_the_cap_with_every_connection_busy_a_new_one_is_refused_until_one_is_free() {
    let mut wechat = held_wechat().await;
    let server = start(&wechat, &[("WXLOGIN_MAX_CONNECTIONS", "2")]).await;
    let base = format!("http://{}", server.addr);
    let first = wechat.hold_a_login(&base, "busy-1").await;
    let second = wechat.hold_a_login(&base, "busy-2").await;

    let mut refused = TcpStream::connect(&server.addr).await.expect("connect");
    let _ = refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wxlogin\r\n\r\n")
        .await;
    assert_eq!(
        closed_by_server(&mut refused).await,
        "",
        "refused, unanswered"
    );

    served_once_released(&wechat, [first, second]).await;
}

/// A connection to `addr` from the loopback address `from` (all of 127/8 is this host).
async fn connect_from(from: [u8; 4], addr: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from((from, 0)))
        .expect("bind a loopback address");
    socket
        .connect(addr.parse().expect("an address"))
        .await
        .expect("connect")
}

/// As [`kept_alive`], from the loopback address `from`.
async fn kept_alive_from(from: [u8; 4], addr: &str) -> TcpStream {
    let mut stream = connect_from(from, addr).await;
    assert!(still_served(&mut stream).await, "answered");
    stream
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_the_connections_and_others_still_get_in() {
    let mut wechat = held_wechat().await;
    let server = start(
        &wechat,
        &[
            ("WXLOGIN_MAX_CONNECTIONS", "10"),
            ("WXLOGIN_MAX_CONNECTIONS_PER_CLIENT", "2"),
        ],
    )
    .await;
    let base = format!("http://{}", server.addr);
    let first = wechat.hold_a_login(&base, "greedy-1").await;
    let second = wechat.hold_a_login(&base, "greedy-2").await;

    let mut refused = connect_from([127, 0, 0, 1], &server.addr).await;
    let _ = refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wxlogin\r\n\r\n")
        .await;
    assert_eq!(
        closed_by_server(&mut refused).await,
        "",
        "its share is busy: refused, unanswered"
    );

    let mut oldest = kept_alive_from([127, 0, 0, 2], &server.addr).await;
    let mut newer = kept_alive_from([127, 0, 0, 2], &server.addr).await;
    let mut third = kept_alive_from([127, 0, 0, 2], &server.addr).await;
    assert_eq!(
        closed_by_server(&mut oldest).await,
        "",
        "at its share, an address's own longest-idle connection makes room"
    );
    assert!(still_served(&mut newer).await);
    assert!(still_served(&mut third).await);

    served_once_released(&wechat, [first, second]).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_holds_at_most_its_share_of_requests() {
    let mut wechat = held_wechat().await;
    let server = start(
        &wechat,
        &[
            ("WXLOGIN_MAX_CONNECTIONS", "10"),
            ("WXLOGIN_MAX_CONNECTIONS_PER_CLIENT", "2"),
            ("WXLOGIN_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let base = format!("http://{}", server.addr);
    let greedy = Some("203.0.113.9");
    let first = wechat.hold_a_forwarded_login(&base, "via-1", greedy).await;
    let second = wechat.hold_a_forwarded_login(&base, "via-2", greedy).await;

    let http = reqwest::Client::new();
    let over = http
        .get(format!("{base}/healthz"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("answered");
    assert_eq!(over.status(), 429, "the client's share is in progress");
    assert!(over.headers().contains_key("retry-after"));
    let body: serde_json::Value = over.json().await.expect("JSON");
    assert_eq!(body["error"], "too_many_in_progress", "{body}");

    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let other = http
            .get(format!("{base}/healthz"))
            .header("x-forwarded-for", client)
            .send()
            .await
            .expect("answered");
        assert_eq!(
            other.status(),
            200,
            "the proxy's connections are not one client's"
        );
    }

    served_once_released(&wechat, [first, second]).await;
}

#[tokio::test]
async fn at_shutdown_an_unfinished_header_does_not_hold_the_drain() {
    let wechat = held_wechat().await;
    let server = start(&wechat, &[]).await;
    let mut unfinished = TcpStream::connect(&server.addr).await.expect("connect");
    unfinished
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Half: ")
        .await
        .expect("write");
    let mut idle = kept_alive(&server.addr).await;

    server.stop.send(()).expect("running");

    // The header, idle and drain limits are all ten minutes: only closing connections
    // with no request in progress at once lets the server exit within the guard.
    let exited = tokio::time::timeout(GUARD, server.served)
        .await
        .expect("the server exits without waiting for the unfinished header");
    exited.expect("join").expect("a clean exit");
    assert_eq!(closed_by_server(&mut unfinished).await, "");
    assert_eq!(closed_by_server(&mut idle).await, "");
}

#[tokio::test]
async fn a_header_over_16_kib_is_refused_with_431() {
    let wechat = held_wechat().await;
    let server = start(&wechat, &[]).await;
    let mut greedy = TcpStream::connect(&server.addr).await.expect("connect");
    let header = format!(
        "GET /healthz HTTP/1.1\r\nHost: wxlogin\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let _ = greedy.write_all(header.as_bytes()).await;

    let answered = closed_by_server(&mut greedy).await;

    assert!(answered.starts_with("HTTP/1.1 431"), "{answered}");
}

/// An HTTP/2 client that opens its window at 0 and never widens it gets its answers'
/// headers but never their bodies: its streams stay open while nothing moves. Such
/// connections must not hold the connection cap for ever: with nothing sent for the idle
/// deadline, the connection is closed, and others are served again.
#[tokio::test]
async fn http2_streams_stalled_on_a_zero_window_do_not_hold_the_connection_cap() {
    let wechat = held_wechat().await;
    let server = start(
        &wechat,
        &[
            ("WXLOGIN_MAX_CONNECTIONS", "1"),
            ("WXLOGIN_IDLE_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let tcp = TcpStream::connect(&server.addr).await.expect("connect");
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, axum::body::Bytes>(tcp)
        .await
        .expect("an HTTP/2 handshake");
    let stalled = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let mut answers = Vec::new();
    for _ in 0..4 {
        let request = axum::http::Request::get(format!("http://{}/openapi.json", server.addr))
            .body(())
            .expect("a request");
        let (answer, _) = client.send_request(request, true).expect("sent");
        answers.push(answer);
    }
    // Held, never read: dropping one would reset its stream.
    let mut held = Vec::new();
    for answer in answers {
        let answer = tokio::time::timeout(GUARD, answer).await;
        let Ok(Ok(answer)) = answer else {
            panic!("the headers arrive: {answer:?}");
        };
        held.push(answer);
    }

    let closed = tokio::time::timeout(GUARD, stalled).await;
    assert!(closed.is_ok(), "the server closes the stalled connection");
    let mut next = kept_alive(&server.addr).await;
    assert!(still_served(&mut next).await);
    drop((client, held));
}
