//! The refusals of a malformed path or body on the admin and OAuth routes, written once:
//! the handlers answer them and the OpenAPI response sets list them.

use super::ApiError;
use crate::domain::{AppKind, AppName};

impl ApiError {
    /// A user-data route, for a session of an app that is no mini-program.
    pub fn needs_mini_program(app: &AppName, kind: AppKind) -> Self {
        Self::WrongAppKind {
            needs: "a mini-program's session",
            app: app.clone(),
            kind,
        }
    }

    /// The web-login helper, for an app whose users WeChat sends to no consent page.
    pub fn needs_consent_page(app: &AppName, kind: AppKind) -> Self {
        Self::WrongAppKind {
            needs: "an official account or a website, whose users log in on WeChat's consent page",
            app: app.clone(),
            kind,
        }
    }

    pub const INVALID_REDIRECT_URI: Self = Self::InvalidInput {
        kind: "invalid_redirect_uri",
        message: "redirect_uri is not one of the app's WXLOGIN_APP_<NAME>_REDIRECT_URIS, exactly as written there.",
    };
    pub const INVALID_SCOPE: Self = Self::InvalidInput {
        kind: "invalid_scope",
        message: "scope is snsapi_base (the default) or snsapi_userinfo for an official account, and snsapi_login for a website.",
    };
    pub const INVALID_STATE: Self = Self::InvalidInput {
        kind: "invalid_state",
        message: "This login link is not valid in this browser: it expired, was used already, or was started in another browser. Start the login again.",
    };

    /// The access_token routes, for an app that WeChat gives none.
    pub fn needs_access_token(app: &AppName, kind: AppKind) -> Self {
        Self::WrongAppKind {
            needs: "a mini-program or an official account, which WeChat gives an access_token",
            app: app.clone(),
            kind,
        }
    }

    pub const INVALID_OPENID: Self = Self::InvalidInput {
        kind: "invalid_openid",
        message: "The openid is not one WeChat issues: 1 to 128 characters of A-Z, a-z, 0-9, _ and -.",
    };
    pub const INVALID_UNIONID: Self = Self::InvalidInput {
        kind: "invalid_unionid",
        message: "The unionid is not one WeChat issues: 1 to 128 characters of A-Z, a-z, 0-9, _ and -.",
    };
    pub const UNTIL_UNREADABLE: Self = Self::InvalidInput {
        kind: "invalid_until",
        message: "until is neither Unix seconds nor an RFC 3339 time such as 2026-12-09T00:00:00+08:00.",
    };
    pub const UNTIL_PAST: Self = Self::InvalidInput {
        kind: "invalid_until",
        message: "until is in the past: a block must end in the future.",
    };
    pub const REASON_TOO_LONG: Self = Self::InvalidInput {
        kind: "reason_too_long",
        message: "reason is longer than 200 characters.",
    };
    pub const UNSUPPORTED_GRANT_TYPE: Self = Self::InvalidInput {
        kind: "unsupported_grant_type",
        message: "grant_type must be urn:ietf:params:oauth:grant-type:token-exchange.",
    };
    pub const UNSUPPORTED_SUBJECT_TOKEN_TYPE: Self = Self::InvalidInput {
        kind: "invalid_request",
        message: "subject_token_type must be urn:ietf:params:oauth:token-type:access_token.",
    };
    pub const NOT_A_LIVE_SESSION: Self = Self::InvalidInput {
        kind: "invalid_request",
        message: "subject_token is not a live session: it is missing, unknown, expired or revoked. Log in again.",
    };
    pub const NO_TOKEN_TO_INTROSPECT: Self = Self::InvalidInput {
        kind: "invalid_request",
        message: "token is missing: send the token to introspect.",
    };
}
