//! From a request to the ops a store must run: rule lookup, `replaces`, limit overrides, hits.
//!
//! A [`Plan`] keeps, for every descriptor of the request and in request order, what applies to
//! it; the ops of all descriptors sit in one flat list so the store sees the whole request at
//! once (one round trip per Redis shard). Ops of one descriptor are contiguous.

use crate::limiter::Op;
use crate::rules::model::{Limit, Node, Policy};
use crate::rules::unit::Unit;
use crate::rules::{push_entry, Lookup, Rules};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use std::ops::Range;

/// The limit an op enforces: a rule's, or a request's override.
#[derive(Debug, Clone, Copy)]
pub enum LimitRef<'a> {
    /// A limit from the rule files.
    Rule(&'a Limit),
    /// `descriptor.limit` from the request: replaces the rule, has no name.
    Override { requests_per_unit: u32, unit: Unit },
}

impl LimitRef<'_> {
    /// Hits per unit.
    pub fn requests_per_unit(&self) -> u32 {
        match self {
            LimitRef::Rule(l) => l.requests_per_unit,
            LimitRef::Override {
                requests_per_unit, ..
            } => *requests_per_unit,
        }
    }

    /// The unit.
    pub fn unit(&self) -> Unit {
        match self {
            LimitRef::Rule(l) => l.unit,
            LimitRef::Override { unit, .. } => *unit,
        }
    }

    /// `rate_limit.name`, or "" (as the proto's `current_limit.name`).
    pub fn name(&self) -> &str {
        match self {
            LimitRef::Rule(l) => l.name.as_deref().unwrap_or(""),
            LimitRef::Override { .. } => "",
        }
    }
}

/// What applies to one descriptor of the request.
#[derive(Debug, Clone)]
pub enum Planned<'a> {
    /// Unknown domain, no matching rule, a whitelist entry, or every limit replaced.
    NoLimit,
    /// `unlimited: true`.
    Unlimited,
    /// Limits to enforce: `plan.ops[ops]` and `plan.limits[ops]`.
    Limited {
        /// Range into the plan's ops (and limits).
        ops: Range<usize>,
        /// The matched node (none for a limit override): shadow/quota flags, names.
        node: Option<&'a Node>,
    },
}

impl Planned<'_> {
    /// `shadow_mode` of the matched rule.
    pub fn shadow(&self) -> bool {
        matches!(self, Planned::Limited { node: Some(n), .. } if n.shadow_mode)
    }

    /// `quota_mode` of the matched rule.
    pub fn quota(&self) -> bool {
        matches!(self, Planned::Limited { node: Some(n), .. } if n.quota_mode)
    }
}

/// Everything a request asks of the limiter.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// One entry per request descriptor, in request order.
    pub descriptors: Vec<Planned<'a>>,
    /// The counters to run, descriptor by descriptor.
    pub ops: Vec<Op>,
    /// `limits[i]` is the limit `ops[i]` enforces.
    pub limits: Vec<LimitRef<'a>>,
}

/// A descriptor after lookup, before `replaces` is applied.
enum Resolved<'a> {
    None,
    Unlimited(&'a [String]),
    Rule(&'a Node, String),
    Override(LimitRef<'a>, String),
}

impl<'a> Plan<'a> {
    /// Builds the plan for `descriptors` in `domain`. `request_hits` is the request-level
    /// `hits_addend` (0 means 1); a descriptor's own `hits_addend` overrides it (0 = check only).
    /// Descriptors must already be validated (non-empty entries, known override units).
    pub fn build(
        rules: &'a Rules,
        domain: &str,
        descriptors: &[RateLimitDescriptor],
        request_hits: u32,
    ) -> Plan<'a> {
        let resolved: Vec<Resolved<'a>> = descriptors
            .iter()
            .map(|d| resolve(rules, domain, d))
            .collect();
        // Every matched limit's `replaces`, unlimited ones included (as upstream).
        let replaced: Vec<&str> = resolved
            .iter()
            .flat_map(|r| {
                let (limits, unlimited): (&[Limit], &[String]) = match r {
                    Resolved::Rule(node, _) => match &node.policy {
                        Policy::Limited(limits) => (limits, &[]),
                        _ => (&[], &[]),
                    },
                    Resolved::Unlimited(replaces) => (&[], replaces),
                    _ => (&[], &[]),
                };
                limits
                    .iter()
                    .flat_map(|l| l.replaces.iter())
                    .chain(unlimited)
                    .map(String::as_str)
            })
            .collect();
        let mut plan = Plan {
            descriptors: Vec::with_capacity(descriptors.len()),
            ops: Vec::with_capacity(descriptors.len()),
            limits: Vec::with_capacity(descriptors.len()),
        };
        for (r, d) in resolved.into_iter().zip(descriptors) {
            let hits = d
                .hits_addend
                .as_ref()
                .map_or(u64::from(request_hits.max(1)), |h| h.value);
            let planned = match r {
                Resolved::None => Planned::NoLimit,
                Resolved::Unlimited(_) => Planned::Unlimited,
                Resolved::Override(limit, key) => {
                    let start = plan.ops.len();
                    plan.push(limit, key, hits, d.is_negative_hits, 0);
                    Planned::Limited {
                        ops: start..plan.ops.len(),
                        node: None,
                    }
                }
                Resolved::Rule(node, key) => {
                    let start = plan.ops.len();
                    if let Policy::Limited(limits) = &node.policy {
                        for (i, limit) in limits.iter().enumerate() {
                            let is_replaced =
                                limit.name.as_deref().is_some_and(|n| replaced.contains(&n));
                            if !is_replaced {
                                plan.push(
                                    LimitRef::Rule(limit),
                                    key.clone(),
                                    hits,
                                    d.is_negative_hits,
                                    i,
                                );
                            }
                        }
                    }
                    if start == plan.ops.len() {
                        Planned::NoLimit
                    } else {
                        Planned::Limited {
                            ops: start..plan.ops.len(),
                            node: Some(node),
                        }
                    }
                }
            };
            plan.descriptors.push(planned);
        }
        plan
    }

    /// Adds the op for one limit; the i-th extra limit of a descriptor gets its own counter.
    fn push(
        &mut self,
        limit: LimitRef<'a>,
        mut key: String,
        hits: u64,
        refund: bool,
        index: usize,
    ) {
        if index > 0 {
            key.push_str("_#");
            key.push_str(&index.to_string());
        }
        let (algorithm, burst) = match limit {
            LimitRef::Rule(l) => (l.algorithm, l.burst),
            LimitRef::Override {
                requests_per_unit, ..
            } => (
                crate::rules::model::Algorithm::FixedWindow,
                requests_per_unit,
            ),
        };
        self.ops.push(Op {
            key,
            algorithm,
            requests_per_unit: limit.requests_per_unit(),
            period_secs: limit.unit().seconds(),
            burst,
            hits,
            refund,
        });
        self.limits.push(limit);
    }
}

/// Looks one descriptor up. An override skips the rules but needs a known domain.
fn resolve<'a>(rules: &'a Rules, domain: &str, d: &RateLimitDescriptor) -> Resolved<'a> {
    let entries = d.entries.iter().map(|e| (e.key.as_str(), e.value.as_str()));
    if let Some(o) = &d.limit {
        if rules.domain(domain).is_none() {
            return Resolved::None;
        }
        let Some(unit) = Unit::from_override(o.unit) else {
            // Validation rejects unknown units before planning; never guess one.
            return Resolved::None;
        };
        let mut key = String::with_capacity(64);
        key.push_str(domain);
        for (k, v) in entries {
            push_entry(&mut key, k, v);
        }
        return Resolved::Override(
            LimitRef::Override {
                requests_per_unit: o.requests_per_unit,
                unit,
            },
            key,
        );
    }
    match rules.lookup(domain, entries) {
        Lookup::UnknownDomain | Lookup::NoMatch => Resolved::None,
        Lookup::Matched { node, counter_key } => match &node.policy {
            Policy::None => Resolved::None,
            Policy::Unlimited { replaces } => Resolved::Unlimited(replaces),
            Policy::Limited(_) => Resolved::Rule(node, counter_key),
        },
    }
}
