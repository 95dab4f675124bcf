//! The types that mean something on their own, parsed once at the edge: past this module
//! a `JsCode` is well-formed, an `OpenId` is safe to put in a header, and a `SessionKey`
//! is 16 bytes. Nothing here imports any other module of wxlogin.

mod app;
mod code;
mod ids;
mod session_key;

use secrecy::SecretString;

pub use app::{AppName, DEFAULT_APP};
pub use code::{InvalidCode, JsCode, MAX_JS_CODE_LEN, PhoneCode};
pub use ids::{OpenId, UnionId};
pub use session_key::SessionKey;

/// What WeChat's `code2Session` vouches for: the user, and the key of their session.
#[derive(Debug, Clone)]
pub struct WxSession {
    pub openid: OpenId,
    pub session_key: SessionKey,
    /// Only present when the mini-program is bound to an Open Platform account.
    pub unionid: Option<UnionId>,
}

/// A mini-program's appid and app secret. `Debug` shows the appid only.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub appid: String,
    pub secret: SecretString,
}

/// One app as the configuration names it: its name, and its credentials. (`apps::App` is
/// the app at work: its WeChat client and access_token.)
#[derive(Debug, Clone)]
pub struct ConfiguredApp {
    pub name: AppName,
    /// The `aud` of the app's JWTs: its appid unless configured.
    pub audience: String,
    pub credentials: Credentials,
}
