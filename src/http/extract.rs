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
use crate::domain::JsCode;
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

/// The token in `Authorization: Bearer <token>` (RFC 6750 §2.1).
pub fn bearer_token(headers: &HeaderMap) -> Result<SessionToken, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(ApiError::MissingToken)?;
    if values.next().is_some() {
        // Which one a gateway checked and which one we would read need not be the same.
        return Err(ApiError::Ambiguous(
            "Send one Authorization header, not several.",
        ));
    }
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::MissingToken);
    }
    SessionToken::parse(token.trim()).ok_or(ApiError::InvalidToken)
}

/// The live session behind `token`: `invalid_token` when there is none. Every route that
/// takes a session token looks it up here.
pub async fn live_session(
    sessions: &SessionStore,
    token: &SessionToken,
) -> Result<Session, ApiError> {
    sessions.get(token).await?.ok_or(ApiError::InvalidToken)
}

/// The app a request is for: the one its `/apps/{app}/` prefix names (by name or appid),
/// or, without one, the default app. `404 unknown_app` when there is no such app.
pub struct TargetApp(pub Arc<App>);

impl<S> FromRequestParts<S> for TargetApp
where
    S: Send + Sync,
    Apps: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let apps = Apps::from_ref(state);
        match app_param(parts).await {
            Some(named) => apps
                .find(&named)
                .cloned()
                .map(Self)
                .ok_or(ApiError::UnknownApp { named: true }),
            None => apps
                .default_app()
                .cloned()
                .map(Self)
                .ok_or(ApiError::UnknownApp { named: false }),
        }
    }
}

/// The app an `/apps/{app}/…` route names (`404 unknown_app` if none of ours), or `None`
/// on a route without the prefix. A session route that names an app answers only that
/// app's sessions: what lets a gateway in front of one app's backend keep out the others.
pub struct NamedApp(pub Option<Arc<App>>);

impl NamedApp {
    /// The session, if it belongs to the app the route names (or the route names none).
    pub fn admits(&self, session: Session) -> Result<Session, ApiError> {
        match &self.0 {
            Some(app) if app.name().as_ref() != session.app() => Err(ApiError::InvalidToken),
            _ => Ok(session),
        }
    }
}

impl<S> FromRequestParts<S> for NamedApp
where
    S: Send + Sync,
    Apps: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Some(named) = app_param(parts).await else {
            return Ok(Self(None));
        };
        Apps::from_ref(state)
            .find(&named)
            .cloned()
            .map(|app| Self(Some(app)))
            .ok_or(ApiError::UnknownApp { named: true })
    }
}

/// The `{app}` of an `/apps/{app}/…` route, if the request came by one.
pub async fn app_param(parts: &mut Parts) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, &()).await.ok()?;
    params
        .iter()
        .find(|(name, _)| *name == "app")
        .map(|(_, value)| value.to_owned())
}

/// The live session behind the request's bearer token: 401 when there is none.
pub struct LiveSession(pub Session);

impl<S> FromRequestParts<S> for LiveSession
where
    S: Send + Sync,
    SessionStore: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        live_session(&SessionStore::from_ref(state), &token)
            .await
            .map(Self)
    }
}

/// The live session behind the request's bearer token, with the app it belongs to: what
/// the user-data routes act for (its secret, its access_token, its appid).
pub struct UserSession {
    pub session: Session,
    pub app: Arc<App>,
}

impl<S> FromRequestParts<S> for UserSession
where
    S: Send + Sync,
    SessionStore: FromRef<S>,
    Apps: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let LiveSession(session) = LiveSession::from_request_parts(parts, state).await?;
        // A session of an app this deployment no longer serves is of no use here.
        let app = Apps::from_ref(state)
            .named(session.app())
            .cloned()
            .ok_or(ApiError::InvalidToken)?;
        Ok(Self { session, app })
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
