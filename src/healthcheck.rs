//! `wxlogin healthcheck`: probes a running wxlogin's `/healthz`, for container runtimes
//! whose image has no curl (distroless). Exit status 0 when healthy, 1 otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use crate::telemetry::error_chain;

/// Long enough for a busy server, short enough to fail well within Docker's default
/// HEALTHCHECK timeout of 30 s.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `wxlogin healthcheck`: finds the server where the settings say it listens, and probes it.
pub async fn run() -> ExitCode {
    let listen = match crate::config::listen_addr(std::env::vars_os()) {
        Ok(listen) => listen,
        Err(err) => {
            eprintln!("wxlogin healthcheck: {err}");
            return ExitCode::FAILURE;
        }
    };
    match probe(listen).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wxlogin healthcheck: unhealthy: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Asks `GET /healthz` of the server listening on `listen`. A server bound to all
/// interfaces (`0.0.0.0`, `::`) is asked on loopback.
pub async fn probe(listen: SocketAddr) -> Result<(), String> {
    let target = SocketAddr::new(reachable(listen.ip()), listen.port());
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let url = format!("http://{target}/healthz");
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", error_chain(&e.without_url())))?;
    match response.status() {
        reqwest::StatusCode::OK => Ok(()),
        status => Err(format!("{url} answered {status}")),
    }
}

fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}
