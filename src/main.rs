use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wxlogin::config::{DEV_APPID, Mode};
use wxlogin::domain::Credentials;

/// A login service for WeChat Mini Programs: wx.login() code in, opaque session token out.
///
/// Configured by config/default.toml and WXLOGIN_* environment variables (see the README).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Development mode: run against the built-in WeChat emulator, with no credentials.
    /// Never use this in production.
    #[arg(long)]
    dev: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 if the wxlogin at WXLOGIN_LISTEN answers GET /healthz with 200, else 1. For a
    /// container HEALTHCHECK in an image without curl.
    Healthcheck,
    /// Serve only the WeChat emulator: a stand-in for api.weixin.qq.com (code2Session,
    /// stable_token, phone numbers, checkSessionKey) for local set-ups and benchmarks.
    Emulator {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: SocketAddr,
        /// The appid it accepts.
        #[arg(long, default_value = DEV_APPID)]
        appid: String,
        /// The app secret it accepts. Not a real secret: the emulator serves no real user.
        #[arg(long, default_value = "emulator-secret")]
        secret: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck) => wxlogin::healthcheck::run().await,
        Some(Command::Emulator {
            listen,
            appid,
            secret,
        }) => {
            let credentials = Credentials {
                appid,
                secret: secret.into(),
            };
            wxlogin::startup::serve_emulator(listen, credentials).await
        }
        None if cli.dev => wxlogin::startup::serve(Mode::Development).await,
        None => wxlogin::startup::serve(Mode::Production).await,
    }
}
