//! The composition root: `application` builds the app from its settings (`backends`
//! picks the concrete store and access_token backends) and binds it; `process` is what
//! `main` calls: settings and logs around it, with `limits` (open files, connections) and
//! `signals`.

mod application;
mod backends;
mod banner;
mod limits;
mod process;
mod signals;

use std::net::SocketAddr;

use crate::redis_conn::StoreError;
use crate::server::TlsError;
use crate::session::BlocksFileError;

pub use application::Application;
pub use process::{serve, serve_emulator};
pub use signals::shutdown_signal;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the WeChat emulator: {0}")]
    Emulator(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("cannot set up the Redis client: {0}")]
    Redis(#[from] StoreError),
    #[error(transparent)]
    Blocks(#[from] BlocksFileError),
    #[error("cannot sign JWTs: {0}")]
    Jwt(#[from] crate::jwt::KeyError),
    #[error("cannot serve HTTPS: {0}")]
    Tls(#[from] TlsError),
}
