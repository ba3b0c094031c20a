//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: validate, plan, count, answer.

use crate::limiter::plan::{LimitRef, Plan, Planned};
use crate::overrides::registry::Overrides;
use crate::overrides::Target;
use crate::rules::unit::Unit;
use crate::rules::Rules;
use crate::service::error::ServiceError;
use crate::service::response::{binding, respond, ResponseOptions};
use crate::service::stats::Stats;
use crate::service::validate::validate;
use crate::store::Store;
use arc_swap::ArcSwap;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The decision engine behind every API: gRPC ShouldRateLimit, HTTP `/json` and the admin API.
pub struct RateLimiter<S> {
    /// The current rules; reload swaps the snapshot, in-flight requests keep theirs.
    rules: Arc<ArcSwap<Rules>>,
    /// Operators' runtime overrides (admin API), consulted after the rules.
    overrides: Arc<Overrides>,
    /// Where counters live.
    store: Arc<S>,
    /// Global shadow mode and headers.
    options: ResponseOptions,
    /// Per-rule counters.
    stats: Stats,
    /// `sluice_request_duration_seconds`: the handle is cached (no registry lookup per call).
    latency: metrics::Histogram,
}

/// A decided request.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The answer.
    pub response: RateLimitResponse,
    /// Per descriptor: hits counted on the limit its status reports, including a denied
    /// request's own (`None` without a limit); empty for plain ShouldRateLimit.
    pub used: Vec<Option<u64>>,
}

/// One limit's state for a descriptor, as the admin API's usage read reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// `rate_limit.name`, or "".
    pub name: String,
    /// The limit in force (a runtime override's, if one applies).
    pub requests_per_unit: u32,
    /// Its unit.
    pub unit: Unit,
    /// Hits counted now.
    pub used: u64,
    /// Hits still available.
    pub remaining: u32,
    /// Until the counter is back to its full limit.
    pub reset_after: Duration,
    /// Whether a runtime override set this limit.
    pub overridden: bool,
}

/// What applies to one descriptor, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptorUsage {
    /// No rule limits it (unknown domain, no match, whitelisted).
    NoLimit,
    /// `unlimited: true` (or an unlimited override).
    Unlimited,
    /// Its limits, in rule order.
    Limited(Vec<Usage>),
}

impl<S: Store> RateLimiter<S> {
    /// A limiter over `rules`, `overrides` and `store`.
    pub fn new(
        rules: Arc<ArcSwap<Rules>>,
        overrides: Arc<Overrides>,
        store: Arc<S>,
        options: ResponseOptions,
    ) -> Self {
        RateLimiter {
            rules,
            overrides,
            store,
            options,
            stats: Stats::new(options.near_limit_ratio),
            latency: metrics::histogram!("sluice_request_duration_seconds"),
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &Arc<ArcSwap<Rules>> {
        &self.rules
    }

    /// The runtime overrides.
    pub fn overrides(&self) -> &Arc<Overrides> {
        &self.overrides
    }

    /// The counter store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Decides one request.
    pub async fn should_rate_limit(
        &self,
        req: &RateLimitRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<RateLimitResponse, ServiceError> {
        self.run(req, deadline, self.options.headers, false)
            .await
            .map(|d| d.response)
    }

    /// The response options every answer uses.
    pub fn options(&self) -> ResponseOptions {
        self.options
    }

    /// Decides one request with the given rate-limit header mode, and reports, per
    /// descriptor, the hits counted on the limit that speaks for it (ext_authz's messages).
    pub async fn decide(
        &self,
        req: &RateLimitRequest,
        deadline: Option<tokio::time::Instant>,
        headers: crate::service::response::HeaderMode,
    ) -> Result<Decision, ServiceError> {
        self.run(req, deadline, headers, true).await
    }

    /// Validate, plan, count, answer; `detail` fills [`Decision::used`].
    async fn run(
        &self,
        req: &RateLimitRequest,
        deadline: Option<tokio::time::Instant>,
        headers: crate::service::response::HeaderMode,
        detail: bool,
    ) -> Result<Decision, ServiceError> {
        let started = Instant::now();
        validate(req)?;
        let rules = self.rules.load_full();
        let overrides = self.overrides.snapshot();
        let now_ms = if overrides.is_empty() {
            0
        } else {
            self.overrides.now_ms()
        };
        let plan = Plan::build(
            &rules,
            &overrides,
            now_ms,
            &req.domain,
            &req.descriptors,
            req.hits_addend,
        );
        let outcomes = if plan.ops.is_empty() {
            Vec::new()
        } else {
            self.store.apply(&plan.ops, deadline).await?
        };
        self.stats.record(&plan, &outcomes, &req.descriptors);
        let options = ResponseOptions {
            headers,
            ..self.options
        };
        let response = respond(&plan, &outcomes, options);
        // Only ext_authz reads it: ShouldRateLimit skips the allocation.
        let used = if detail {
            plan.descriptors
                .iter()
                .map(|p| {
                    binding(p, &outcomes).map(|i| {
                        let o = &outcomes[i];
                        // A denied request: what it would have made (some algorithms do not
                        // count denied hits, so `used_after` would read "10/10").
                        if o.allowed {
                            o.used_after
                        } else {
                            o.used_before + u64::from(plan.ops[i].hits)
                        }
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        self.latency.record(started.elapsed().as_secs_f64());
        Ok(Decision { response, used })
    }

    /// The current usage of one descriptor's limits, without charging anything.
    pub async fn usage(&self, target: &Target) -> Result<DescriptorUsage, ServiceError> {
        let (domain, descriptor) = descriptor_of(target)?;
        let rules = self.rules.load_full();
        let overrides = self.overrides.snapshot();
        let now_ms = self.overrides.now_ms();
        let descriptors = [descriptor];
        let plan = Plan::build(&rules, &overrides, now_ms, domain, &descriptors, 0);
        let ops = match plan.descriptors.first() {
            Some(Planned::Limited { ops, .. }) => ops.clone(),
            Some(Planned::Unlimited) => return Ok(DescriptorUsage::Unlimited),
            _ => return Ok(DescriptorUsage::NoLimit),
        };
        let outcomes = self.store.apply(&plan.ops, None).await?;
        Ok(DescriptorUsage::Limited(
            ops.map(|i| {
                let (limit, o) = (&plan.limits[i], &outcomes[i]);
                Usage {
                    name: limit.name().to_owned(),
                    requests_per_unit: limit.requests_per_unit(),
                    unit: limit.unit(),
                    used: o.used_after,
                    remaining: o.remaining,
                    reset_after: o.reset_after,
                    overridden: matches!(limit, LimitRef::Runtime { .. }),
                }
            })
            .collect(),
        ))
    }

    /// Deletes the counters of one descriptor's limits; how many limits were reset.
    pub async fn reset(&self, target: &Target) -> Result<usize, ServiceError> {
        let (domain, descriptor) = descriptor_of(target)?;
        let rules = self.rules.load_full();
        let overrides = self.overrides.snapshot();
        let now_ms = self.overrides.now_ms();
        let descriptors = [descriptor];
        // The counters with and without the overrides: an override may use its own counter
        // (or none, when unlimited), and the rule's must start afresh too.
        let with = Plan::build(&rules, &overrides, now_ms, domain, &descriptors, 0);
        let none = crate::overrides::OverrideSet::default();
        let without = Plan::build(&rules, &none, now_ms, domain, &descriptors, 0);
        let mut ops = with.ops;
        for op in without.ops {
            if !ops.iter().any(|o| o.key == op.key) {
                ops.push(op);
            }
        }
        if !ops.is_empty() {
            self.store.reset(&ops).await?;
        }
        Ok(ops.len())
    }
}

/// The request descriptor a descriptor target stands for (hits 0: a check).
fn descriptor_of(target: &Target) -> Result<(&str, RateLimitDescriptor), ServiceError> {
    let Target::Descriptor { domain, entries } = target else {
        return Err(ServiceError::invalid(
            "rule",
            "usage and reset need one descriptor: give domain + descriptor with every value",
        ));
    };
    let descriptor = RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(key, value)| Entry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        hits_addend: Some(envoy_types::pb::google::protobuf::UInt64Value { value: 0 }),
        ..Default::default()
    };
    Ok((domain, descriptor))
}

/// The tonic service wrapping a [`RateLimiter`].
pub struct RlsService<S>(pub Arc<RateLimiter<S>>);

#[tonic::async_trait]
impl<S: Store> RateLimitService for RlsService<S> {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        use tracing::Instrument;
        let deadline = grpc_timeout(request.metadata()).map(|t| tokio::time::Instant::now() + t);
        let req = request.into_inner();
        // Debug level: free unless asked for (`--log-level sluice=debug`, or OTLP export).
        let span = tracing::debug_span!(
            "should_rate_limit",
            domain = %req.domain,
            descriptors = req.descriptors.len()
        );
        match self
            .0
            .should_rate_limit(&req, deadline)
            .instrument(span)
            .await
        {
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
