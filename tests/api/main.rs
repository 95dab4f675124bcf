//! One integration-test binary: every test spawns wxlogin on a random port against its own
//! wiremock WeChat (or the built-in emulator), and talks to it over HTTP.

mod bad_input;
mod coalescing;
mod emulator;
mod emulator_open_data;
mod helpers;
mod login;
mod open_data;
mod redis_server;
mod redis_store;
mod secrets;
mod server_apis;
mod session;
mod shutdown;
mod startup;
mod upstream_errors;
