//! The OpenAPI response sets: which errors a group of routes can answer, each listed once
//! by example. Statuses, kinds, messages and headers come from [`ApiError::answer`], so the
//! document cannot drift from what the server sends.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use utoipa::IntoResponses;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};

use super::{Answer, ApiError};
use crate::domain::{AppKind, AppName, InvalidCode};
use crate::redis_conn::{StoreError, Unavailable};
use crate::wechat::WeChatError;
use crate::wechat::open_data::DecryptError;

/// The responses for `errors`, one per status; each lists its kinds with their messages
/// (a kind twice where it has two: `invalid_token` for no token and for a dead one).
fn responses_of(errors: Vec<ApiError>) -> BTreeMap<String, RefOr<Response>> {
    shaped(errors, "ErrorBody", |answer| answer)
}

/// [`responses_of`], as the OAuth routes answer them: RFC 6749's codes and shape.
fn oauth_responses_of(errors: Vec<ApiError>) -> BTreeMap<String, RefOr<Response>> {
    shaped(errors, "OAuthErrorBody", |mut answer| {
        answer.kind = answer.oauth_error();
        answer
    })
}

fn shaped(
    errors: Vec<ApiError>,
    body: &str,
    as_answered: fn(Answer) -> Answer,
) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<StatusCode, Vec<Answer>> = BTreeMap::new();
    for error in &errors {
        let answer = as_answered(error.answer());
        let answers = by_status.entry(answer.status).or_default();
        let known = |known: &Answer| known.kind == answer.kind && known.message == answer.message;
        if !answers.iter().any(known) {
            answers.push(answer);
        }
    }
    by_status
        .into_iter()
        .map(|(status, answers)| {
            let response = response(&answers, body);
            (status.as_u16().to_string(), response.into())
        })
        .collect()
}

fn response(answers: &[Answer], body: &str) -> Response {
    let description = answers
        .iter()
        .map(|answer| format!("`{}`: {}", answer.kind, answer.message))
        .collect::<Vec<_>>()
        .join(" ");
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(body)))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", body);
    if answers.iter().any(|answer| answer.retry_after.is_some()) {
        let seconds = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1));
        let header = HeaderBuilder::new()
            .schema(Some(seconds))
            .description(Some("Seconds to wait before trying again."))
            .build();
        response = response.header("Retry-After", header);
    }
    if answers
        .iter()
        .any(|answer| answer.www_authenticate.is_some())
    {
        let header = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        response = response.header("WWW-Authenticate", header);
    }
    response.build()
}

fn all<const N: usize>(sets: [Vec<ApiError>; N]) -> Vec<ApiError> {
    sets.into_iter().flatten().collect()
}

/// WeChat answered `errcode`.
fn wechat(errcode: i64) -> ApiError {
    ApiError::WeChat(Arc::new(WeChatError::Api {
        errcode,
        errmsg: String::new(),
    }))
}

fn wechat_error(err: WeChatError) -> ApiError {
    ApiError::WeChat(Arc::new(err))
}

fn bad_bodies() -> Vec<ApiError> {
    vec![
        ApiError::MalformedJson(String::new()),
        ApiError::invalid_body(String::new()),
    ]
}

fn bad_codes() -> Vec<ApiError> {
    vec![
        ApiError::BadCode(InvalidCode::Missing),
        ApiError::BadCode(InvalidCode::TooLong),
    ]
}

fn bad_tokens() -> Vec<ApiError> {
    vec![
        ApiError::MissingToken,
        ApiError::InvalidToken,
        ApiError::Ambiguous("Send one Authorization header, not several."),
    ]
}

fn store_down() -> ApiError {
    ApiError::StoreUnavailable(StoreError::Unavailable(Unavailable::Timeout, None))
}

/// A block the memory store could not write to its file.
fn blocks_not_saved() -> ApiError {
    ApiError::BlocksNotSaved(StoreError::BlocksNotSaved(std::io::Error::other(
        "read-only file system",
    )))
}

/// A session_key sealed under a store key this process does not have.
fn key_mismatch() -> ApiError {
    ApiError::StoreKeyMismatch(StoreError::KeyMismatch {
        key_id: String::new(),
    })
}

/// A session of an app of another kind than the route serves.
fn wrong_kind() -> ApiError {
    ApiError::needs_mini_program(&AppName::default_app(), AppKind::OfficialAccount)
}

/// An access_token asked for an app that WeChat gives none.
fn tokenless_kind() -> ApiError {
    ApiError::needs_access_token(&AppName::default_app(), AppKind::Website)
}

/// What a one-time code spent at WeChat can come back as.
fn spent_codes() -> Vec<ApiError> {
    vec![
        wechat(40029),
        wechat(40163),
        ApiError::RateLimited {
            retry_after_secs: 60,
        },
        wechat(45011),
        wechat(40125),
        wechat(-1),
        wechat_error(WeChatError::Overloaded),
    ]
}

macro_rules! error_set {
    (@as $shape:ident $(#[$doc:meta])* $name:ident = $errors:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                $shape($errors)
            }
        }
    };
    (oauth: $(#[$doc:meta])* $name:ident = $errors:expr) => {
        error_set!(@as oauth_responses_of $(#[$doc])* $name = $errors);
    };
    ($(#[$doc:meta])* $name:ident = $errors:expr) => {
        error_set!(@as responses_of $(#[$doc])* $name = $errors);
    };
}

error_set!(
    /// What any route that reads a body can answer, beside the route's own set.
    BodyErrors = vec![
        ApiError::BodyTimeout,
        ApiError::PayloadTooLarge,
        ApiError::UnsupportedMediaType,
    ]
);

error_set!(
    /// What any route that calls WeChat can answer when WeChat gives no usable answer.
    UpstreamErrors = vec![
        wechat_error(WeChatError::Status(StatusCode::BAD_GATEWAY)),
        wechat_error(WeChatError::Timeout),
    ]
);

error_set!(
    /// What a login route can answer besides its 200, [`BodyErrors`] and [`UpstreamErrors`].
    LoginErrors = all([
        vec![ApiError::UnknownApp { named: false }],
        bad_codes(),
        bad_bodies(),
        spent_codes(),
        vec![
            wechat(40226),
            wechat_error(WeChatError::SnapshotUser),
            ApiError::UserBlocked(
                "This account cannot sign in at the moment. Contact the mini-program's support."
                    .into(),
            ),
            store_down(),
            ApiError::CodeSpent(StoreError::Unavailable(Unavailable::Unreachable, None)),
        ],
    ])
);

error_set!(
    /// What a route that needs a session token can answer besides its 200.
    TokenErrors = all([bad_tokens(), vec![store_down()]])
);

error_set!(
    /// What the user-data routes that only use the session_key can answer besides their
    /// 200 and [`BodyErrors`].
    OpenDataErrors = all([
        vec![
            ApiError::InvalidSignature,
            ApiError::Decrypt(DecryptError::Base64("iv")),
            ApiError::Decrypt(DecryptError::Length("The iv is not 16 bytes")),
            ApiError::Decrypt(DecryptError::Garbled("JSON")),
            ApiError::Decrypt(DecryptError::Watermark),
        ],
        bad_bodies(),
        bad_tokens(),
        vec![store_down(), key_mismatch(), wrong_kind()],
    ])
);

error_set!(
    /// What the user-data routes that ask WeChat can answer besides their 200,
    /// [`BodyErrors`] and [`UpstreamErrors`].
    ServerApiErrors = all([
        bad_codes(),
        bad_bodies(),
        bad_tokens(),
        spent_codes(),
        vec![
            wechat_error(WeChatError::AccessToken(Box::new(WeChatError::Timeout))),
            store_down(),
            wrong_kind(),
        ],
    ])
);

error_set!(
    /// What `/wechat/check_session` can answer besides its 200 and [`UpstreamErrors`]: it
    /// takes no body and no code.
    CheckSessionErrors = all([
        bad_tokens(),
        vec![
            wechat(40125),
            wechat(-1),
            wechat_error(WeChatError::Overloaded),
            wechat_error(WeChatError::AccessToken(Box::new(WeChatError::Timeout))),
            store_down(),
            key_mismatch(),
            wrong_kind(),
        ],
    ])
);

error_set!(
    /// What `/readyz` answers when the session store does not.
    NotReady = vec![ApiError::NotReady(StoreError::Unavailable(
        Unavailable::OutOfMemory,
        None
    ))]
);

error_set!(
    /// What the web-login helper answers instead of a redirect: the redirect_uri, scope or
    /// state refused, an app of a kind without a consent page, the store down.
    WebLoginErrors = vec![
        ApiError::INVALID_REDIRECT_URI,
        ApiError::INVALID_SCOPE,
        ApiError::INVALID_STATE,
        ApiError::needs_consent_page(&AppName::default_app(), AppKind::MiniProgram),
        ApiError::invalid_body(String::new()),
        ApiError::RateLimited {
            retry_after_secs: 60
        },
        store_down(),
    ]
);

error_set!(
    /// What a route under `/apps/{app}/` answers when `{app}` is none of ours.
    UnknownAppErrors = vec![ApiError::UnknownApp { named: true }]
);

fn admin_auth() -> ApiError {
    ApiError::AdminUnauthorized
}

error_set!(
    /// What an admin route that names no user can answer besides its 200.
    AdminErrors = vec![
        admin_auth(),
        // The admin API is off, or served on a listener of its own.
        ApiError::NotFound,
        ApiError::INVALID_UNIONID,
        store_down(),
    ]
);

/// What any backend route can answer when no token can be had.
fn no_token_for_backend() -> Vec<ApiError> {
    let no_token = |err: WeChatError| ApiError::NoTokenForBackend(Arc::new(err));
    vec![
        no_token(WeChatError::AccessToken(Box::new(WeChatError::Timeout))),
        no_token(WeChatError::ForceRefreshLimited {
            retry_after_secs: 30,
        }),
        store_down(),
    ]
}

/// What any backend route can answer before it looks for the token.
fn backend_route_refusals() -> Vec<ApiError> {
    vec![
        ApiError::BackendUnauthorized,
        // The backend routes are off, or served on a listener of their own.
        ApiError::NotFound,
        ApiError::UnknownApp { named: true },
    ]
}

error_set!(
    /// What `GET /apps/{app}/access_token` can answer besides its 200.
    AccessTokenErrors = all([
        backend_route_refusals(),
        no_token_for_backend(),
        vec![tokenless_kind()],
    ])
);

error_set!(
    /// What reporting a rejected access_token can answer besides its 200 and
    /// [`BodyErrors`].
    RefreshErrors = all([
        backend_route_refusals(),
        bad_bodies(),
        no_token_for_backend(),
        vec![tokenless_kind()],
    ])
);

/// What any admin route on one user of one app can answer before it acts.
fn admin_user_refusals() -> Vec<ApiError> {
    vec![
        admin_auth(),
        // The admin API is off, or served on a listener of its own.
        ApiError::NotFound,
        ApiError::UnknownApp { named: true },
        ApiError::INVALID_OPENID,
        store_down(),
    ]
}

error_set!(
    /// What an admin route on one user of one app can answer besides its 200.
    AdminUserErrors = admin_user_refusals()
);

error_set!(
    /// What blocking a user can answer besides its 200 and [`BodyErrors`].
    BlockErrors = all([
        admin_user_refusals(),
        vec![
            ApiError::UNTIL_UNREADABLE,
            ApiError::UNTIL_PAST,
            ApiError::REASON_TOO_LONG,
            ApiError::BlocksNotDurable,
            blocks_not_saved(),
        ],
        bad_bodies(),
    ])
);

error_set!(
    /// What lifting a block can answer besides its 200.
    UnblockErrors = all([admin_user_refusals(), vec![blocks_not_saved()]])
);

/// What any OAuth route that reads a form can answer before its own checks.
fn bad_forms() -> Vec<ApiError> {
    vec![
        ApiError::invalid_body(String::new()),
        ApiError::BodyTimeout,
        ApiError::PayloadTooLarge,
        ApiError::UnsupportedMediaType,
    ]
}

error_set!(
    oauth:
    /// What the token exchange can answer besides its 200.
    OAuthTokenErrors = all([
        vec![
            ApiError::UNSUPPORTED_GRANT_TYPE,
            ApiError::UNSUPPORTED_SUBJECT_TOKEN_TYPE,
            ApiError::NOT_A_LIVE_SESSION,
            store_down(),
        ],
        bad_forms(),
    ])
);

error_set!(
    oauth:
    /// What introspection can answer besides its 200.
    OAuthIntrospectionErrors = all([
        vec![
            ApiError::BackendUnauthorized,
            ApiError::NO_TOKEN_TO_INTROSPECT,
            store_down(),
        ],
        bad_forms(),
    ])
);

error_set!(
    /// What a route answers while the feature it belongs to is off, or served on a
    /// listener of its own: the OAuth routes without `WXLOGIN_JWT_ISSUER`, introspection
    /// without backend tokens too.
    OffErrors = vec![ApiError::NotFound]
);
