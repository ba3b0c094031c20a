//! Effective limits: what applies to each descriptor of a request once the rules, the request's
//! own limit overrides, `replaces` and operators' runtime overrides are taken into account —
//! resolved here, in one place, into plain data ([`Effective`]) the plan turns into ops.
//!
//! Order, as envoyproxy/ratelimit plus sluice's runtime overrides:
//! 1. a descriptor with `limit` (request override) skips the rules but needs a known domain;
//! 2. otherwise the rules' lookup (exact → wildcard → default) picks a node;
//! 3. a runtime override for exactly this descriptor, else for the matched rule, replaces the
//!    node's limits (same unit and algorithm: the rule's counter carries on; otherwise its own);
//! 4. every matched limit's `replaces` (unlimited ones included) switches limits off by name.
//!
//! A domain with `idempotency:` gives one more meaning to a descriptor: a single entry keyed
//! by the rule's key carries the request's idempotency key ([`once`]) and is limited by
//! nothing itself.

use crate::concurrency::ConcurrencyRule;
use crate::keys::{CounterBase, CounterSlot};
use crate::limiter::once::Once;
use crate::limiter::plan::{Effective, EffectiveLimit, LimitSource, LimitSpec, RuleInfo};
use crate::limiter::Algorithm;
use crate::overrides::{OverrideLimit, OverrideSet};
use crate::request::{InvalidRequest, ValidDescriptor, ValidRequest};
use crate::rules::model::{Idempotency, Limit, Node, Policy};
use crate::rules::{Lookup, Rules};

/// A descriptor after lookup, before `replaces` is applied.
enum Resolved<'a> {
    None,
    Unlimited(&'a [String]),
    Rule(&'a Node, CounterBase),
    Request(LimitSpec<'a>, CounterBase),
    /// A runtime override; the node when a rule matched too (its flags and `replaces` apply).
    Runtime(LimitSpec<'a>, String, Option<&'a Node>),
}

/// A descriptor that matched a rule with `concurrency:`: what the waiting room needs.
#[derive(Debug, Clone)]
pub struct Pending<'a> {
    /// The descriptor's position in the request.
    pub index: usize,
    /// The matched node (its flags and stats key).
    pub node: &'a Node,
    /// Its concurrency rule.
    pub rule: &'a ConcurrencyRule,
    /// The slot table's key ([`crate::keys::CounterBase::into_slots_key`]).
    pub key: String,
    /// Entries matched; the descriptor's later entries are request attributes.
    pub matched: usize,
}

/// Resolves every descriptor of `request` against `rules` and the `overrides` active at
/// `now_ms`; one [`Effective`] per descriptor, in request order.
pub fn resolve<'a>(
    rules: &'a Rules,
    overrides: &OverrideSet,
    now_ms: u64,
    request: &ValidRequest<'_>,
) -> Vec<Effective<'a>> {
    resolve_all(rules, overrides, now_ms, request).0
}

/// [`resolve`], plus the descriptors that claim concurrency slots (no allocation when none).
pub fn resolve_all<'a>(
    rules: &'a Rules,
    overrides: &OverrideSet,
    now_ms: u64,
    request: &ValidRequest<'_>,
) -> (Vec<Effective<'a>>, Vec<Pending<'a>>) {
    let domain = request.domain();
    let idempotency = rules.domain(domain).and_then(|d| d.idempotency.as_ref());
    let mut pending = Vec::new();
    let resolved: Vec<Resolved<'a>> = request
        .descriptors()
        .iter()
        .enumerate()
        .map(|(index, d)| {
            if carries_key(idempotency, d) {
                return Resolved::None;
            }
            let r = lookup(rules, domain, d, |node, base, matched| {
                if let Some(rule) = node.concurrency.as_deref() {
                    pending.push(Pending {
                        index,
                        node,
                        rule,
                        key: base.clone().into_slots_key(),
                        matched,
                    });
                }
            });
            if overrides.is_empty() || rules.domain(domain).is_none() {
                r
            } else {
                apply_override(r, overrides, now_ms, domain, d)
            }
        })
        .collect();
    let replaced: Vec<&str> = resolved
        .iter()
        .flat_map(|r| {
            let (limits, unlimited): (&[Limit], &[String]) = match r {
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
    let is_replaced = |name: &str| !name.is_empty() && replaced.contains(&name);
    let effective = resolved
        .into_iter()
        .map(|r| match r {
            Resolved::None => Effective::NoLimit,
            Resolved::Unlimited(_) => Effective::Unlimited,
            Resolved::Request(spec, base) => Effective::Limited {
                rule: None,
                limits: vec![EffectiveLimit {
                    key: base.into_counter(slot(0, false, spec.algorithm)),
                    spec,
                }],
            },
            Resolved::Runtime(spec, key, node) => {
                if is_replaced(spec.name) {
                    Effective::NoLimit
                } else {
                    Effective::Limited {
                        rule: node.map(rule_info),
                        limits: vec![EffectiveLimit { spec, key }],
                    }
                }
            }
            Resolved::Rule(node, base) => {
                let Policy::Limited(limits) = &node.policy else {
                    return Effective::NoLimit;
                };
                let kept = limits
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| !l.name.as_deref().is_some_and(is_replaced));
                let n = kept.clone().count();
                let mut base = Some(base);
                let mut out: Vec<EffectiveLimit<'a>> = Vec::with_capacity(n);
                for (i, l) in kept {
                    let s = slot(i, false, l.algorithm);
                    // The last limit takes the base's buffer: one allocation per descriptor
                    // in the common single-limit case.
                    let key = match base.take() {
                        Some(b) if out.len() + 1 == n => b.into_counter(s),
                        Some(b) => {
                            let key = b.counter(s);
                            base = Some(b);
                            key
                        }
                        None => break,
                    };
                    out.push(EffectiveLimit {
                        key,
                        spec: rule_spec(l),
                    });
                }
                let limits = out;
                if limits.is_empty() {
                    Effective::NoLimit
                } else {
                    Effective::Limited {
                        rule: Some(rule_info(node)),
                        limits,
                    }
                }
            }
        })
        .collect();
    (effective, pending)
}

/// Whether `d` is the idempotency descriptor of a domain declaring `idempotency`: a single
/// entry with the rule's key.
fn carries_key(idempotency: Option<&Idempotency>, d: &ValidDescriptor<'_>) -> bool {
    match (idempotency, d.entries) {
        (Some(i), [e]) => e.key == i.key,
        _ => false,
    }
}

/// The request's idempotency: `Some` when its domain declares `idempotency:` and one of its
/// descriptors carries a key. Several descriptors may carry it only with the same value; an
/// empty key is refused (it would make every keyless retry one request).
pub fn once<'r>(
    rules: &Rules,
    request: &ValidRequest<'r>,
) -> Result<Option<Once<'r>>, InvalidRequest> {
    let Some(idempotency) = rules
        .domain(request.domain())
        .and_then(|d| d.idempotency.as_ref())
    else {
        return Ok(None);
    };
    let mut found: Option<Once<'r>> = None;
    for (i, d) in request.descriptors().iter().enumerate() {
        if !carries_key(Some(idempotency), d) {
            continue;
        }
        let key = d.entries[0].value.as_str();
        let field = || format!("descriptors[{i}].entries[0].value");
        if key.is_empty() {
            return Err(InvalidRequest::new(
                field(),
                format!(
                    "the idempotency key ('{}') must not be empty",
                    idempotency.key
                ),
            ));
        }
        match found {
            Some(f) if f.key != key => {
                return Err(InvalidRequest::new(
                    field(),
                    format!(
                        "a second, different idempotency key ('{}'): a request has one",
                        idempotency.key
                    ),
                ))
            }
            Some(_) => {}
            None => {
                found = Some(Once {
                    key,
                    ttl: idempotency.ttl,
                    max_repeats: idempotency.max_repeats.unwrap_or(0),
                })
            }
        }
    }
    Ok(found)
}

fn slot(index: usize, own_override: bool, algorithm: Algorithm) -> CounterSlot {
    CounterSlot {
        index,
        own_override,
        algorithm,
    }
}

/// What the matched rule says beyond its limits.
pub fn rule_info(node: &Node) -> RuleInfo<'_> {
    RuleInfo {
        stats_key: &node.stats_key,
        shadow: node.shadow_mode,
        quota: node.quota_mode,
        detailed_metric: node.detailed_metric,
    }
}

fn rule_spec(l: &Limit) -> LimitSpec<'_> {
    LimitSpec {
        name: l.name.as_deref().unwrap_or(""),
        requests_per_unit: l.requests_per_unit,
        unit: l.unit,
        algorithm: l.algorithm,
        burst: l.burst,
        source: LimitSource::Rule,
    }
}

/// Looks one descriptor up: its request override, else the rules; `concurrent` sees a
/// matched node with its counter base and matched entries.
fn lookup<'a>(
    rules: &'a Rules,
    domain: &str,
    d: &ValidDescriptor<'_>,
    concurrent: impl FnOnce(&'a Node, &CounterBase, usize),
) -> Resolved<'a> {
    if let Some(limit) = d.limit {
        if rules.domain(domain).is_none() {
            return Resolved::None;
        }
        let spec = LimitSpec {
            name: "",
            requests_per_unit: limit.requests_per_unit,
            unit: limit.unit,
            algorithm: Algorithm::FixedWindow,
            burst: limit.requests_per_unit,
            source: LimitSource::Request,
        };
        return Resolved::Request(spec, CounterBase::with_entries(domain, d.pairs()));
    }
    match rules.lookup(domain, d.pairs()) {
        Lookup::UnknownDomain | Lookup::NoMatch => Resolved::None,
        Lookup::Matched {
            node,
            counter_key,
            matched,
        } => {
            if node.concurrency.is_some() {
                concurrent(node, &counter_key, matched);
            }
            match &node.policy {
                Policy::None => Resolved::None,
                Policy::Unlimited { replaces } => Resolved::Unlimited(replaces),
                Policy::Limited(_) => Resolved::Rule(node, counter_key),
            }
        }
    }
}

/// Replaces what `resolved` found by the runtime override for this exact descriptor, or else
/// for the matched rule, if one is active.
fn apply_override<'a>(
    resolved: Resolved<'a>,
    overrides: &OverrideSet,
    now_ms: u64,
    domain: &str,
    d: &ValidDescriptor<'_>,
) -> Resolved<'a> {
    let found = overrides
        .for_descriptor(domain, d.pairs(), now_ms)
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
    let (node, base) = match resolved {
        Resolved::Rule(node, base) => (Some(node), base),
        Resolved::Request(_, base) => (None, base),
        _ => (None, CounterBase::with_entries(domain, d.pairs())),
    };
    let first = node.and_then(|n| match &n.policy {
        Policy::Limited(limits) => limits.first(),
        _ => None,
    });
    let algorithm = algorithm
        .or(first.map(|l| l.algorithm))
        .unwrap_or(Algorithm::FixedWindow);
    // Same algorithm and unit: the rule's counter carries on (a raised limit keeps what the
    // window used). Otherwise a counter of its own: a token bucket's backlog means something
    // else in another unit (and another algorithm has a key of its own anyway).
    let own = first.is_some_and(|l| l.algorithm != algorithm || l.unit != unit);
    let spec = LimitSpec {
        name: first.and_then(|l| l.name.as_deref()).unwrap_or(""),
        requests_per_unit,
        unit,
        algorithm,
        burst: burst.unwrap_or(requests_per_unit),
        source: LimitSource::Runtime,
    };
    Resolved::Runtime(spec, base.into_counter(slot(0, own, algorithm)), node)
}

#[cfg(test)]
mod tests;
