//! The programs some tests run beside wxlogin (redis-server, nginx, promtool,
//! openapi-spec-validator). In CI (`CI=true`) a missing one fails the test that needs it;
//! elsewhere that test is skipped with a note saying what to install.

use std::process::{Command, Stdio};

/// Whether `program args…` runs and exits 0. `install` says how to get the program.
pub fn available(program: &str, args: &[&str], install: &str) -> bool {
    let runs = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !runs {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{program} {}` fails, and CI needs the tests that use it: {install}",
            args.join(" ")
        );
        eprintln!("skipped: `{program} {}` fails ({install})", args.join(" "));
    }
    runs
}

/// A loopback port that was free a moment ago, for a server that must be told its port.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
