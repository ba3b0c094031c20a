//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: validate, plan, count, answer.

use crate::limiter::plan::Plan;
use crate::rules::Rules;
use crate::service::error::ServiceError;
use crate::service::response::{respond, ResponseOptions};
use crate::service::validate::validate;
use crate::store::Store;
use arc_swap::ArcSwap;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use std::sync::Arc;

/// The decision engine behind every API (gRPC now; HTTP `/json` and ext_authz later).
pub struct RateLimiter<S> {
    /// The current rules; reload swaps the snapshot, in-flight requests keep theirs.
    rules: Arc<ArcSwap<Rules>>,
    /// Where counters live.
    store: Arc<S>,
    /// Global shadow mode and headers.
    options: ResponseOptions,
}

impl<S: Store> RateLimiter<S> {
    /// A limiter over `rules` and `store`.
    pub fn new(rules: Arc<ArcSwap<Rules>>, store: Arc<S>, options: ResponseOptions) -> Self {
        RateLimiter {
            rules,
            store,
            options,
        }
    }

    /// Decides one request.
    pub async fn should_rate_limit(
        &self,
        req: &RateLimitRequest,
    ) -> Result<RateLimitResponse, ServiceError> {
        validate(req)?;
        let rules = self.rules.load_full();
        let plan = Plan::build(&rules, &req.domain, &req.descriptors, req.hits_addend);
        let outcomes = if plan.ops.is_empty() {
            Vec::new()
        } else {
            self.store.apply(&plan.ops).await?
        };
        Ok(respond(&plan, &outcomes, self.options))
    }
}

/// The tonic service wrapping a [`RateLimiter`].
pub struct RlsService<S>(pub Arc<RateLimiter<S>>);

#[tonic::async_trait]
impl<S: Store> RateLimitService for RlsService<S> {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let req = request.into_inner();
        match self.0.should_rate_limit(&req).await {
            Ok(resp) => Ok(tonic::Response::new(resp)),
            Err(e) => {
                tracing::debug!(domain = %req.domain, error = %e, "ShouldRateLimit failed");
                Err(e.into())
            }
        }
    }
}
