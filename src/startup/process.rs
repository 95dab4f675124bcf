//! The process around the application: settings from the environment, logs, the
//! open-file limit and what it allows of connections, signals, and the emulator run alone.

use std::net::SocketAddr;
use std::process::ExitCode;

use super::Application;
use super::banner;
use crate::clock::Clock;
use crate::config::{LogFormat, Mode, Settings};
use crate::domain::{AppName, Credentials};
use crate::telemetry;
use crate::wechat::emulator::Emulator;

/// Runs wxlogin as the process: settings from the environment (and `WXLOGIN_CONFIG`), logs
/// to stderr, WeChat the real one or, in development mode, the built-in emulator. Returns
/// when it has stopped.
pub async fn serve(mode: Mode) -> ExitCode {
    let settings = match Settings::load(std::env::vars_os(), mode) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("wxlogin: {err}");
            return ExitCode::FAILURE;
        }
    };
    let flush_logs = telemetry::init(settings.log_format);
    super::limits::raise_open_file_limit();
    for setting in &settings.unknown {
        tracing::warn!(
            setting,
            "ignoring a setting wxlogin does not know; is it misspelt?"
        );
    }
    for why in &settings.ineffective {
        tracing::warn!(why, "a setting that does nothing here");
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
    banner::announce(&app);
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the server failed");
            ExitCode::FAILURE
        }
    }
}

/// Runs only the WeChat emulator on `listen`, accepting `credentials`, until SIGTERM or
/// Ctrl-C: a stand-in for `api.weixin.qq.com` for front-end set-ups and benchmarks.
pub async fn serve_emulator(listen: SocketAddr, apps: Vec<(AppName, Credentials)>) -> ExitCode {
    let _flush_logs = telemetry::init(LogFormat::Pretty);
    let credentials = apps.iter().map(|(_, c)| c.clone()).collect();
    let emulator = match Emulator::start(listen, credentials).await {
        Ok(emulator) => emulator,
        Err(err) => {
            eprintln!("wxlogin emulator: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    banner::announce_emulator(emulator.base_url(), &apps);
    super::signals::shutdown_signal().await;
    ExitCode::SUCCESS
}
