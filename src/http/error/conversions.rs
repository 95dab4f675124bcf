//! How the failures of axum's extractors and of the layers below become an [`ApiError`].

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, FormRejection, JsonRejection, QueryRejection};
use axum::http::StatusCode;

use super::ApiError;
use crate::domain::InvalidCode;
use crate::login::LoginError;
use crate::redis_conn::StoreError;
use crate::wechat::WeChatError;
use crate::wechat::open_data::DecryptError;

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            JsonRejection::JsonSyntaxError(e) => Self::MalformedJson(e.body_text()),
            JsonRejection::JsonDataError(e) => Self::invalid_body(e.body_text()),
            other => body_failure(other.status(), &other, other.body_text()),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::InvalidFormContentType(_) => Self::UnsupportedMediaType,
            other => body_failure(other.status(), &other, other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        body_failure(rejection.status(), &rejection, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid_body(rejection.body_text())
    }
}

/// Reading the body failed: too large, too slow, or cut off.
fn body_failure(
    status: StatusCode,
    err: &(dyn std::error::Error + 'static),
    text: String,
) -> ApiError {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::BodyTimeout;
        }
        cause = err.source();
    }
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
        match e {
            StoreError::KeyMismatch { .. } => Self::StoreKeyMismatch(e),
            StoreError::BlocksNotDurable => Self::BlocksNotDurable,
            StoreError::BlocksNotSaved(_) => Self::BlocksNotSaved(e),
            _ => Self::StoreUnavailable(e),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::WeChat(err) => Self::WeChat(err),
            LoginError::StoreUnavailable(err) => Self::from(err),
            LoginError::NotStored(err) => Self::CodeSpent(err),
            LoginError::Blocked { message, .. } => Self::UserBlocked(message),
            LoginError::Interrupted => Self::Internal,
        }
    }
}
