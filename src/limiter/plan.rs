//! From a request to the ops a store must run: rule lookup, `replaces`, limit overrides, hits.
//!
//! A [`Plan`] keeps, for every descriptor of the request and in request order, what applies to
//! it; the ops of all descriptors sit in one flat list so the store sees the whole request at
//! once (one round trip per Redis shard). Ops of one descriptor are contiguous.

use crate::limiter::Op;
use crate::overrides::{OverrideLimit, OverrideSet};
use crate::rules::model::{Algorithm, Limit, Node, Policy};
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
    /// An operator's runtime override (admin API): replaces the rule's limits.
    Runtime {
        requests_per_unit: u32,
        unit: Unit,
        algorithm: Algorithm,
        burst: u32,
        /// The overridden rule's (first) limit name, so `current_limit.name` stays stable.
        name: &'a str,
    },
}

impl LimitRef<'_> {
    /// Hits per unit.
    pub fn requests_per_unit(&self) -> u32 {
        match self {
            LimitRef::Rule(l) => l.requests_per_unit,
            LimitRef::Override {
                requests_per_unit, ..
            }
            | LimitRef::Runtime {
                requests_per_unit, ..
            } => *requests_per_unit,
        }
    }

    /// The unit.
    pub fn unit(&self) -> Unit {
        match self {
            LimitRef::Rule(l) => l.unit,
            LimitRef::Override { unit, .. } | LimitRef::Runtime { unit, .. } => *unit,
        }
    }

    /// `rate_limit.name`, or "" (as the proto's `current_limit.name`).
    pub fn name(&self) -> &str {
        match self {
            LimitRef::Rule(l) => l.name.as_deref().unwrap_or(""),
            LimitRef::Override { .. } => "",
            LimitRef::Runtime { name, .. } => name,
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
    /// A runtime override; the node when a rule matched too (its flags still apply).
    Runtime(LimitRef<'a>, String, Option<&'a Node>),
}

impl<'a> Plan<'a> {
    /// Builds the plan for `descriptors` in `domain`. `request_hits` is the request-level
    /// `hits_addend` (0 means 1); a descriptor's own `hits_addend` overrides it (0 = check only).
    /// Descriptors must already be validated (non-empty entries, known override units).
    /// Runtime `overrides` active at `now_ms` replace the limits of what they target.
    pub fn build(
        rules: &'a Rules,
        overrides: &'a OverrideSet,
        now_ms: u64,
        domain: &str,
        descriptors: &[RateLimitDescriptor],
        request_hits: u32,
    ) -> Plan<'a> {
        let resolved: Vec<Resolved<'a>> = descriptors
            .iter()
            .map(|d| {
                let r = resolve(rules, domain, d);
                if overrides.is_empty() {
                    r
                } else {
                    apply_override(r, rules, overrides, now_ms, domain, d)
                }
            })
            .collect();
        // Every matched limit's `replaces`, unlimited ones included (as upstream).
        let replaced: Vec<&str> = resolved
            .iter()
            .flat_map(|r| {
                let (limits, unlimited): (&[Limit], &[String]) = match r {
                    // An overridden rule keeps switching off what its limits replace.
                    Resolved::Rule(node, _) | Resolved::Runtime(_, _, Some(node)) => {
                        match &node.policy {
                            Policy::Limited(limits) => (limits, &[]),
                            _ => (&[], &[]),
                        }
                    }
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
            let hits = d.hits_addend.as_ref().map_or(request_hits.max(1), |h| {
                u32::try_from(h.value).unwrap_or(u32::MAX)
            });
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
                Resolved::Runtime(limit, key, node) => {
                    // An override of a rule that another matched rule replaces stays off too.
                    let is_replaced = match limit {
                        LimitRef::Runtime { name, .. } => {
                            !name.is_empty() && replaced.contains(&name)
                        }
                        _ => false,
                    };
                    if is_replaced {
                        Planned::NoLimit
                    } else {
                        let start = plan.ops.len();
                        plan.push(limit, key, hits, d.is_negative_hits, 0);
                        Planned::Limited {
                            ops: start..plan.ops.len(),
                            node,
                        }
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
        hits: u32,
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
            } => (Algorithm::FixedWindow, requests_per_unit),
            LimitRef::Runtime {
                algorithm, burst, ..
            } => (algorithm, burst),
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

/// Replaces what `resolved` found by the runtime override for this exact descriptor, or else
/// for the matched rule, if one is active. The counter key stays the rule's, so a raised limit
/// carries on from what the window has already used. Overrides need a known domain.
fn apply_override<'a>(
    resolved: Resolved<'a>,
    rules: &'a Rules,
    overrides: &'a OverrideSet,
    now_ms: u64,
    domain: &str,
    d: &RateLimitDescriptor,
) -> Resolved<'a> {
    if rules.domain(domain).is_none() {
        return resolved;
    }
    let entries = || d.entries.iter().map(|e| (e.key.as_str(), e.value.as_str()));
    let found = overrides
        .for_descriptor(domain, entries(), now_ms)
        .or_else(|| match &resolved {
            Resolved::Rule(node, _) => overrides.for_rule(&node.stats_key, now_ms),
            _ => None,
        });
    let Some(o) = found else {
        return resolved;
    };
    let OverrideLimit::Limited {
        requests_per_unit,
        unit,
        algorithm,
        burst,
    } = o.limit
    else {
        return Resolved::Unlimited(&[]);
    };
    let (node, key) = match resolved {
        Resolved::Rule(node, key) => (Some(node), key),
        Resolved::Override(_, key) => (None, key),
        _ => {
            let mut key = String::with_capacity(64);
            key.push_str(domain);
            for (k, v) in entries() {
                push_entry(&mut key, k, v);
            }
            (None, key)
        }
    };
    let first = node.and_then(|n| match &n.policy {
        Policy::Limited(limits) => limits.first(),
        _ => None,
    });
    let algorithm = algorithm
        .or(first.map(|l| l.algorithm))
        .unwrap_or(Algorithm::FixedWindow);
    // Same algorithm and unit: the rule's counter carries on (a raised limit keeps what the
    // window used). Otherwise a counter of its own: another algorithm's state has another
    // shape in Redis, and a token bucket's backlog means something else in another unit.
    let mut key = key;
    if first.is_some_and(|l| l.algorithm != algorithm || l.unit != unit) {
        key.push_str("_#override");
    }
    Resolved::Runtime(
        LimitRef::Runtime {
            requests_per_unit,
            unit,
            algorithm,
            burst: burst.unwrap_or(requests_per_unit),
            name: first.and_then(|l| l.name.as_deref()).unwrap_or(""),
        },
        key,
        node,
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overrides::{Override, OverrideLimit, Target};
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;

    fn rules(yaml: &str) -> Rules {
        let domain = crate::rules::parse::parse_domain("t.yaml", yaml).expect("valid rules");
        Rules::from_domains(vec![("t.yaml".into(), domain)]).expect("one domain")
    }

    fn desc(k: &str, v: &str) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: vec![Entry {
                key: k.into(),
                value: v.into(),
            }],
            ..Default::default()
        }
    }

    fn rule_override(rule: &str, unit: Unit, algorithm: Option<Algorithm>) -> Override {
        Override {
            target: Target::Rule(rule.into()),
            limit: OverrideLimit::Limited {
                requests_per_unit: 50,
                unit,
                algorithm,
                burst: None,
            },
            expires_at_ms: u64::MAX,
            created_at_ms: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn an_override_keeps_the_counter_only_when_it_counts_the_same_way() {
        let r = rules("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: sliding_log}\n");
        let ds = [desc("k", "v")];
        for (o, key, algorithm) in [
            (
                rule_override("d.k", Unit::Minute, None),
                "d_k_v",
                Algorithm::SlidingLog,
            ),
            (
                rule_override("d.k", Unit::Hour, None),
                "d_k_v_#override",
                Algorithm::SlidingLog,
            ),
            (
                rule_override("d.k", Unit::Minute, Some(Algorithm::TokenBucket)),
                "d_k_v_#override",
                Algorithm::TokenBucket,
            ),
        ] {
            let set = OverrideSet::new([o]);
            let plan = Plan::build(&r, &set, 0, "d", &ds, 0);
            assert_eq!(plan.ops[0].key, key);
            assert_eq!(plan.ops[0].algorithm, algorithm);
            assert_eq!(plan.ops[0].requests_per_unit, 50);
        }
    }

    #[test]
    fn an_overridden_rule_still_replaces_and_a_replaced_one_stays_off() {
        let r = rules(
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: minute, requests_per_unit: 5, name: la, replaces: [{name: lb}]}\n  - key: b\n    rate_limit: {unit: minute, requests_per_unit: 1, name: lb}\n",
        );
        let ds = [desc("a", "x"), desc("b", "y")];
        for target in ["d.a", "d.b"] {
            let set = OverrideSet::new([rule_override(target, Unit::Minute, None)]);
            let plan = Plan::build(&r, &set, 0, "d", &ds, 0);
            let keys: Vec<&str> = plan.ops.iter().map(|o| o.key.as_str()).collect();
            assert_eq!(keys, vec!["d_a_x"], "override of {target}");
            assert!(matches!(plan.descriptors[1], Planned::NoLimit));
        }
    }
}
