//! One integration-test binary: every test spawns wxlogin on a random port against its own
//! wiremock WeChat (or the built-in emulator), and talks to it over HTTP.

mod admin;
mod ambiguous;
mod apps;
mod architecture;
mod bad_input;
mod caching;
mod client_library;
mod coalescing;
mod emulator;
mod emulator_open_data;
mod forward_auth;
mod healthcheck;
mod held_wechat;
mod helpers;
mod https;
mod load_shedding;
mod login;
mod metrics;
mod nginx;
mod open_data;
mod openapi;
mod rate_limit;
mod redis_cluster;
mod redis_failover;
mod redis_server;
mod redis_store;
mod secrets;
mod server_apis;
mod session;
mod shutdown;
mod slow_clients;
mod startup;
mod store_outage;
mod tools;
mod upstream_errors;
