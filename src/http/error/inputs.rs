//! The admin API's refusals of a malformed path or body, written once: the handlers
//! answer them and the OpenAPI response sets list them.

use super::ApiError;

impl ApiError {
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
}
