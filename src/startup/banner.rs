//! What wxlogin tells people when it starts: the address, and in development mode a
//! warning and a login to copy.

use std::io::Write as _;

use super::application::Application;
use crate::domain::{AppName, Credentials};
use crate::wechat::emulator::MAGIC_CODES;

/// The start-up banner. In development mode it says so loudly, and shows a login to copy.
pub(super) fn announce(app: &Application) {
    let addr = match app.local_addr() {
        Ok(addr) => addr.to_string(),
        Err(_) => "?".to_owned(),
    };
    let scheme = if app.is_https() { "https" } else { "http" };
    if let Some(admin) = app.admin_addr() {
        tracing::info!(%admin, "admin API and /metrics listening (on this address only)");
    }
    match app.emulator_url() {
        None => tracing::info!(%addr, scheme, "wxlogin listening"),
        Some(emulator) => {
            tracing::warn!(%addr, emulator, "DEVELOPMENT MODE: WeChat is the built-in emulator");
            // A code is good for one app only: each line has its own.
            let logins: String = app
                .app_routes()
                .zip(1..)
                .map(|((prefix, name, appid), n)| {
                    format!(
                        "  curl -s -X POST {scheme}://{addr}{prefix}/openid -H 'Content-Type: application/json' -d '{{\"code\":\"alice@{n}\"}}'    # {name}, {appid}\n"
                    )
                })
                .collect();
            print_for_people(&format!(
                "\nwxlogin {version} is running in DEVELOPMENT MODE on {scheme}://{addr}\n\
                 WeChat is the built-in emulator at {emulator}: no real user can log in. Never run --dev in production.\n\n\
                 Log in (each code works once; `alice@1`, `alice@2`… are all the user alice):\n\n\
                 {logins}\n\
                 Then: curl -s {scheme}://{addr}/session -H 'Authorization: Bearer <token>'\n\
                 Magic codes that fail on purpose: {magic}\n\
                 Sealed user info for /wechat/decrypt: curl -s '{emulator}/dev/user_info?openid=<openid>'\n\n",
                version = env!("CARGO_PKG_VERSION"),
                magic = MAGIC_CODES
                    .iter()
                    .map(|(code, _)| *code)
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
    }
}

/// The banner of `wxlogin emulator`.
pub(super) fn announce_emulator(url: &str, apps: &[(AppName, Credentials)]) {
    let settings: String = apps
        .iter()
        .map(|(name, credentials)| {
            let name = name.as_ref().to_ascii_uppercase();
            format!(
                " WXLOGIN_APP_{name}_APPID={} WXLOGIN_APP_{name}_SECRET=<its secret>",
                credentials.appid
            )
        })
        .collect();
    print_for_people(&format!(
        "WeChat emulator listening on {url}\n\
         Point wxlogin at it: WXLOGIN_WECHAT_BASE_URL={url}{settings}\n"
    ));
}

/// Writes `text` to stdout in one piece, if stdout will take it. `println!` writes a
/// piece at a time and panics when stdout is gone (a closed pipe, say, once whoever read
/// the banner has read it), and the server would die with it.
fn print_for_people(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
