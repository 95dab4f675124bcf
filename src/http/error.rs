//! Every way a request can fail, and the one place that turns each into a status and a
//! `{"error": kind, "message": text}` body.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::login::LoginError;
use crate::session::StoreError;
use crate::telemetry::error_chain;
use crate::wechat::open_data::DecryptError;
use crate::wechat::{ErrCode, InvalidCode, WeChatError};

/// Seconds a client should wait after WeChat's per-user limit (counted per minute).
const RATE_LIMITED_RETRY_AFTER: &str = "60";
/// Seconds a client should wait after WeChat said it is busy, even on our retry.
const BUSY_RETRY_AFTER: &str = "2";
/// Seconds a client should wait when the session store is unreachable.
const STORE_RETRY_AFTER: &str = "2";
/// Seconds a client should wait when no access_token could be had.
const ACCESS_TOKEN_RETRY_AFTER: &str = "5";
/// Seconds a client should wait when its request was shed: load passes in moments.
const OVERLOADED_RETRY_AFTER: &str = "1";

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
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType,
    /// 404 `not_found`.
    NotFound,
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
    WeChat(Arc<WeChatError>),
    /// 503 `store_unavailable`: the session store (Redis) failed or did not answer in time.
    StoreUnavailable(Arc<StoreError>),
    /// 429 `rate_limited`: this client IP has spent its allowance; it may retry after the
    /// given number of seconds.
    RateLimited { retry_after_secs: u64 },
    /// 500 `internal_error`: a bug (a caught panic).
    Internal,
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

    fn parts(&self) -> (StatusCode, &'static str, Cow<'static, str>) {
        use StatusCode as S;
        match self {
            Self::BadCode(InvalidCode::Missing) => (S::BAD_REQUEST, "missing_code", msg(InvalidCode::Missing)),
            Self::BadCode(e) => (S::BAD_REQUEST, "malformed_code", msg(e)),
            // The parser's own words name internal types; they go to the log instead.
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json", "The body is not valid JSON.".into()),
            Self::InvalidBody { expected, .. } => (S::BAD_REQUEST, "invalid_body", format!("Send {expected}.").into()),
            Self::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "payload_too_large", format!("The body is larger than {} KiB.", super::MAX_BODY_BYTES / 1024).into()),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as application/json (or application/x-www-form-urlencoded where a form is accepted).".into(),
            ),
            Self::NotFound => (S::NOT_FOUND, "not_found", "There is no such route.".into()),
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed", "This route does not take that method.".into()),
            Self::MissingToken => (
                S::UNAUTHORIZED,
                "invalid_token",
                "Send the session token as `Authorization: Bearer <token>`.".into(),
            ),
            Self::InvalidToken => (
                S::UNAUTHORIZED,
                "invalid_token",
                "The session token is unknown, expired or revoked: log in again.".into(),
            ),
            Self::InvalidSignature => (
                S::BAD_REQUEST,
                "invalid_signature",
                "signature is not the SHA-1 of rawData and this session's session_key. Send rawData exactly as wx.getUserInfo returned it; if it is, log in again.".into(),
            ),
            Self::Decrypt(DecryptError::Base64(field)) => (S::BAD_REQUEST, "malformed_base64", format!("{field} is not valid base64.").into()),
            Self::Decrypt(DecryptError::Length(what)) => (S::BAD_REQUEST, "invalid_length", format!("{what}.").into()),
            Self::Decrypt(DecryptError::Garbled(_)) => (
                S::BAD_REQUEST,
                "decryption_failed",
                "The data does not decrypt with this session's session_key. It most often means wx.login() was called again after the data was fetched: re-login and fetch the data again.".into(),
            ),
            Self::Decrypt(DecryptError::Watermark) => (
                S::BAD_REQUEST,
                "watermark_mismatch",
                "The data decrypts, but it was sealed for another mini-program.".into(),
            ),
            Self::WeChat(err) => wechat_parts(err),
            Self::StoreUnavailable(_) => store_unavailable(),
            Self::RateLimited { retry_after_secs } => (
                S::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many requests from this address. Try again in {retry_after_secs} s.").into(),
            ),
            Self::Internal => (S::INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side.".into()),
        }
    }

    fn report(&self, kind: &'static str) -> ErrorReport {
        let (detail, wechat_errcode, wechat_rid) = match self {
            Self::WeChat(err) => {
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
            Self::StoreUnavailable(err) => (Some(error_chain(err.as_ref())), None, None),
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

fn msg(e: impl ToString) -> Cow<'static, str> {
    e.to_string().into()
}

fn wechat_parts(err: &WeChatError) -> (StatusCode, &'static str, Cow<'static, str>) {
    use StatusCode as S;
    if err.is_overloaded() {
        return (
            S::SERVICE_UNAVAILABLE,
            "overloaded",
            "wxlogin has as many WeChat calls in flight as it allows. Try again in a moment."
                .into(),
        );
    }
    if let Some(cause) = err.access_token_failure() {
        return match cause.errcode() {
            _ if matches!(cause, WeChatError::TokenStore(_)) => store_unavailable(),
            Some(ErrCode::Misconfigured(_)) => misconfigured(),
            _ => (
                S::SERVICE_UNAVAILABLE,
                "access_token_unavailable",
                "wxlogin could not get an access_token from WeChat. Try again shortly.".into(),
            ),
        };
    }
    let Some(errcode) = err.errcode() else {
        return match err {
            WeChatError::Timeout => (
                S::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "WeChat did not answer in time.".into(),
            ),
            _ => (
                S::BAD_GATEWAY,
                "upstream_error",
                "WeChat could not be reached or gave an unusable answer.".into(),
            ),
        };
    };
    match errcode {
        ErrCode::InvalidCode => (
            S::UNAUTHORIZED,
            "invalid_code",
            "WeChat rejected the code: it is invalid, expired or from another app. Get a new one (from wx.login(), or the getPhoneNumber button) and try again.".into(),
        ),
        ErrCode::CodeUsed => (
            S::CONFLICT,
            "code_used",
            "This code has been used already. Get a new one (from wx.login(), or the getPhoneNumber button).".into(),
        ),
        ErrCode::UserBlocked => (S::FORBIDDEN, "user_blocked", "WeChat blocked this login: the user is rated high-risk.".into()),
        ErrCode::RateLimited => (
            S::TOO_MANY_REQUESTS,
            "rate_limited",
            "WeChat's login limit for this user was reached. Try again in a minute.".into(),
        ),
        ErrCode::Busy => (S::SERVICE_UNAVAILABLE, "upstream_busy", "WeChat is busy. Try again shortly.".into()),
        ErrCode::Misconfigured(_) => misconfigured(),
        ErrCode::Other(_) => (S::BAD_GATEWAY, "upstream_error", "WeChat answered with an error wxlogin does not know.".into()),
    }
}

fn store_unavailable() -> (StatusCode, &'static str, Cow<'static, str>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The session store is unreachable. Try again shortly.".into(),
    )
}

/// Our appid, secret or IP whitelist is wrong. The details go to the log, not the client.
fn misconfigured() -> (StatusCode, &'static str, Cow<'static, str>) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "misconfigured",
        "The login service is misconfigured; its operators can see why in its logs.".into(),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, message) = self.parts();
        let wechat_errcode = match &self {
            Self::WeChat(err) if matches!(err.errcode(), Some(ErrCode::Other(_))) => {
                err.raw_errcode()
            }
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: kind,
                message: &message,
                wechat_errcode,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        match &self {
            Self::MissingToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="wxlogin""#),
                );
            }
            Self::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="wxlogin", error="invalid_token""#),
                );
            }
            Self::StoreUnavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(STORE_RETRY_AFTER),
                );
            }
            Self::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::WeChat(err) if err.is_overloaded() => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(OVERLOADED_RETRY_AFTER),
                );
            }
            Self::WeChat(err) => match err.errcode() {
                Some(ErrCode::RateLimited) => {
                    headers.insert(
                        header::RETRY_AFTER,
                        HeaderValue::from_static(RATE_LIMITED_RETRY_AFTER),
                    );
                }
                Some(ErrCode::Busy) => {
                    headers.insert(
                        header::RETRY_AFTER,
                        HeaderValue::from_static(BUSY_RETRY_AFTER),
                    );
                }
                _ if err.access_token_failure().is_some() => {
                    headers.insert(
                        header::RETRY_AFTER,
                        HeaderValue::from_static(ACCESS_TOKEN_RETRY_AFTER),
                    );
                }
                _ => {}
            },
            _ => {}
        }
        response.extensions_mut().insert(self.report(kind));
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::JsonSyntaxError(e) => Self::MalformedJson(e.body_text()),
            JsonRejection::JsonDataError(e) => Self::invalid_body(e.body_text()),
            other => body_failure(other.status(), other.body_text()),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::InvalidFormContentType(_) => Self::UnsupportedMediaType,
            other => body_failure(other.status(), other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid_body(rejection.body_text())
    }
}

/// Reading the body failed: too large, or cut off.
fn body_failure(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::invalid_body(text),
    }
}

impl From<InvalidCode> for ApiError {
    fn from(e: InvalidCode) -> Self {
        Self::BadCode(e)
    }
}

impl From<WeChatError> for ApiError {
    fn from(e: WeChatError) -> Self {
        Self::WeChat(Arc::new(e))
    }
}

impl From<DecryptError> for ApiError {
    fn from(e: DecryptError) -> Self {
        Self::Decrypt(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::StoreUnavailable(Arc::new(e))
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::WeChat(err) => Self::WeChat(err),
            LoginError::Store(err) => Self::StoreUnavailable(Arc::new(err)),
            LoginError::Interrupted => Self::Internal,
        }
    }
}

impl From<Arc<WeChatError>> for ApiError {
    fn from(e: Arc<WeChatError>) -> Self {
        Self::WeChat(e)
    }
}
