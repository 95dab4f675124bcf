//! Every way a request can fail, and the one place that says how each is answered: its
//! status, kind, message and headers ([`ApiError::answer`]), and what the log line adds
//! ([`ErrorReport`]). The response (in RFC 6749's shape on the OAuth routes: `oauth`), the
//! request log line, the login metrics and the OpenAPI response sets ([`responses`]) all
//! read from there.

mod conversions;
mod inputs;
mod oauth;
pub mod responses;

pub use oauth::OAuthErrorBody;

use std::borrow::Cow;
use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::{AppKind, AppName, InvalidCode};
use crate::redis_conn::StoreError;
use crate::telemetry::error_chain;
use crate::wechat::open_data::DecryptError;
use crate::wechat::{ErrCode, WeChatError};

/// Seconds a client should wait after WeChat's per-user limit (counted per minute).
const RATE_LIMITED_RETRY_AFTER: u64 = 60;
/// Seconds a client should wait after WeChat said it is busy, even on our retry.
const BUSY_RETRY_AFTER: u64 = 2;
/// Seconds a client should wait when the session store is unreachable.
const STORE_RETRY_AFTER: u64 = 2;
/// Seconds a client should wait when no access_token could be had.
const ACCESS_TOKEN_RETRY_AFTER: u64 = 5;
/// Seconds a client should wait when its request was shed: load passes in moments.
const OVERLOADED_RETRY_AFTER: u64 = 1;

/// `WWW-Authenticate` without an error code (no token was sent: RFC 6750 §3.1).
const BEARER_CHALLENGE: &str = r#"Bearer realm="wxlogin""#;
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="wxlogin", error="invalid_token""#;
const ADMIN_CHALLENGE: &str = r#"Bearer realm="wxlogin admin""#;
const BACKEND_CHALLENGE: &str = r#"Bearer realm="wxlogin backend""#;

#[derive(Debug)]
pub enum ApiError {
    /// 400 `missing_code` or `malformed_code`.
    BadCode(InvalidCode),
    /// 400 `malformed_json`: the body is not JSON.
    MalformedJson(String),
    /// 400 `invalid_body`: JSON or a form of the wrong shape, or a bad query string.
    /// `expected` describes the right shape to the client; `detail` is the parser's.
    InvalidBody {
        detail: String,
        expected: &'static str,
    },
    /// 400 `ambiguous_request`: the request could be read two ways (two `Authorization`
    /// headers, or an HTTP/1.1 request without exactly one `Host`); the message says how.
    Ambiguous(&'static str),
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 408 `request_timeout`: the body did not arrive within its deadline.
    BodyTimeout,
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType,
    /// 404 `not_found`.
    NotFound,
    /// 404 `unknown_app`: the route names an app this deployment does not serve, or has no
    /// `/apps/{app}/` prefix while there are several apps and none is `default`.
    UnknownApp { named: bool },
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 401 `invalid_token`, without an error code in `WWW-Authenticate` (RFC 6750 §3.1).
    MissingToken,
    /// 401 `invalid_token`: unknown, expired, revoked or malformed.
    InvalidToken,
    /// 400 `invalid_signature`: rawData and signature do not match the session_key.
    InvalidSignature,
    /// 400 `malformed_base64`, `invalid_length`, `decryption_failed` or `watermark_mismatch`.
    Decrypt(DecryptError),
    /// WeChat said no, or could not be asked: 401, 403, 409, 429, 500, 502, 503 or 504.
    /// Shared: overlapping logins with one code all answer the one WeChat call's error.
    WeChat(Arc<WeChatError>),
    /// 503 `store_unavailable`: the session store (Redis) failed or did not answer in time.
    /// Nothing was spent: the same request may be sent again after `Retry-After`.
    StoreUnavailable(StoreError),
    /// 503 `store_unavailable`, without `Retry-After`: WeChat accepted the login code, then
    /// the session could not be stored. The code is spent; the client needs a new one.
    CodeSpent(StoreError),
    /// 503 `store_unavailable` from `/readyz`, saying why.
    NotReady(StoreError),
    /// 500 `misconfigured`, without `Retry-After`: the store holds a session_key sealed under
    /// a store key this process does not have. Sending the request again never heals it; a
    /// new login reseals the user's session_key, and `/readyz` tells the operators.
    StoreKeyMismatch(StoreError),
    /// 409 `blocks_not_durable`: the memory store has no `WXLOGIN_BLOCKS_FILE` to keep a
    /// block across a restart, and refuses it rather than forget it.
    BlocksNotDurable,
    /// 500 `blocks_not_saved`: a block or its lifting holds in this process, but could not
    /// be written to `WXLOGIN_BLOCKS_FILE`, so a restart would undo it.
    BlocksNotSaved(StoreError),
    /// 429 `too_many_in_progress`: behind a trusted proxy, the forwarded client has its
    /// share of requests in progress already (`WXLOGIN_MAX_CONNECTIONS_PER_CLIENT`).
    TooManyInProgress,
    /// 429 `rate_limited`: this client IP has spent its allowance; it may retry after the
    /// given number of seconds.
    RateLimited { retry_after_secs: u64 },
    /// 403 `user_blocked`: an operator blocked the user's logins; the message is the
    /// configured public one.
    UserBlocked(Arc<str>),
    /// 401 `invalid_admin_token`: an `/admin` request without the admin token.
    AdminUnauthorized,
    /// 401 `invalid_backend_token`: a backend route without a backend's token.
    BackendUnauthorized,
    /// A backend asked for the access_token and none could be had: 503, with
    /// `Retry-After`, whatever WeChat said (its errcode is in the log): `force_refresh_limited`
    /// when WeChat's limit on forced refreshes is what stands in the way, `store_unavailable`
    /// when Redis is, else `access_token_unavailable`.
    NoTokenForBackend(Arc<WeChatError>),
    /// 400, of the given kind: an admin request's path or body names something invalid.
    InvalidInput {
        kind: &'static str,
        message: &'static str,
    },
    /// 400 `wrong_app_kind`: the route does what the app's kind cannot (user data of an
    /// official account's session, a web login for a mini-program).
    WrongAppKind {
        /// What the route needs, as in "needs a mini-program".
        needs: &'static str,
        app: AppName,
        kind: AppKind,
    },
    /// 500 `internal_error`: a bug (a caught panic).
    Internal,
}

/// How one error is answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    /// A stable snake_case kind for code to match on.
    pub kind: &'static str,
    /// For people: says what to do, and nothing internal.
    pub message: Cow<'static, str>,
    /// Seconds, in `Retry-After`.
    pub retry_after: Option<u64>,
    pub www_authenticate: Option<&'static str>,
    /// WeChat's errcode, in the body, when it is one that wxlogin does not know.
    pub wechat_errcode: Option<i64>,
}

impl Answer {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
            wechat_errcode: None,
        }
    }

    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    fn challenge(mut self, challenge: &'static str) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }
}

/// What the request log line reports about a failed request. Attached to the response as
/// an extension, so the line is written where the request span is.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    pub kind: &'static str,
    /// The internal cause, for operators only: never sent to the client.
    pub detail: Option<String>,
    pub wechat_errcode: Option<i64>,
    pub wechat_rid: Option<String>,
}

/// Every error answer's body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// What went wrong, as a stable snake_case kind for code to match on.
    #[schema(example = "invalid_token")]
    error: &'static str,
    /// What went wrong, for people.
    message: &'a str,
    /// WeChat's errcode, when WeChat answered one that wxlogin does not know.
    #[serde(skip_serializing_if = "Option::is_none")]
    wechat_errcode: Option<i64>,
}

impl ApiError {
    /// A body of the wrong shape, before the route has said what it expects.
    fn invalid_body(detail: String) -> Self {
        Self::InvalidBody {
            detail,
            expected: "the JSON body this route documents",
        }
    }

    /// Names the shape the route expects, in the message of an `invalid_body` error.
    pub fn expecting(self, shape: &'static str) -> Self {
        match self {
            Self::InvalidBody { detail, .. } => Self::InvalidBody {
                detail,
                expected: shape,
            },
            other => other,
        }
    }

    /// How this error is answered: the one place that decides it.
    pub fn answer(&self) -> Answer {
        use StatusCode as S;
        match self {
            Self::BadCode(InvalidCode::Missing) => Answer::new(
                S::BAD_REQUEST,
                "missing_code",
                InvalidCode::Missing.to_string(),
            ),
            Self::BadCode(e) => Answer::new(S::BAD_REQUEST, "malformed_code", e.to_string()),
            // The parser's own words name internal types; they go to the log instead.
            Self::MalformedJson(_) => Answer::new(
                S::BAD_REQUEST,
                "malformed_json",
                "The body is not valid JSON.",
            ),
            Self::InvalidBody { expected, .. } => {
                Answer::new(S::BAD_REQUEST, "invalid_body", format!("Send {expected}."))
            }
            Self::Ambiguous(what) => Answer::new(S::BAD_REQUEST, "ambiguous_request", *what),
            Self::PayloadTooLarge => Answer::new(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "The body is larger than {} KiB.",
                    super::MAX_BODY_BYTES / 1024
                ),
            ),
            Self::BodyTimeout => Answer::new(
                S::REQUEST_TIMEOUT,
                "request_timeout",
                "The request body did not arrive in time. Send it again.",
            ),
            Self::UnsupportedMediaType => Answer::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as application/json (or application/x-www-form-urlencoded where a form is accepted).",
            ),
            Self::NotFound => Answer::new(S::NOT_FOUND, "not_found", "There is no such route."),
            Self::UnknownApp { named: true } => Answer::new(
                S::NOT_FOUND,
                "unknown_app",
                "This deployment serves no such app: use /apps/{app}/… with the name or the appid of one it serves.",
            ),
            Self::UnknownApp { named: false } => Answer::new(
                S::NOT_FOUND,
                "unknown_app",
                "This deployment serves several apps and none is named default: use /apps/{app}/… with the name or the appid of one of them.",
            ),
            Self::MethodNotAllowed => Answer::new(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "This route does not take that method.",
            ),
            Self::MissingToken => Answer::new(
                S::UNAUTHORIZED,
                "invalid_token",
                "Send the session token as `Authorization: Bearer <token>`.",
            )
            .challenge(BEARER_CHALLENGE),
            Self::InvalidToken => Answer::new(
                S::UNAUTHORIZED,
                "invalid_token",
                "The session token is unknown, expired or revoked: log in again.",
            )
            .challenge(INVALID_TOKEN_CHALLENGE),
            Self::InvalidSignature => Answer::new(
                S::BAD_REQUEST,
                "invalid_signature",
                "signature is not the SHA-1 of rawData and this session's session_key. Send rawData exactly as wx.getUserInfo returned it; if it is, log in again.",
            ),
            Self::Decrypt(DecryptError::Base64(field)) => Answer::new(
                S::BAD_REQUEST,
                "malformed_base64",
                format!("{field} is not valid base64."),
            ),
            Self::Decrypt(DecryptError::Length(what)) => {
                Answer::new(S::BAD_REQUEST, "invalid_length", format!("{what}."))
            }
            Self::Decrypt(DecryptError::Garbled(_)) => Answer::new(
                S::BAD_REQUEST,
                "decryption_failed",
                "The data does not decrypt with this session's session_key. It most often means wx.login() was called again after the data was fetched: re-login and fetch the data again.",
            ),
            Self::Decrypt(DecryptError::Watermark) => Answer::new(
                S::BAD_REQUEST,
                "watermark_mismatch",
                "The data decrypts, but it was sealed for another mini-program, or for another user.",
            ),
            Self::WeChat(err) => wechat_answer(err),
            Self::StoreUnavailable(_) => store_unavailable(),
            Self::CodeSpent(_) => Answer::new(
                S::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "WeChat accepted the code, but the session could not be stored, and a code works only once: call wx.login() for a new code and log in with that.",
            ),
            Self::StoreKeyMismatch(_) => misconfigured(),
            Self::BlocksNotDurable => Answer::new(
                S::CONFLICT,
                "blocks_not_durable",
                "The memory store would forget a block at its next restart: set WXLOGIN_BLOCKS_FILE to a file on a volume, or use the Redis store. Nothing was changed.",
            ),
            Self::BlocksNotSaved(_) => Answer::new(
                S::INTERNAL_SERVER_ERROR,
                "blocks_not_saved",
                "The change holds in this process, and its sessions ended, but WXLOGIN_BLOCKS_FILE could not be written, so a restart would undo it; the log says why. Send the request again once the file can be written.",
            ),
            Self::NotReady(err) => Answer {
                message: format!("{}.", capitalised(&err.to_string())).into(),
                ..store_unavailable()
            },
            Self::RateLimited { retry_after_secs } => Answer::new(
                S::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many requests from this address. Try again in {retry_after_secs} s."),
            )
            .retry_after(*retry_after_secs),
            Self::TooManyInProgress => Answer::new(
                S::TOO_MANY_REQUESTS,
                "too_many_in_progress",
                "This address has too many requests in progress. Let them finish, then try again.",
            )
            .retry_after(1),
            Self::UserBlocked(message) => {
                Answer::new(S::FORBIDDEN, "user_blocked", message.to_string())
            }
            Self::AdminUnauthorized => Answer::new(
                S::UNAUTHORIZED,
                "invalid_admin_token",
                "Send the admin token as `Authorization: Bearer <admin token>`.",
            )
            .challenge(ADMIN_CHALLENGE),
            Self::BackendUnauthorized => Answer::new(
                S::UNAUTHORIZED,
                "invalid_backend_token",
                "Send one of the backend tokens (WXLOGIN_BACKEND_TOKENS) as `Authorization: Bearer <token>`.",
            )
            .challenge(BACKEND_CHALLENGE),
            Self::NoTokenForBackend(err) => no_token_for_backend(err),
            Self::InvalidInput { kind, message } => Answer::new(S::BAD_REQUEST, kind, *message),
            Self::WrongAppKind { needs, app, kind } => Answer::new(
                S::BAD_REQUEST,
                "wrong_app_kind",
                format!("This route needs {needs}; app {app} is of kind {kind}."),
            ),
            Self::Internal => Answer::new(
                S::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong on our side.",
            ),
        }
    }

    fn report(&self, kind: &'static str) -> ErrorReport {
        let (detail, wechat_errcode, wechat_rid) = match self {
            Self::WeChat(err) | Self::NoTokenForBackend(err) => {
                let answered = err.access_token_failure().unwrap_or(err);
                (
                    Some(error_chain(err.as_ref())),
                    answered.raw_errcode(),
                    answered.rid().map(str::to_owned),
                )
            }
            Self::MalformedJson(detail) | Self::InvalidBody { detail, .. } => {
                (Some(detail.clone()), None, None)
            }
            Self::StoreUnavailable(err)
            | Self::CodeSpent(err)
            | Self::NotReady(err)
            | Self::StoreKeyMismatch(err) => (Some(error_chain(err)), None, None),
            _ => (None, None, None),
        };
        ErrorReport {
            kind,
            detail,
            wechat_errcode,
            wechat_rid,
        }
    }
}

fn no_token_for_backend(err: &WeChatError) -> Answer {
    use StatusCode as S;
    if let Some(secs) = err.force_refresh_wait() {
        return Answer::new(
            S::SERVICE_UNAVAILABLE,
            "force_refresh_limited",
            "The reported access_token is still the one WeChat hands out, and WeChat allows a forced refresh only every 30 s and 20 a day per app: report it again after Retry-After.",
        )
        .retry_after(secs);
    }
    let cause = err.access_token_failure().unwrap_or(err);
    if matches!(cause, WeChatError::TokenStore(_)) {
        return store_unavailable();
    }
    Answer::new(
        S::SERVICE_UNAVAILABLE,
        "access_token_unavailable",
        "wxlogin could not get an access_token from WeChat; its log says why. Try again shortly.",
    )
    .retry_after(ACCESS_TOKEN_RETRY_AFTER)
}

fn wechat_answer(err: &WeChatError) -> Answer {
    use StatusCode as S;
    if err.is_overloaded() {
        return Answer::new(
            S::SERVICE_UNAVAILABLE,
            "overloaded",
            "wxlogin has as many WeChat calls in flight as it allows. Try again in a moment.",
        )
        .retry_after(OVERLOADED_RETRY_AFTER);
    }
    if let Some(cause) = err.access_token_failure() {
        return match cause.errcode() {
            _ if matches!(cause, WeChatError::TokenStore(_)) => store_unavailable(),
            Some(ErrCode::Misconfigured(_)) => misconfigured(),
            _ => Answer::new(
                S::SERVICE_UNAVAILABLE,
                "access_token_unavailable",
                "wxlogin could not get an access_token from WeChat. Try again shortly.",
            )
            .retry_after(ACCESS_TOKEN_RETRY_AFTER),
        };
    }
    let Some(errcode) = err.errcode() else {
        return match err {
            WeChatError::SnapshotUser => Answer::new(
                S::FORBIDDEN,
                "snapshot_user",
                "This page was opened in WeChat's preview mode, where nobody is logged in. Open the page fully (tap \"use full service\") and try again.",
            ),
            WeChatError::Timeout => Answer::new(
                S::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "WeChat did not answer in time.",
            ),
            _ => Answer::new(
                S::BAD_GATEWAY,
                "upstream_error",
                "WeChat could not be reached or gave an unusable answer.",
            ),
        };
    };
    match errcode {
        ErrCode::InvalidCode => Answer::new(
            S::UNAUTHORIZED,
            "invalid_code",
            "WeChat rejected the code: it is invalid, expired or from another app. Get a new one (from wx.login(), or the getPhoneNumber button) and try again.",
        ),
        ErrCode::CodeUsed => Answer::new(
            S::CONFLICT,
            "code_used",
            "This code has been used already. Get a new one (from wx.login(), or the getPhoneNumber button).",
        ),
        ErrCode::UserBlocked => Answer::new(
            S::FORBIDDEN,
            "user_blocked",
            "WeChat blocked this login: the user is rated high-risk.",
        ),
        ErrCode::RateLimited => Answer::new(
            S::TOO_MANY_REQUESTS,
            "rate_limited",
            "WeChat's login limit for this user was reached. Try again in a minute.",
        )
        .retry_after(RATE_LIMITED_RETRY_AFTER),
        ErrCode::Busy => Answer::new(
            S::SERVICE_UNAVAILABLE,
            "upstream_busy",
            "WeChat is busy. Try again shortly.",
        )
        .retry_after(BUSY_RETRY_AFTER),
        ErrCode::Misconfigured(_) => misconfigured(),
        ErrCode::Other(code) => Answer {
            wechat_errcode: Some(code),
            ..Answer::new(
                S::BAD_GATEWAY,
                "upstream_error",
                "WeChat answered with an error wxlogin does not know.",
            )
        },
    }
}

fn store_unavailable() -> Answer {
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The session store is not available. Try again shortly.",
    )
    .retry_after(STORE_RETRY_AFTER)
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Our appid, secret or IP whitelist is wrong. The details go to the log, not the client.
fn misconfigured() -> Answer {
    Answer::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "misconfigured",
        "The login service is misconfigured; its operators can see why in its logs.",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let answer = self.answer();
        let response = (
            answer.status,
            Json(ErrorBody {
                error: answer.kind,
                message: &answer.message,
                wechat_errcode: answer.wechat_errcode,
            }),
        )
            .into_response();
        self.finish(&answer, response)
    }
}

impl ApiError {
    /// The headers `answer` asks for, and the report for the request's log line.
    fn finish(&self, answer: &Answer, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if let Some(challenge) = answer.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(secs) = answer.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if answer.status == StatusCode::REQUEST_TIMEOUT {
            // What is left of the body may still be on its way: the connection cannot be
            // read again (RFC 9110 §15.5.9).
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response.extensions_mut().insert(self.report(answer.kind));
        response
    }
}
