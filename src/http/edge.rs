//! What every request meets first once its route is known, in one layer: the refusal of an
//! ambiguous HTTP/1.1 request, and the request metrics (in flight now, then answered by
//! route and status). One hand-written service rather than `from_fn` middleware, which
//! clones its inner service and boxes a future for every request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{Request, Version, header};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::error::ApiError;
use crate::telemetry::metrics::{InFlight, Metrics};

#[derive(Clone)]
pub struct EdgeLayer(pub Metrics);

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    metrics: Metrics,
}

impl<S> Service<Request<Body>> for Edge<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answered<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // MatchedPath is a shared string: cloning it copies no bytes.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let in_flight = self.metrics.request_started();
        let future = if is_ambiguous(&request) {
            let refusal = ApiError::Ambiguous("Send exactly one Host header (RFC 9112 §3.2).");
            Inner::Refused {
                response: Some(refusal.into_response()),
            }
        } else {
            Inner::Serving {
                future: self.inner.call(request),
            }
        };
        Answered {
            future,
            route,
            metrics: self.metrics.clone(),
            _in_flight: in_flight,
        }
    }
}

/// An HTTP/1.1 request names its host exactly once (RFC 9112 §3.2): with none or two, which
/// site it was meant for depends on who reads it.
fn is_ambiguous(request: &Request<Body>) -> bool {
    request.version() == Version::HTTP_11 && {
        let mut hosts = request.headers().get_all(header::HOST).iter();
        !matches!((hosts.next(), hosts.next()), (Some(_), None))
    }
}

pin_project! {
    /// The answer of one request; counted when it is ready, and out of the in-flight gauge
    /// when dropped, also when the client went away before it.
    pub struct Answered<F> {
        #[pin]
        future: Inner<F>,
        route: Option<MatchedPath>,
        metrics: Metrics,
        _in_flight: InFlight,
    }
}

pin_project! {
    #[project = InnerProjection]
    enum Inner<F> {
        Serving { #[pin] future: F },
        Refused { response: Option<Response> },
    }
}

impl<F> Future for Answered<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.future.project() {
            InnerProjection::Serving { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
            InnerProjection::Refused { response } => response
                .take()
                .unwrap_or_else(|| ApiError::Internal.into_response()),
        };
        let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        this.metrics.request_finished(route, response.status());
        Poll::Ready(Ok(response))
    }
}
