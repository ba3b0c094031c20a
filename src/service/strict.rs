//! The gRPC servers of the decision methods (ShouldRateLimit, ext_authz Check) with sluice's
//! wire rules instead of the generated servers' defaults:
//!
//! - bytes that are not the request message → `INVALID_ARGUMENT` ([`StrictCodec`]), as are
//!   a call without any message;
//! - a message above `max_request_bytes` → `RESOURCE_EXHAUSTED` (gRPC's convention; tonic's
//!   own check says `OUT_OF_RANGE`, so its answer is rewritten here). tonic rejects on the
//!   declared length, before buffering the message.
//!
//! Other methods of these services are `UNIMPLEMENTED`, as in the generated servers.

use crate::service::codec::StrictCodec;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};

/// One unary method: its service and path, message types, and handler.
pub trait UnaryMethod: Send + Sync + 'static {
    /// The gRPC service name (for routing).
    const SERVICE: &'static str;
    /// `/<service>/<method>`.
    const PATH: &'static str;
    /// The request message.
    type Req: prost::Message + Default + Send + 'static;
    /// The response message.
    type Resp: prost::Message + Send + 'static;
    /// Handles one call.
    fn call(
        &self,
        request: tonic::Request<Self::Req>,
    ) -> BoxFuture<tonic::Response<Self::Resp>, Status>;
}

/// `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` served by `T`.
pub struct ShouldRateLimit<T>(pub Arc<T>);

impl<T: RateLimitService> UnaryMethod for ShouldRateLimit<T> {
    const SERVICE: &'static str = "envoy.service.ratelimit.v3.RateLimitService";
    const PATH: &'static str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";
    type Req = RateLimitRequest;
    type Resp = RateLimitResponse;
    fn call(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> BoxFuture<tonic::Response<RateLimitResponse>, Status> {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.should_rate_limit(request).await })
    }
}

/// `envoy.service.auth.v3.Authorization/Check` served by `T`.
pub struct Check<T>(pub Arc<T>);

impl<T: Authorization> UnaryMethod for Check<T> {
    const SERVICE: &'static str = "envoy.service.auth.v3.Authorization";
    const PATH: &'static str = "/envoy.service.auth.v3.Authorization/Check";
    type Req = CheckRequest;
    type Resp = CheckResponse;
    fn call(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> BoxFuture<tonic::Response<CheckResponse>, Status> {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.check(request).await })
    }
}

/// A gRPC service with the single method `M`, enforcing `max_request_bytes`.
pub struct StrictServer<M> {
    /// The method's handler.
    method: Arc<M>,
    /// `max_request_bytes`: larger requests are `RESOURCE_EXHAUSTED`.
    max_request_bytes: usize,
}

impl<M> StrictServer<M> {
    /// Serves `method`, refusing requests above `max_request_bytes`.
    pub fn new(method: M, max_request_bytes: usize) -> Self {
        StrictServer {
            method: Arc::new(method),
            max_request_bytes,
        }
    }
}

impl<M> Clone for StrictServer<M> {
    fn clone(&self) -> Self {
        StrictServer {
            method: Arc::clone(&self.method),
            max_request_bytes: self.max_request_bytes,
        }
    }
}

impl<M: UnaryMethod> NamedService for StrictServer<M> {
    const NAME: &'static str = M::SERVICE;
}

/// Adapts a [`UnaryMethod`] to tonic's [`UnaryService`].
struct Adapter<M>(Arc<M>);

impl<M: UnaryMethod> UnaryService<M::Req> for Adapter<M> {
    type Response = M::Resp;
    type Future = BoxFuture<tonic::Response<M::Resp>, Status>;
    fn call(&mut self, request: tonic::Request<M::Req>) -> Self::Future {
        self.0.call(request)
    }
}

impl<M, B> tonic::codegen::Service<http::Request<B>> for StrictServer<M>
where
    M: UnaryMethod,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != M::PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = Arc::clone(&self.method);
        let max = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = Grpc::new(StrictCodec::<M::Resp, M::Req>::default())
                .apply_max_message_size_config(Some(max), None);
            let response = grpc.unary(Adapter(method), req).await;
            Ok(remap(response, max))
        })
    }
}

/// Rewrites tonic's own answers for a request that never reached the handler: too large
/// (`OUT_OF_RANGE` → `RESOURCE_EXHAUSTED`) and no message at all (`INTERNAL` →
/// `INVALID_ARGUMENT`). These are trailers-only responses: the status is in the headers.
fn remap(response: http::Response<Body>, max: usize) -> http::Response<Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    match status.code() {
        Code::OutOfRange
            if status
                .message()
                .starts_with("Error, decoded message length too large") =>
        {
            Status::resource_exhausted(format!(
                "request larger than max_request_bytes ({max} bytes)"
            ))
            .into_http()
        }
        Code::Internal if status.message() == "Missing request message." => {
            Status::invalid_argument("malformed request: no request message").into_http()
        }
        _ => response,
    }
}
