//! The decision engine behind every API — gRPC ShouldRateLimit, ext_authz, HTTP `/json` and the
//! admin API's usage and reset. One request walks down the modules without climbing back:
//! validate ([`crate::request`]) → resolve effective limits ([`crate::effective`]) → plan
//! ([`crate::limiter::plan`]) → count ([`crate::store`]) → pair outcomes with their checks →
//! answer ([`crate::service::response`]) and count stats ([`crate::service::stats`]).

use crate::clock::SystemClock;
use crate::concurrency::claim;
use crate::concurrency::memory::MemorySlots;
use crate::concurrency::metrics::RoomMetrics;
use crate::concurrency::{SlotAction, SlotOutcome, SlotResult, WaitingRoom};
use crate::effective::{self, Pending};
use crate::limiter::once::{Kind, OnceCall};
use crate::limiter::plan::{self, Decided, LimitSource, Plan};
use crate::limiter::unit::Unit;
use crate::meter::Meter;
use crate::overrides::registry::Overrides;
use crate::overrides::{OverrideSet, Target};
use crate::request::{RequestBounds, ValidRequest};
use crate::rules::Rules;
use crate::service::error::ServiceError;
use crate::service::response::{respond, HeaderMode, ResponseOptions};
use crate::service::stats::{CallStats, Stats};
use crate::store::Store;
use arc_swap::ArcSwap;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Decides requests against the current rules, overrides and store.
pub struct RateLimiter<S> {
    /// The current rules; reload swaps the snapshot, in-flight requests keep theirs.
    rules: Arc<ArcSwap<Rules>>,
    /// Operators' runtime overrides (admin API), consulted after the rules.
    overrides: Arc<Overrides>,
    /// Where counters live.
    store: Arc<S>,
    /// Global shadow mode and headers.
    options: ResponseOptions,
    /// How big a request may be; checked before anything else looks at it.
    bounds: RequestBounds,
    /// Per-rule counters.
    stats: Stats,
    /// `sluice_request_duration_seconds`: the handle is cached (no registry lookup per call).
    latency: metrics::Histogram,
    /// upstream's call-level series (requests, response time, errors).
    calls: CallStats,
    /// Concurrency slots and their waiting room.
    room: Arc<WaitingRoom>,
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
    /// The figures come from the local fallback: the counter's Redis shard did not answer,
    /// so they are this replica's share, not the shared count.
    pub fallback: bool,
}

/// One descriptor's concurrency slots, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotsUsage {
    /// Slots of the key.
    pub max: u32,
    /// Slots held now (leases not yet released nor expired).
    pub in_flight: u32,
    /// The queue's room.
    pub queue: u32,
    /// Requests waiting on this replica.
    pub queued: usize,
    /// Waiters per `fair_by` value (`None`: without one), in serving order.
    pub flows: Vec<(Option<String>, usize)>,
    /// Until the earliest lease ends by expiry.
    pub next_expiry: Option<Duration>,
    /// The key's Redis shard did not answer: the local fallback's figures.
    pub fallback: bool,
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
    /// A limiter over `rules`, `overrides` and `store`, with the default request bounds.
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
            bounds: RequestBounds::default(),
            stats: Stats::new(options.near_limit_ratio, Meter::default()),
            latency: metrics::Histogram::noop(),
            calls: CallStats::default(),
            room: WaitingRoom::new(
                Arc::new(MemorySlots::new(Arc::new(SystemClock), 1_000_000)),
                Duration::from_secs(30),
                RoomMetrics::default(),
            ),
        }
    }

    /// Uses `room` (and its slot backend) for concurrency rules.
    pub fn with_room(mut self, room: Arc<WaitingRoom>) -> Self {
        self.room = room;
        self
    }

    /// The waiting room of concurrency rules.
    pub fn room(&self) -> &Arc<WaitingRoom> {
        &self.room
    }

    /// Records stats and latency in `meter` (a limiter built without one records nowhere).
    pub fn with_meter(mut self, meter: &Meter) -> Self {
        self.stats = Stats::new(self.options.near_limit_ratio, meter.clone());
        self.latency = meter.record(|| metrics::histogram!("sluice_request_duration_seconds"));
        self.calls = CallStats::new(meter);
        self
    }

    /// upstream's call-level series, for the gRPC adapter.
    pub fn calls(&self) -> &CallStats {
        &self.calls
    }

    /// Uses `bounds` for every request instead of the defaults.
    pub fn with_bounds(mut self, bounds: RequestBounds) -> Self {
        self.bounds = bounds;
        self
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

    /// The response options every answer uses.
    pub fn options(&self) -> ResponseOptions {
        self.options
    }

    /// The request bounds.
    pub fn bounds(&self) -> RequestBounds {
        self.bounds
    }

    /// Decides one request (gRPC ShouldRateLimit and `/json`; failures are counted).
    pub async fn should_rate_limit(
        &self,
        req: &RateLimitRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<RateLimitResponse, ServiceError> {
        self.run(req, deadline, self.options.headers, false)
            .await
            .map(|d| d.response)
            .inspect_err(|e| self.calls.failed(e))
    }

    /// Decides one request with the given rate-limit header mode, and reports, per
    /// descriptor, the hits counted on the limit that speaks for it (ext_authz's messages).
    pub async fn decide(
        &self,
        req: &RateLimitRequest,
        deadline: Option<tokio::time::Instant>,
        headers: HeaderMode,
    ) -> Result<Decision, ServiceError> {
        self.run(req, deadline, headers, true).await
    }

    /// The effective-limit inputs of one call: rules and overrides snapshots, and the time.
    fn snapshots(&self) -> (Arc<Rules>, Arc<OverrideSet>, u64) {
        let overrides = self.overrides.snapshot();
        let now_ms = if overrides.is_empty() {
            0
        } else {
            self.overrides.now_ms()
        };
        (self.rules.load_full(), overrides, now_ms)
    }

    /// Validate, resolve, plan, count, answer; `detail` fills [`Decision::used`].
    async fn run(
        &self,
        req: &RateLimitRequest,
        deadline: Option<tokio::time::Instant>,
        headers: HeaderMode,
        detail: bool,
    ) -> Result<Decision, ServiceError> {
        let started = Instant::now();
        let request = ValidRequest::new(req, &self.bounds)?;
        let (rules, overrides, now_ms) = self.snapshots();
        let once = effective::once(&rules, &request)?;
        let (effective, pending) = effective::resolve_all(&rules, &overrides, now_ms, &request);
        let plan = Plan::build(effective, &request);
        let outcomes = match &once {
            _ if plan.is_empty() => Vec::new(),
            None => self.store.apply(plan.ops(), deadline).await?,
            Some(once) => {
                let kind = Kind::of(plan.requested_ops());
                let gross = match kind {
                    Kind::Decision => Vec::new(),
                    Kind::Settlement => plan::gross(plan.requested_ops()),
                };
                let call = OnceCall {
                    once: *once,
                    kind,
                    gross: &gross,
                };
                let outcomes = self.store.apply_once(plan.ops(), &call, deadline).await?;
                self.calls.idempotent(outcomes.iter().any(|o| o.replayed));
                outcomes
            }
        };
        let mut decided = plan.zip(outcomes)?;
        let options = ResponseOptions {
            headers,
            ..self.options
        };
        if !pending.is_empty() {
            // ext_authz (`detail`) has no stream-done call to release a slot: it only looks.
            self.claim_slots(&mut decided, &pending, &request, deadline, !detail)
                .await?;
        }
        self.stats.record(&decided, &request);
        let response = respond(&decided, options);
        // Only ext_authz reads it: ShouldRateLimit skips the allocation.
        let used = if detail {
            decided.iter().map(used_by_binding).collect()
        } else {
            Vec::new()
        };
        self.latency.record(started.elapsed().as_secs_f64());
        Ok(Decision { response, used })
    }

    /// Takes, waits for or releases the concurrency slots `pending` descriptors claim, and adds
    /// the answers to `decided`. A request already refused by a rate limit takes no slot;
    /// without `take`, charges only look (a caller that never releases must not hold slots).
    async fn claim_slots<'a>(
        &self,
        decided: &mut [Decided<'a>],
        pending: &[Pending<'a>],
        request: &ValidRequest<'_>,
        deadline: Option<tokio::time::Instant>,
        take: bool,
    ) -> Result<(), ServiceError> {
        let mut claims = claim::claims(pending, request);
        if !take {
            for c in &mut claims {
                if c.op.action == SlotAction::Acquire {
                    c.op.action = SlotAction::Peek;
                }
            }
        }
        if self.options.shadow_mode {
            for c in &mut claims {
                c.shadow = true;
            }
        }
        let strict = ResponseOptions {
            shadow_mode: false,
            headers: HeaderMode::Off,
            ..self.options
        };
        let denied = respond(decided, strict).overall_code == Code::OverLimit as i32;
        let outcomes = self.room.admit(&claims, denied, deadline).await?;
        claim::merge(decided, pending, &claims, &outcomes, request);
        Ok(())
    }

    /// The current usage of one descriptor's limits, without charging anything.
    pub async fn usage(&self, target: &Target) -> Result<DescriptorUsage, ServiceError> {
        let req = check_request(target)?;
        let request = ValidRequest::new(&req, &self.bounds)?;
        let (rules, overrides, _) = self.snapshots();
        let now_ms = self.overrides.now_ms();
        let plan = Plan::build(
            effective::resolve(&rules, &overrides, now_ms, &request),
            &request,
        );
        let outcomes = self.store.apply(plan.ops(), None).await?;
        let decided = plan.zip(outcomes)?;
        Ok(match decided.first() {
            Some(Decided::Unlimited) => DescriptorUsage::Unlimited,
            Some(d @ Decided::Limited { .. }) => DescriptorUsage::Limited(
                d.checks()
                    .iter()
                    .map(|c| Usage {
                        name: c.limit.name.to_owned(),
                        requests_per_unit: c.limit.requests_per_unit,
                        unit: c.limit.unit,
                        used: c.outcome.used_after,
                        remaining: c.outcome.remaining,
                        reset_after: c.outcome.reset_after,
                        overridden: c.limit.source == LimitSource::Runtime,
                        fallback: c.outcome.fallback,
                    })
                    .collect(),
            ),
            _ => DescriptorUsage::NoLimit,
        })
    }

    /// The in-flight and queued requests of one descriptor's concurrency rule (`None` when
    /// its rule has none), without taking or freeing anything.
    pub async fn slots_usage(&self, target: &Target) -> Result<Option<SlotsUsage>, ServiceError> {
        let req = check_request(target)?;
        let request = ValidRequest::new(&req, &self.bounds)?;
        let (rules, overrides, now_ms) = self.snapshots();
        let (_, pending) = effective::resolve_all(&rules, &overrides, now_ms, &request);
        let Some(p) = pending.first() else {
            return Ok(None);
        };
        let claims = claim::claims(std::slice::from_ref(p), &request);
        let peek = self
            .room
            .backend()
            .run(std::slice::from_ref(&claims[0].op), None)
            .await?;
        let o = peek
            .first()
            .copied()
            .unwrap_or(SlotOutcome::new(SlotResult::Unchanged, 0));
        let (queued, flows) = self.room.queued(&p.key);
        Ok(Some(SlotsUsage {
            max: p.rule.max,
            in_flight: o.held,
            queue: p.rule.queue,
            queued,
            flows,
            next_expiry: o.next_expiry,
            fallback: o.fallback,
        }))
    }

    /// Deletes the counters of one descriptor's limits; how many limits were reset.
    pub async fn reset(&self, target: &Target) -> Result<usize, ServiceError> {
        let req = check_request(target)?;
        let request = ValidRequest::new(&req, &self.bounds)?;
        let rules = self.rules.load_full();
        let overrides = self.overrides.snapshot();
        let now_ms = self.overrides.now_ms();
        // The counters with and without the overrides: an override may use its own counter
        // (or none, when unlimited), and the rule's must start afresh too.
        let with = Plan::build(
            effective::resolve(&rules, &overrides, now_ms, &request),
            &request,
        );
        let none = OverrideSet::default();
        let without = Plan::build(
            effective::resolve(&rules, &none, now_ms, &request),
            &request,
        );
        let mut ops = with.ops().to_vec();
        for op in without.ops() {
            if !ops.iter().any(|o| o.key == op.key) {
                ops.push(op.clone());
            }
        }
        if !ops.is_empty() {
            self.store.reset(&ops).await?;
        }
        Ok(ops.len())
    }
}

/// Hits counted on the limit that speaks for a descriptor; for a denied request, what it
/// would have made (some algorithms do not count denied hits, so `used_after` would read
/// "10/10").
fn used_by_binding(d: &Decided<'_>) -> Option<u64> {
    d.binding().map(|c| {
        let o = &c.outcome;
        if o.allowed {
            o.used_after
        } else {
            o.used_before + u64::from(c.op.hits)
        }
    })
}

/// The request a descriptor target stands for: one descriptor, hits 0 (a check).
fn check_request(target: &Target) -> Result<RateLimitRequest, ServiceError> {
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
    Ok(RateLimitRequest {
        domain: domain.clone(),
        descriptors: vec![descriptor],
        hits_addend: 0,
    })
}
