//! Every way a request can fail, and the one place that turns each into a status and a
//! `{"error": kind, "message": text}` body.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::wechat::{ErrCode, InvalidJsCode, WeChatError};

/// Seconds a client should wait after WeChat's per-user limit (counted per minute).
const RATE_LIMITED_RETRY_AFTER: &str = "60";
/// Seconds a client should wait after WeChat said it is busy, even on our retry.
const BUSY_RETRY_AFTER: &str = "2";

#[derive(Debug)]
pub enum ApiError {
    /// 400 `missing_code` or `malformed_code`.
    BadCode(InvalidJsCode),
    /// 400 `malformed_json`: the body is not JSON.
    MalformedJson(String),
    /// 400 `invalid_body`: JSON or a form of the wrong shape, or a bad query string.
    InvalidBody(String),
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
    /// WeChat said no, or could not be asked: 401, 403, 409, 429, 500, 502, 503 or 504.
    WeChat(Arc<WeChatError>),
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

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    wechat_errcode: Option<i64>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Cow<'static, str>) {
        use StatusCode as S;
        match self {
            Self::BadCode(InvalidJsCode::Missing) => (S::BAD_REQUEST, "missing_code", msg(InvalidJsCode::Missing)),
            Self::BadCode(e) => (S::BAD_REQUEST, "malformed_code", msg(e)),
            // The parser's own words name internal types; they go to the log instead.
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json", "The body is not valid JSON.".into()),
            Self::InvalidBody(_) => (
                S::BAD_REQUEST,
                "invalid_body",
                r#"Send the code from wx.login() as {"code": "…"}, a form field code=…, or ?code=… on GET."#.into(),
            ),
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
            Self::WeChat(err) => wechat_parts(err),
            Self::Internal => (S::INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong on our side.".into()),
        }
    }

    fn report(&self, kind: &'static str) -> ErrorReport {
        let (detail, wechat_errcode, wechat_rid) = match self {
            Self::WeChat(err) => (
                Some(error_chain(err.as_ref())),
                err.raw_errcode(),
                err.rid().map(str::to_owned),
            ),
            Self::MalformedJson(e) | Self::InvalidBody(e) => (Some(e.clone()), None, None),
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
            "WeChat rejected the code: it is invalid, expired or from another app. Call wx.login() again.".into(),
        ),
        ErrCode::CodeUsed => (S::CONFLICT, "code_used", "This code has been used already. Call wx.login() again.".into()),
        ErrCode::UserBlocked => (S::FORBIDDEN, "user_blocked", "WeChat blocked this login: the user is rated high-risk.".into()),
        ErrCode::RateLimited => (
            S::TOO_MANY_REQUESTS,
            "rate_limited",
            "WeChat's login limit for this user was reached. Try again in a minute.".into(),
        ),
        ErrCode::Busy => (S::SERVICE_UNAVAILABLE, "upstream_busy", "WeChat is busy. Try again shortly.".into()),
        // Our appid, secret or IP whitelist is wrong. The details go to the log, not the client.
        ErrCode::Misconfigured(_) => (
            S::INTERNAL_SERVER_ERROR,
            "misconfigured",
            "The login service is misconfigured; its operators can see why in its logs.".into(),
        ),
        ErrCode::Other(_) => (S::BAD_GATEWAY, "upstream_error", "WeChat answered with an error wxlogin does not know.".into()),
    }
}

/// The error and its sources on one line, for the log.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
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
            JsonRejection::JsonDataError(e) => Self::InvalidBody(e.body_text()),
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
        Self::InvalidBody(rejection.body_text())
    }
}

/// Reading the body failed: too large, or cut off.
fn body_failure(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::InvalidBody(text),
    }
}

impl From<InvalidJsCode> for ApiError {
    fn from(e: InvalidJsCode) -> Self {
        Self::BadCode(e)
    }
}

impl From<Arc<WeChatError>> for ApiError {
    fn from(e: Arc<WeChatError>) -> Self {
        Self::WeChat(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_chain_joins_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&err), "outer: inner");
    }
}
