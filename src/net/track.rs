//! Request tracking: each request marks its connection's [`Activity`] busy from the moment it
//! reaches a service until its response body is dropped (fully sent, or the stream is over),
//! so a streaming response (a health `Watch`) is never cut by the idle timeout, and PINGs never
//! keep an idle connection alive.
//!
//! gRPC: [`Tracked`] wraps each tonic service and reads the connection's [`Tracker`] from the
//! request extensions (tonic puts [`Guarded`]'s connect info there). HTTP: [`axum_track`] is
//! a middleware reading it from axum's `ConnectInfo`.

use super::{Activity, Guarded, GuardedListener, RequestGuard};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::{http, Bytes, Service, StdError};
use tonic::server::NamedService;

/// A connection's activity, as request extensions carry it.
#[derive(Debug, Clone)]
pub struct Tracker(pub Arc<Activity>);

impl<IO> tonic::transport::server::Connected for Guarded<IO> {
    type ConnectInfo = Tracker;
    fn connect_info(&self) -> Tracker {
        Tracker(self.activity())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>>
    for Tracker
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener>) -> Tracker {
        Tracker(stream.io().activity())
    }
}

/// A response body that keeps its request in flight until it is dropped.
pub struct GuardBody<B> {
    /// The real body.
    inner: B,
    /// Ends the request when the body goes away.
    _guard: Option<RequestGuard>,
}

impl<B> http_body::Body for GuardBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A tonic service whose requests are tracked on their connection.
#[derive(Clone)]
pub struct Tracked<S>(pub S);

impl<S: NamedService> NamedService for Tracked<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Tracked<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
    B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let guard = req.extensions().get::<Tracker>().map(|t| t.0.begin());
        let response = self.0.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| {
                Body::new(GuardBody {
                    inner,
                    _guard: guard,
                })
            }))
        })
    }
}

/// axum middleware: tracks the request on its connection (see the module docs).
pub async fn axum_track(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let guard = req
        .extensions()
        .get::<axum::extract::ConnectInfo<Tracker>>()
        .map(|t| t.0 .0.begin());
    next.run(req).await.map(|inner| {
        axum::body::Body::new(GuardBody {
            inner,
            _guard: guard,
        })
    })
}
