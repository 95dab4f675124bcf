//! WeChat's server API as wxlogin speaks it: the client, what it answers, and an emulator
//! that stands in for `api.weixin.qq.com` in development and tests.

pub mod access_token;
mod client;
pub mod emulator;
mod error;
pub mod open_data;
mod server_api;

pub use access_token::{AccessToken, AccessTokens};
pub use client::WeChatClient;
pub use error::{ErrCode, WeChatError};
pub use server_api::PhoneNumber;
