//! The mini-program client library (`clients/miniprogram`), tested end to end by its own
//! node test suite against this build's `wxlogin --dev`: run from here, so that the one
//! test command runs it too. Without node and npm it is skipped with a note, except in CI.

use std::path::Path;
use std::process::Command;

use crate::tools;

#[test]
fn the_mini_program_client_library_passes_its_tests_against_this_wxlogin() {
    let install = "apt-get install -y nodejs npm";
    if !tools::available("node", &["--version"], install)
        || !tools::available("npm", &["--version"], install)
    {
        return;
    }
    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/miniprogram");
    if !package.join("node_modules").is_dir() {
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&package)
            .output()
            .expect("npm runs");
        if !installed.status.success() {
            let why = String::from_utf8_lossy(&installed.stderr);
            assert!(std::env::var_os("CI").is_none(), "npm ci failed: {why}");
            eprintln!("skipped: npm ci failed in clients/miniprogram ({why})");
            return;
        }
    }

    let tested = Command::new("npm")
        .arg("test")
        .current_dir(&package)
        .env("WXLOGIN_BIN", env!("CARGO_BIN_EXE_wxlogin"))
        .output()
        .expect("npm runs");

    assert!(
        tested.status.success(),
        "{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
}
