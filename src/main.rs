use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wxlogin::clock::Clock;
use wxlogin::config::{self, Mode, Settings};
use wxlogin::startup::Application;
use wxlogin::telemetry;
use wxlogin::wechat::emulator::Emulator;

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
        listen: std::net::SocketAddr,
        /// The appid it accepts.
        #[arg(long, default_value = wxlogin::wechat::emulator::EMULATOR_APPID)]
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
        Some(Command::Healthcheck) => return healthcheck().await,
        Some(Command::Emulator {
            listen,
            appid,
            secret,
        }) => return emulator(listen, appid, secret).await,
        None => {}
    }
    let mode = if cli.dev {
        Mode::Development
    } else {
        Mode::Production
    };
    let settings = match Settings::load(std::env::vars_os(), mode) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("wxlogin: {err}");
            return ExitCode::FAILURE;
        }
    };
    let flush_logs = telemetry::init(settings.log_format);
    for setting in &settings.unknown {
        tracing::warn!(
            setting,
            "ignoring a setting wxlogin does not know; is it misspelt?"
        );
    }
    let app = match mode {
        Mode::Production => Application::build(settings, Clock::System).await,
        Mode::Development => Application::build_with_emulator(settings, Clock::System).await,
    };
    let app = match app {
        Ok(app) => app,
        Err(err) => {
            // The lines logged so far (an unknown setting, say) go out first, so that the
            // error reads last, where people look.
            drop(flush_logs);
            eprintln!("wxlogin: {err}");
            return ExitCode::FAILURE;
        }
    };
    announce(&app);
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the server failed");
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck() -> ExitCode {
    let listen = match config::listen_addr(std::env::vars_os()) {
        Ok(listen) => listen,
        Err(err) => {
            eprintln!("wxlogin healthcheck: {err}");
            return ExitCode::FAILURE;
        }
    };
    match wxlogin::healthcheck::probe(listen).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wxlogin healthcheck: unhealthy: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn emulator(listen: std::net::SocketAddr, appid: String, secret: String) -> ExitCode {
    let _flush_logs = telemetry::init(wxlogin::config::LogFormat::Pretty);
    let credentials = wxlogin::config::Credentials {
        appid,
        secret: secret.into(),
    };
    let appid = credentials.appid.clone();
    let emulator = match Emulator::start(listen, credentials).await {
        Ok(emulator) => emulator,
        Err(err) => {
            eprintln!("wxlogin emulator: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    print_for_people(&format!(
        "WeChat emulator listening on {url}\n\
         Point wxlogin at it: WXLOGIN_WECHAT_BASE_URL={url} WXLOGIN_APPID={appid} WXLOGIN_SECRET=<the --secret>\n",
        url = emulator.base_url()
    ));
    wxlogin::startup::shutdown_signal().await;
    ExitCode::SUCCESS
}

/// The start-up banner. In development mode it says so loudly, and shows a login to copy.
fn announce(app: &Application) {
    let addr = match app.local_addr() {
        Ok(addr) => addr.to_string(),
        Err(_) => "?".to_owned(),
    };
    match app.emulator_url() {
        None => tracing::info!(%addr, "wxlogin listening"),
        Some(emulator) => {
            tracing::warn!(%addr, emulator, "DEVELOPMENT MODE: WeChat is the built-in emulator");
            print_for_people(&format!(
                "\nwxlogin {version} is running in DEVELOPMENT MODE on http://{addr}\n\
                 WeChat is the built-in emulator at {emulator}: no real user can log in. Never run --dev in production.\n\n\
                 Log in (each code works once; `alice@1`, `alice@2`… are all the user alice):\n\n  \
                 curl -s -X POST http://{addr}/openid -H 'Content-Type: application/json' -d '{{\"code\":\"alice@1\"}}'\n\n\
                 Then: curl -s http://{addr}/session -H 'Authorization: Bearer <token>'\n\
                 Magic codes that fail on purpose: {magic}\n\
                 Sealed user info for /wechat/decrypt: curl -s '{emulator}/dev/user_info?openid=<openid>'\n\n",
                version = env!("CARGO_PKG_VERSION"),
                magic = wxlogin::wechat::emulator::MAGIC_CODES
                    .iter()
                    .map(|(code, _)| *code)
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
    }
}

/// Writes `text` to stdout in one piece, if stdout will take it. `println!` writes a
/// piece at a time and panics when stdout is gone (a closed pipe, say, once whoever read
/// the banner has read it), and the server would die with it.
fn print_for_people(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
