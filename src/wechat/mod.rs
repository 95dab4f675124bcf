//! WeChat's server API as wxlogin speaks it: the client, what it answers, and an emulator
//! that stands in for `api.weixin.qq.com` in development and tests.

mod client;
pub mod emulator;
mod error;
pub mod open_data;
mod types;

pub use client::WeChatClient;
pub use error::{ErrCode, WeChatError};
pub use types::{InvalidJsCode, JsCode, OpenId, SessionKey, UnionId, WxSession};
