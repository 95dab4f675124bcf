//! The same answers in RFC 6749 §5.2's shape, for the OAuth routes: `{"error",
//! "error_description"}`, with RFC 6749's codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{Answer, ApiError};

/// Every error answer's body on the OAuth routes: RFC 6749 §5.2's shape.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OAuthErrorBody<'a> {
    /// RFC 6749's error code: `invalid_request`, `unsupported_grant_type`,
    /// `invalid_client`, `temporarily_unavailable` or `server_error`.
    #[schema(example = "invalid_request")]
    error: &'static str,
    /// What went wrong, for people.
    error_description: &'a str,
}

impl Answer {
    /// The RFC 6749 error code this answer has on the OAuth routes: the kind, where it is
    /// one of RFC 6749's, else the code for its status.
    pub fn oauth_error(&self) -> &'static str {
        match (self.kind, self.status) {
            (kind @ ("invalid_request" | "unsupported_grant_type"), _) => kind,
            (_, StatusCode::UNAUTHORIZED) => "invalid_client",
            (_, status) if status.is_client_error() => "invalid_request",
            (_, StatusCode::SERVICE_UNAVAILABLE) => "temporarily_unavailable",
            _ => "server_error",
        }
    }
}

impl ApiError {
    /// The answer in RFC 6749 §5.2's shape, for the OAuth routes: the same status and
    /// headers, `{"error", "error_description"}` for a body.
    pub fn into_oauth_response(self) -> Response {
        let answer = self.answer();
        let body = OAuthErrorBody {
            error: answer.oauth_error(),
            error_description: &answer.message,
        };
        let response = (answer.status, Json(body)).into_response();
        self.finish(&answer, response)
    }
}
