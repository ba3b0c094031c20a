//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: the gRPC adapter over the
//! decision engine ([`crate::engine`]): the caller's deadline in, the answer or a status out.

pub use crate::engine::{Decision, DescriptorUsage, RateLimiter, Usage};
use crate::service::error::ServiceError;
use crate::store::Store;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The tonic service wrapping a [`RateLimiter`].
pub struct RlsService<S> {
    /// The decision engine.
    limiter: Arc<RateLimiter<S>>,
    /// `Some` while rules come from xDS: `false` until the first config is applied, and until
    /// then every call fails with [`ServiceError::NoConfig`] (upstream's answer when started
    /// with `FORCE_START_WITHOUT_INITIAL_CONFIG`). `None`: rules are always loaded (files).
    loaded: Option<tokio::sync::watch::Receiver<bool>>,
    /// Set once `loaded` has been seen `true` (it never turns back): later calls skip the
    /// watch's lock.
    ready: AtomicBool,
}

impl<S> RlsService<S> {
    /// Serves `limiter`, rules always loaded.
    pub fn new(limiter: Arc<RateLimiter<S>>) -> RlsService<S> {
        RlsService {
            limiter,
            loaded: None,
            ready: AtomicBool::new(true),
        }
    }

    /// Answers [`ServiceError::NoConfig`] until `loaded` turns `true` (xDS).
    pub fn until_loaded(mut self, loaded: tokio::sync::watch::Receiver<bool>) -> RlsService<S> {
        self.ready = AtomicBool::new(*loaded.borrow());
        self.loaded = Some(loaded);
        self
    }

    /// The decision engine (shared with ext_authz).
    pub fn limiter(&self) -> &Arc<RateLimiter<S>> {
        &self.limiter
    }

    /// Whether rules have been loaded.
    fn config_loaded(&self) -> bool {
        if self.ready.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.loaded.as_ref().is_none_or(|l| *l.borrow());
        if now {
            self.ready.store(true, Ordering::Relaxed);
        }
        now
    }
}

#[tonic::async_trait]
impl<S: Store> RateLimitService for RlsService<S> {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        use tracing::Instrument;
        // upstream's interceptor: counted once decoded, timed until answered (errors too).
        let calls = self.limiter.calls();
        calls.requested();
        let started = std::time::Instant::now();
        if !self.config_loaded() {
            // Upstream counts it as a service error.
            let e = ServiceError::NoConfig;
            calls.failed(&e);
            calls.responded(started.elapsed());
            return Err(e.into());
        }
        let deadline = grpc_timeout(request.metadata()).map(|t| tokio::time::Instant::now() + t);
        let req = request.into_inner();
        // Debug level: free unless asked for (`--log-level sluice=debug`, or OTLP export).
        let span = tracing::debug_span!(
            "should_rate_limit",
            domain = %req.domain,
            descriptors = req.descriptors.len()
        );
        let result = self
            .limiter
            .should_rate_limit(&req, deadline)
            .instrument(span)
            .await;
        calls.responded(started.elapsed());
        match result {
            Ok(resp) => Ok(tonic::Response::new(resp)),
            Err(e) => {
                tracing::debug!(domain = %req.domain, error = %e, "ShouldRateLimit failed");
                Err(e.into())
            }
        }
    }
}

/// The caller's `grpc-timeout` (e.g. `20m` from Envoy's 20 ms filter timeout), if valid.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    use std::time::Duration;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::grpc_timeout;
    use std::time::Duration;

    fn parse(v: &str) -> Option<Duration> {
        let mut m = tonic::metadata::MetadataMap::new();
        m.insert("grpc-timeout", v.parse().expect("ascii"));
        grpc_timeout(&m)
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse("20m"), Some(Duration::from_millis(20)));
        assert_eq!(parse("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("500u"), Some(Duration::from_micros(500)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse("20x"), None);
        assert_eq!(parse("m"), None);
        assert_eq!(parse("123456789m"), None, "at most 8 digits");
    }
}
