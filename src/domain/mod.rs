//! The types that mean something on their own, parsed once at the edge: past this module
//! a `JsCode` is well-formed, an `OpenId` is safe to put in a header, and a `SessionKey`
//! is 16 bytes. Nothing here imports any other module of wxlogin.

mod app;
mod code;
mod ids;
mod kind;
mod session_key;

use secrecy::SecretString;

pub use app::{AppName, DEFAULT_APP};
pub use code::{InvalidCode, JsCode, MAX_JS_CODE_LEN, PhoneCode};
pub use ids::{OpenId, UnionId};
pub use kind::AppKind;
pub use session_key::SessionKey;

/// What WeChat vouches for when it takes a login code: the user, and for a mini-program
/// (`code2Session`) the key of their session.
#[derive(Debug, Clone)]
pub struct WxSession {
    pub openid: OpenId,
    /// Only a mini-program's login has one; the other kinds' logins never do.
    pub session_key: Option<SessionKey>,
    /// Only present when the app is bound to an Open Platform account (and, for an
    /// official account, only with the `snsapi_userinfo` scope).
    pub unionid: Option<UnionId>,
    /// The nickname and avatar, when the login's scope let WeChat tell them.
    pub profile: Option<Profile>,
}

/// What `sns/userinfo` tells of a user, for the login answer: never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub nickname: String,
    /// The avatar's URL (`headimgurl`); empty when the user has none.
    pub avatar_url: String,
}

/// An app's appid and app secret. `Debug` shows the appid only.
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
    pub kind: AppKind,
    /// Where the web-login helper may send a browser back to, exactly as written; empty
    /// when the helper is off for the app.
    pub redirect_uris: Vec<String>,
    /// The `aud` of the app's JWTs: its appid unless configured.
    pub audience: String,
    pub credentials: Credentials,
}
