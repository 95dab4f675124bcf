//! wxlogin: a login service for WeChat Mini Programs. A `wx.login()` code goes in, an
//! opaque session token comes out; WeChat's `session_key` and the app secret stay here.

pub mod apps;
pub mod clock;
pub mod config;
pub mod domain;
pub mod healthcheck;
pub mod http;
pub mod jwt;
pub mod login;
pub mod redis_conn;
pub mod server;
pub mod session;
pub mod startup;
pub mod tasks;
pub mod telemetry;
pub mod wechat;
