//! One integration-test binary: every test spawns wxlogin on a random port against its own
//! wiremock WeChat (or the built-in emulator), and talks to it over HTTP.

mod bad_input;
mod coalescing;
mod emulator;
mod helpers;
mod login;
mod secrets;
mod session;
mod shutdown;
mod startup;
mod upstream_errors;
