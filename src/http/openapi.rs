//! The OpenAPI 3.1 document, generated from the handlers' own annotations, served at
//! `GET /openapi.json`.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;
use super::error::ErrorBody;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wxlogin",
        description = "A login service for WeChat Mini Programs: a `wx.login()` code in, an opaque session token out. WeChat's session_key and the app secret never leave the server. Every error is `{\"error\": kind, \"message\": text}`."
    ),
    paths(
        super::login::post_openid,
        super::login::get_applet_login,
        super::login::post_applet_login,
        super::session::who_is_it,
        super::session::revoke,
        super::open_data::verify_signature,
        super::open_data::decrypt_data,
        super::open_data::phone_number,
        super::open_data::check_session,
        super::forward_auth::forward_auth,
        super::health::alive,
        super::health::ready,
        super::health::metrics,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    tags(
        (name = "login", description = "Trading a `wx.login()` code for a session token."),
        (name = "session", description = "What a session token stands for, and logging out."),
        (name = "user data", description = "Checking and opening what WeChat hands the mini-program, with the session's session_key."),
        (name = "gateway", description = "Forward-auth for API gateways."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme that the session routes name in their `security`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The session token from a login."))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, built once.
pub static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serialises")
});

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json", body = Object))
)]
async fn openapi_json() -> Response {
    let mut response = OPENAPI_JSON.as_str().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
