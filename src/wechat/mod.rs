//! WeChat's server API as wxlogin speaks it: the client, what it answers, and an emulator
//! that stands in for `api.weixin.qq.com` in development and tests.

pub mod access_token;
mod client;
pub mod emulator;
mod error;
pub mod open_data;
mod server_api;
mod shared_access_token;
mod types;

pub use access_token::{AccessToken, AccessTokens};
pub use client::WeChatClient;
pub use error::{ErrCode, WeChatError};
pub use server_api::PhoneNumber;
pub use types::{InvalidCode, JsCode, OpenId, PhoneCode, SessionKey, UnionId, WxSession};
