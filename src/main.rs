use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wxlogin::config::{DEV_APPID, Mode};
use wxlogin::domain::{AppName, Credentials};

/// mimalloc serves the many small allocations of a request in fewer instructions than
/// glibc's malloc, and without a header per allocation (BENCHMARKS.md has the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A login service for WeChat Mini Programs: wx.login() code in, opaque session token out.
///
/// Configured by config/default.toml and WXLOGIN_* environment variables (see docs/configuration.md).
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
        /// An app it serves, as NAME=APPID:SECRET; repeat it for several. Without one, it
        /// serves `default=wx0000000000000dev:emulator-secret`. Not real secrets: the
        /// emulator serves no real user.
        #[arg(long = "app", value_name = "NAME=APPID:SECRET", value_parser = app_spec)]
        apps: Vec<(AppName, Credentials)>,
    },
}

/// `shop=wx123:secret` → the app `shop`, with appid `wx123` and secret `secret`.
fn app_spec(spec: &str) -> Result<(AppName, Credentials), String> {
    let (name, rest) = spec.split_once('=').ok_or("expected NAME=APPID:SECRET")?;
    let (appid, secret) = rest.split_once(':').ok_or("expected NAME=APPID:SECRET")?;
    let name = AppName::parse(name).ok_or("an app's name is 1 to 32 of [a-z0-9_]")?;
    if appid.is_empty() || secret.is_empty() {
        return Err("expected NAME=APPID:SECRET, with an appid and a secret".to_owned());
    }
    let credentials = Credentials {
        appid: appid.to_owned(),
        secret: secret.to_owned().into(),
    };
    Ok((name, credentials))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck) => wxlogin::healthcheck::run().await,
        Some(Command::Emulator { listen, mut apps }) => {
            if apps.is_empty() {
                apps.push((
                    AppName::default_app(),
                    Credentials {
                        appid: DEV_APPID.to_owned(),
                        secret: "emulator-secret".to_owned().into(),
                    },
                ));
            }
            wxlogin::startup::serve_emulator(listen, apps).await
        }
        None if cli.dev => wxlogin::startup::serve(Mode::Development).await,
        None => wxlogin::startup::serve(Mode::Production).await,
    }
}
