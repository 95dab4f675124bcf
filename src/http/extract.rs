//! Extractors that parse requests at the edge and reject in our error format.

use axum::body::Bytes;
use std::sync::Arc;

use axum::extract::{
    Form, FromRef, FromRequest, FromRequestParts, Json, Query, RawPathParams, Request,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::apps::{App, Apps};
use crate::domain::{AppKind, JsCode};
use crate::session::{Session, SessionStore, SessionToken};

const LOGIN_SHAPE: &str =
    r#"the code from wx.login() as {"code": "…"}, a form field code=…, or ?code=… on GET"#;

/// The `wx.login()` code of a login request, from `?code=` on GET, or from a JSON or
/// form body on POST: the three shapes the popular tutorials use.
pub struct LoginCode(pub JsCode);

/// The body of a login request. `code` is optional to serde only, so that a missing one
/// is answered `missing_code` rather than a parser's complaint. Other fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CodeField {
    /// The code from `wx.login()`: single-use, valid for five minutes.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 128, pattern = r"^[!-~]+$")]
    code: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for LoginCode {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let shape = |err: ApiError| err.expecting(LOGIN_SHAPE);
        let CodeField { code } = if req.method() == Method::GET {
            Query::<CodeField>::try_from_uri(req.uri())
                .map_err(|e| shape(e.into()))?
                .0
        } else if is_form(&req) {
            Form::<CodeField>::from_request(req, state)
                .await
                .map_err(|e| shape(e.into()))?
                .0
        } else {
            json::<CodeField, S>(req, state).await.map_err(shape)?
        };
        Ok(Self(JsCode::parse(code.as_deref())?))
    }
}

fn is_form(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The session token from `Authorization: Bearer <token>`, well-formed but not yet looked up.
pub struct BearerToken(pub SessionToken);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        bearer_token(&parts.headers).map(Self)
    }
}

/// The credential in `Authorization: Bearer <credential>` (RFC 6750 §2.1), unparsed: the one
/// reader of that header, for session tokens and the admin token alike.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(ApiError::MissingToken)?;
    if values.next().is_some() {
        // Which one a gateway checked and which one we would read need not be the same.
        return Err(ApiError::Ambiguous(
            "Send one Authorization header, not several.",
        ));
    }
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, credential) = value.trim().split_once(' ').ok_or(ApiError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingToken);
    }
    Ok(credential.trim())
}

/// The session token in `Authorization: Bearer <token>`.
pub fn bearer_token(headers: &HeaderMap) -> Result<SessionToken, ApiError> {
    SessionToken::parse(bearer(headers)?).ok_or(ApiError::InvalidToken)
}

/// The app an `/apps/{app}/…` route names, by name or appid (`404 unknown_app` if none of
/// ours), or `None` on a route without the prefix. Read from the route's own parameters,
/// once per request.
async fn named_app(parts: &mut Parts, apps: &Apps) -> Result<Option<Arc<App>>, ApiError> {
    // Reading the route's parameters borrows them from the request: nothing is copied.
    let Ok(params) = RawPathParams::from_request_parts(parts, &()).await else {
        return Ok(None);
    };
    let Some((_, named)) = params.iter().find(|(name, _)| *name == "app") else {
        return Ok(None);
    };
    apps.find(named)
        .cloned()
        .map(Some)
        .ok_or(ApiError::UnknownApp { named: true })
}

/// The app a request is for: the one its `/apps/{app}/` prefix names (by name or appid),
/// or, without one, the default app. `404 unknown_app` when there is no such app.
pub async fn target_app(parts: &mut Parts, apps: &Apps) -> Result<Arc<App>, ApiError> {
    match named_app(parts, apps).await? {
        Some(app) => Ok(app),
        None => apps
            .default_app()
            .cloned()
            .ok_or(ApiError::UnknownApp { named: false }),
    }
}

/// A live session, admitted for the route's app, and the app it belongs to: what
/// `/session`, `/auth` and the user-data routes act for. A session route that names an app
/// (`/apps/{app}/…`) answers only that app's sessions: what lets a gateway in front of one
/// app's backend keep out the others. The app is resolved once: the route's, or else the
/// session's.
pub struct UserSession {
    pub session: Session,
    pub app: Arc<App>,
}

impl UserSession {
    /// This session, if it is a mini-program's: only a mini-program's login gives a
    /// session_key, and only a mini-program has the user data WeChat seals with it. Another
    /// kind's session is `400 wrong_app_kind`.
    pub fn of_mini_program(self) -> Result<Self, ApiError> {
        match self.app.kind() {
            AppKind::MiniProgram => Ok(self),
            kind => Err(ApiError::needs_mini_program(self.app.name(), kind)),
        }
    }

    /// The session behind the token that `token` reads from the request, for the app the
    /// route names: an unknown app is 404 before the token is read, an unknown token 401.
    pub async fn find(
        parts: &mut Parts,
        sessions: &SessionStore,
        apps: &Apps,
        token: impl FnOnce(&Parts) -> Result<SessionToken, ApiError>,
    ) -> Result<Self, ApiError> {
        let named = named_app(parts, apps).await?;
        let token = token(parts)?;
        let session = sessions.get(&token).await?.ok_or(ApiError::InvalidToken)?;
        let app = match named {
            Some(app) if app.name() == session.app() => app,
            // Another app's session is not this route's to answer.
            Some(_) => return Err(ApiError::InvalidToken),
            // A session of an app this deployment no longer serves is of no use here.
            None => apps
                .named(session.app())
                .cloned()
                .ok_or(ApiError::InvalidToken)?,
        };
        Ok(Self { session, app })
    }
}

impl<S> FromRequestParts<S> for UserSession
where
    S: Send + Sync,
    SessionStore: FromRef<S>,
    Apps: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (sessions, apps) = (SessionStore::from_ref(state), Apps::from_ref(state));
        Self::find(parts, &sessions, &apps, |parts| {
            bearer_token(&parts.headers)
        })
        .await
    }
}

/// The app an `/apps/{app}/…` route names, if any, for a route that needs no session of it
/// (a logout checks the session itself, the admin and backend routes their credentials).
pub struct NamedApp(pub Option<Arc<App>>);

impl NamedApp {
    /// The app of a route whose path always names one (`{app}`).
    pub fn required(self) -> Result<Arc<App>, ApiError> {
        self.0.ok_or(ApiError::UnknownApp { named: true })
    }
}

impl<S> FromRequestParts<S> for NamedApp
where
    S: Send + Sync,
    Apps: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        named_app(parts, &Apps::from_ref(state)).await.map(Self)
    }
}

/// A JSON request body whose shape the client is told about when it sends another.
pub trait JsonShape: DeserializeOwned {
    /// Completes "Send …" in the `invalid_body` message.
    const EXPECTED: &'static str;
}

/// A JSON body (`Content-Type: application/json`, else 415) of the shape `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: JsonShape> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json(req, state)
            .await
            .map(Self)
            .map_err(|err| err.expecting(T::EXPECTED))
    }
}

/// A JSON body of the shape `T`: `Content-Type: application/json` (else 415), and valid
/// UTF-8 throughout (RFC 8259 §8.1), not only in the fields `T` reads: serde skips the
/// others without looking at their bytes.
async fn json<T: DeserializeOwned, S: Send + Sync>(req: Request, state: &S) -> Result<T, ApiError> {
    if !is_json(&req) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = Bytes::from_request(req, state).await?;
    if std::str::from_utf8(&body).is_err() {
        return Err(ApiError::MalformedJson("the body is not UTF-8".to_owned()));
    }
    Ok(Json::<T>::from_bytes(&body)?.0)
}

/// `application/json`, or a `+json` type, as axum's `Json` accepts.
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| {
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn block_on<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    fn code_of(request: Request) -> Result<String, ApiError> {
        block_on(LoginCode::from_request(request, &()))
            .map(|LoginCode(code)| code.as_ref().to_owned())
    }

    fn request(
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Option<Request> {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        builder.body(Body::from(body)).ok()
    }

    fn content_type() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some("application/json".to_owned())),
            Just(Some("application/x-www-form-urlencoded".to_owned())),
            Just(Some("application/json; charset=utf-8".to_owned())),
            "[ -~]{0,40}".prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any body of any type, and any query string: a code, or an error in our format.
        #[test]
        fn any_login_request_gives_a_code_or_an_error(
            post in any::<bool>(),
            query in "[ -~]{0,60}",
            content_type in content_type(),
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..80),
                crate::wechat::arbitrary_answers::value().prop_map(|v| v.to_string().into_bytes()),
            ],
        ) {
            let method = if post { Method::POST } else { Method::GET };
            let uri = format!("/openid?{}", query.replace(' ', "+").replace('#', "%23"));
            if let Some(request) = request(method, &uri, content_type.as_deref(), body)
                && let Ok(code) = code_of(request)
            {
                prop_assert!(JsCode::parse(Some(&code)).is_ok());
            }
        }

        /// A valid code comes out as it went in, in each of the three shapes.
        #[test]
        fn a_valid_code_reads_back_from_json_a_form_and_the_query(code in "[!-~]{1,128}") {
            let json = serde_json::json!({ "code": code, "extra": [1, 2] }).to_string();
            let encoded: String = form_urlencoded::byte_serialize(code.as_bytes()).collect();
            for request in [
                request(Method::POST, "/openid", Some("application/json"), json.into_bytes()),
                request(Method::POST, "/openid", Some("application/x-www-form-urlencoded"), format!("code={encoded}").into_bytes()),
                request(Method::GET, &format!("/openid?code={encoded}"), None, Vec::new()),
            ] {
                let read = code_of(request.expect("a request")).expect("a code");
                prop_assert_eq!(&read, &code);
            }
        }

        /// Any Authorization header: a well-formed token or a 401 kind; never a panic.
        #[test]
        fn any_authorization_header_gives_a_token_or_an_error(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 0..3),
        ) {
            let mut headers = HeaderMap::new();
            for value in &values {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    headers.append(header::AUTHORIZATION, value);
                }
            }
            if let Ok(token) = bearer_token(&headers) {
                prop_assert!(SessionToken::parse(token.expose()).is_some());
            }
        }

        #[test]
        fn a_bearer_token_in_any_case_of_the_scheme_reads_back(
            bytes in any::<[u8; 32]>(),
            scheme in "[bB][eE][aA][rR][eE][rR]",
            spaces in " {0,3}",
        ) {
            use base64::Engine;
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let mut headers = HeaderMap::new();
            let value = format!("{spaces}{scheme} {token}{spaces}");
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&value).expect("a header"));
            let read = bearer_token(&headers).expect("a token");
            prop_assert_eq!(read.expose(), token.as_str());
        }
    }
}
