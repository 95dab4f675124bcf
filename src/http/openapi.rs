//! The OpenAPI 3.1 document, generated from the handlers' own annotations, served at
//! `GET /openapi.json`.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::IntoResponses;
use utoipa::openapi::RefOr;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;
use super::error::{ErrorBody, OAuthErrorBody};

/// What a listener serves, and so what its document lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public one; with the admin API, the backend routes and `/metrics` too unless
    /// they are served `elsewhere`. The admin and backend routes are listed while they are
    /// off all the same, each with the 404 it answers then.
    Public { private_elsewhere: bool },
    /// The private one (`WXLOGIN_ADMIN_LISTEN`): those routes and this document.
    Private,
}

pub fn router(listener: Listener) -> Router<AppState> {
    // Built once; each answer shares its bytes.
    let document = Bytes::from(document(listener));
    Router::new().route("/openapi.json", get(move || openapi_json(document.clone())))
}

/// The document of the routes `listener` serves, as JSON.
pub fn document(listener: Listener) -> String {
    let mut openapi = ApiDoc::openapi();
    openapi.paths.paths.retain(|path, _| {
        let private = path.starts_with("/admin/")
            || path.starts_with("/apps/{app}/access_token")
            || path == "/oauth/introspect"
            || path == "/metrics";
        match listener {
            Listener::Public { private_elsewhere } => !(private && private_elsewhere),
            Listener::Private => private || path == "/openapi.json",
        }
    });
    openapi.to_pretty_json().expect("the document serialises")
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
        super::web_login::authorize,
        super::web_login::callback,
        super::health::alive,
        super::health::ready,
        super::health::metrics,
        openapi_json,
        super::admin::user,
        super::admin::revoke_user,
        super::admin::revoke_unionid,
        super::admin::block,
        super::admin::unblock,
        super::backend::access_token,
        super::backend::refresh,
        super::oauth::exchange::exchange,
        super::oauth::introspect::introspect,
        super::oauth::jwks,
        super::oauth::authorization_server_metadata,
        super::oauth::openid_configuration,
    ),
    components(schemas(ErrorBody, OAuthErrorBody)),
    modifiers(&BearerScheme, &Groups, &ExtraFieldsIgnored, &AppPrefixed, &OneOperationIdEach),
    tags(
        (name = "login", description = "Trading a `wx.login()` code for a session token."),
        (name = "session", description = "What a session token stands for, and logging out."),
        (name = "user data", description = "Checking and opening what WeChat hands the mini-program, with the session's session_key."),
        (name = "gateway", description = "Forward-auth for API gateways."),
        (name = "web login", description = "The web-login helper for official-account H5 and website QR pages: to WeChat's consent page and back, with the session handed over in the WXLOGIN_AUTH_COOKIE cookie. Only for apps with WXLOGIN_APP_<NAME>_REDIRECT_URIS; every answer is a 303 or an error."),
        (name = "operations", description = "Health, readiness, metrics and this document. Each listener's document lists what that listener serves: with WXLOGIN_ADMIN_LISTEN set, /metrics is served, and documented, on the admin listener only."),
        (name = "backend", description = "The apps' access_token for the team's other backends, from the one holder WeChat asks for, with a passive refresh for a token an API refused. Off (every route 404, as documented) unless WXLOGIN_BACKEND_TOKENS_FILE is set; with WXLOGIN_ADMIN_LISTEN set, served and documented on that listener only."),
        (name = "oauth", description = "Short-lived signed JWTs for gateways that only trust JWTs: an RFC 8693 exchange of a session token, the JWKS and the RFC 8414 metadata to verify them, and RFC 7662 introspection (with a backend token) that knows about revocation. Off (every route 404, as documented) unless WXLOGIN_JWT_ISSUER is set; introspection also needs WXLOGIN_BACKEND_TOKENS_FILE, and with WXLOGIN_ADMIN_LISTEN set it is served and documented on that listener only. Errors are in RFC 6749's shape: `{\"error\", \"error_description\"}`."),
        (name = "admin", description = "Operator controls: look a user up, revoke their sessions, block their logins. Off (every route 404, as documented) unless WXLOGIN_ADMIN_TOKEN_FILE is set; with WXLOGIN_ADMIN_LISTEN set, served and documented on the admin listener only. Without the admin token, every method of every route answers 401."),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme that the session routes name in their `security`, the
/// `backend` one of the backend routes and the `admin` one of the admin routes.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let schemes = [
            ("bearer", "The session token from a login."),
            (
                "backend",
                "A backend's token (WXLOGIN_BACKEND_TOKENS_FILE).",
            ),
            ("admin", "The admin token (WXLOGIN_ADMIN_TOKEN_FILE)."),
        ];
        for (name, description) in schemes {
            let scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// Every operation of a path, with its method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_mut()?)))
}

/// Each route's tag, and the credential it takes, stated by group: the credentials are
/// checked by layers on whole routers (the session extractor, the admin and backend
/// guards), so the document states them where the routes are grouped, not per handler.
struct Groups;

/// The tag of `path` and the security scheme its guard asks for; `None` for a path in
/// no group, which the tests refuse.
fn group(path: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match path {
        _ if path.starts_with("/admin/") => ("admin", Some("admin")),
        "/oauth/introspect" => ("oauth", Some("backend")),
        _ if path.starts_with("/oauth/") || path.starts_with("/.well-known/") => ("oauth", None),
        _ if path.starts_with("/apps/{app}/access_token") => ("backend", Some("backend")),
        _ if path.starts_with("/apps/{app}/oauth/") => ("web login", None),
        "/openid" | "/wechat/applet_login" => ("login", None),
        _ if path.starts_with("/wechat/") => ("user data", Some("bearer")),
        "/session" => ("session", Some("bearer")),
        "/auth" => ("gateway", Some("bearer")),
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => ("operations", None),
        _ => return None,
    })
}

impl Modify for Groups {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some((tag, scheme)) = group(path) else {
                continue;
            };
            for (_, operation) in operations(item) {
                operation.tags = Some(vec![tag.to_owned()]);
                operation.security = scheme
                    .map(|scheme| vec![SecurityRequirement::new(scheme, Vec::<String>::new())]);
            }
        }
    }
}

/// Says in the document what the server does: a request body's fields beyond those
/// documented are ignored, not refused.
struct ExtraFieldsIgnored;

/// The request bodies, each read by serde, which skips fields it does not know.
const REQUEST_BODIES: [&str; 6] = [
    "CodeField",
    "SignedData",
    "EncryptedData",
    "PhoneCodeField",
    "BlockRequest",
    "RefreshRequest",
];

impl Modify for ExtraFieldsIgnored {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in REQUEST_BODIES {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(true)));
            }
        }
    }
}

/// The routes that also exist under `/apps/{app}/`: the same operations, for the app the
/// path names. One handler serves both forms of each, so the document states them once and
/// this copies them, with the `app` parameter and its 404.
struct AppPrefixed;

const APP_ROUTES: [&str; 4] = ["/openid", "/wechat/applet_login", "/session", "/auth"];

impl Modify for AppPrefixed {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let app = ParameterBuilder::new()
            .name("app")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "The app's name in wxlogin's configuration, or its appid.",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build();
        let unknown_app = <super::error::responses::UnknownAppErrors as IntoResponses>::responses();
        for route in APP_ROUTES {
            let Some(mut item) = openapi.paths.paths.get(route).cloned() else {
                continue;
            };
            item.parameters = Some(vec![RefOr::T(app.clone())]);
            for (_, operation) in operations(&mut item) {
                operation.operation_id = operation
                    .operation_id
                    .take()
                    .map(|id| format!("{id}_of_app"));
                operation.responses.responses.extend(unknown_app.clone());
            }
            openapi
                .paths
                .paths
                .insert(format!("/apps/{{app}}{route}"), item);
        }
    }
}

/// `/auth` is one handler for every method, and utoipa names each of its operations after
/// it; operation ids must be unique, so each but GET's gets its method added.
struct OneOperationIdEach;

impl Modify for OneOperationIdEach {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let get_id = item.get.as_ref().and_then(|get| get.operation_id.clone());
            for (method, operation) in operations(item) {
                if method != "get"
                    && operation.operation_id.is_some()
                    && operation.operation_id == get_id
                {
                    let id = operation.operation_id.take().unwrap_or_default();
                    operation.operation_id = Some(format!("{id}_{method}"));
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json", body = Object))
)]
async fn openapi_json(document: Bytes) -> Response {
    let mut response = document.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_route_is_in_a_group_with_a_declared_tag() {
        let openapi = ApiDoc::openapi();
        let declared: Vec<String> = openapi
            .tags
            .iter()
            .flatten()
            .map(|tag| tag.name.clone())
            .collect();
        for (path, item) in openapi.paths.paths {
            let mut item = item;
            for (method, operation) in operations(&mut item) {
                let tags = operation.tags.clone().unwrap_or_default();
                assert!(
                    tags.len() == 1 && declared.contains(&tags[0]),
                    "{method} {path} is in no group: tags {tags:?}"
                );
            }
        }
    }
}
