//! From a request's effective limits to the ops a store runs, and back: every outcome is paired
//! with the check it answers by type, never by an index kept in a parallel vector.
//!
//! [`Plan::build`] takes plain data — per descriptor, what applies ([`Effective`], resolved
//! from rules and overrides by [`crate::effective`]) — and the validated request's hits. The
//! store sees the whole request's ops at once ([`Plan::ops`]: one round trip per Redis shard);
//! [`Plan::zip`] then consumes the plan with the store's outcomes and yields, per descriptor,
//! its [`Checked`] limits: the limit, the op and its outcome together.
//!
//! **Settlement.** A request that both charges and refunds one counter (Envoy's stream-done
//! call of a token budget: the used tokens with `hits_addend`, the reservation back with
//! `is_negative_hits`) is run as one net op on that counter: the first op of the key carries
//! `charged - refunded` (a refund when negative) and the others become checks that read the
//! state it left. The store therefore never sees a charge that could be denied before the
//! refund that would have made room for it, the order of the descriptors does not matter, and
//! a settlement never fails an all-or-nothing request because of its own charge. The
//! descriptors keep their own ops in [`Checked::op`] (stats count the hits they asked for).

use crate::limiter::unit::Unit;
use crate::limiter::{Algorithm, Op, Outcome};
use crate::request::ValidRequest;

/// Where a limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// The rule files.
    Rule,
    /// The request's own `descriptor.limit` (replaces the rule; fixed window, no name).
    Request,
    /// An operator's runtime override (admin API).
    Runtime,
    /// A `concurrency:` rule: `requests_per_unit` is its slots, there is no unit.
    Concurrency,
}

/// One limit, as plain data: what the response, the stats and the admin API report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec<'a> {
    /// `rate_limit.name`, or "" (the proto's `current_limit.name`).
    pub name: &'a str,
    /// Hits per unit.
    pub requests_per_unit: u32,
    /// The unit.
    pub unit: Unit,
    /// How hits are counted.
    pub algorithm: Algorithm,
    /// Token-bucket capacity.
    pub burst: u32,
    /// Rule, request or runtime override.
    pub source: LimitSource,
}

/// A limit to enforce and the counter it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveLimit<'a> {
    /// The limit.
    pub spec: LimitSpec<'a>,
    /// Its counter key ([`crate::keys`]).
    pub key: String,
}

/// What the matched rule says beyond its limits (absent for a request's own limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo<'a> {
    /// `domain.key_value.key`: names the rule in stats, headers and overrides.
    pub stats_key: &'a str,
    /// `shadow_mode`: never OVER_LIMIT because of this rule.
    pub shadow: bool,
    /// `quota_mode`: over only when every quota descriptor is over.
    pub quota: bool,
    /// `detailed_metric`: stats per runtime value.
    pub detailed_metric: bool,
}

/// One descriptor of a request, at any stage: what applies to it, with one `T` per limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerDescriptor<'a, T> {
    /// Unknown domain, no matching rule, a whitelist entry, or every limit replaced.
    NoLimit,
    /// `unlimited: true` (or an unlimited override).
    Unlimited,
    /// Limits to enforce, in rule order (never empty).
    Limited {
        /// The matched rule, if any.
        rule: Option<RuleInfo<'a>>,
        /// One entry per limit.
        limits: Vec<T>,
    },
}

/// What applies to a descriptor once rules and overrides are resolved.
pub type Effective<'a> = PerDescriptor<'a, EffectiveLimit<'a>>;

/// A descriptor planned, before the store has answered: its ops are the plan's next
/// `limits.len()` ops.
type Planned<'a> = PerDescriptor<'a, LimitSpec<'a>>;

/// A descriptor after the store answered: each limit with its op and outcome.
pub type Decided<'a> = PerDescriptor<'a, Checked<'a>>;

impl<'a, T> PerDescriptor<'a, T> {
    /// The rule's `shadow_mode`.
    pub fn shadow(&self) -> bool {
        self.rule().is_some_and(|r| r.shadow)
    }

    /// The rule's `quota_mode`.
    pub fn quota(&self) -> bool {
        self.rule().is_some_and(|r| r.quota)
    }

    /// The matched rule.
    pub fn rule(&self) -> Option<&RuleInfo<'a>> {
        match self {
            PerDescriptor::Limited { rule, .. } => rule.as_ref(),
            _ => None,
        }
    }

    /// One entry per limit (empty without limits).
    pub fn limits(&self) -> &[T] {
        match self {
            PerDescriptor::Limited { limits, .. } => limits,
            _ => &[],
        }
    }
}

/// Everything a request asks of the store.
#[derive(Debug)]
pub struct Plan<'a> {
    /// One entry per request descriptor, in request order.
    descriptors: Vec<Planned<'a>>,
    /// The ops as the descriptors asked for them, descriptor by descriptor (a `Limited`
    /// descriptor owns as many consecutive ops as it has limits: the only place the pairing
    /// lives).
    asked: Vec<Op>,
    /// What the store runs when it differs from `asked`: each counter's charges and refunds
    /// settled into one net op ([`settle`]); same length and order as `asked`. `None` (no
    /// counter both charged and refunded, i.e. every request-time call): the store runs
    /// `asked` itself, with no copy on the hot path.
    ops: Option<Vec<Op>>,
}

/// The plan and the store's outcomes did not line up (a store bug, never input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store answered {got} outcomes for {want} counters")]
pub struct OutcomeMismatch {
    /// Ops planned.
    pub want: usize,
    /// Outcomes received.
    pub got: usize,
}

/// One limit of a descriptor with its op and what the store answered.
#[derive(Debug, Clone)]
pub struct Checked<'a> {
    /// The limit.
    pub limit: LimitSpec<'a>,
    /// The op that ran for it.
    pub op: Op,
    /// The store's answer.
    pub outcome: Outcome,
}

impl<'a> Decided<'a> {
    /// The limits with their outcomes (empty without limits).
    pub fn checks(&self) -> &[Checked<'a>] {
        self.limits()
    }

    /// The check that speaks for the descriptor: the one nearest its limit (a denying one
    /// first, the longest wait first); `None` without limits.
    pub fn binding(&self) -> Option<&Checked<'a>> {
        self.checks().iter().min_by_key(|c| {
            let o = &c.outcome;
            (o.allowed, std::cmp::Reverse(o.retry_after), o.remaining)
        })
    }
}

impl<'a> Plan<'a> {
    /// The plan for `request`, whose descriptors resolved to `effective` (same order).
    pub fn build(effective: Vec<Effective<'a>>, request: &ValidRequest<'_>) -> Plan<'a> {
        let mut plan = Plan {
            descriptors: Vec::with_capacity(effective.len()),
            asked: Vec::with_capacity(effective.len()),
            ops: None,
        };
        for (e, d) in effective.into_iter().zip(request.descriptors()) {
            let planned = match e {
                Effective::NoLimit => Planned::NoLimit,
                Effective::Unlimited => Planned::Unlimited,
                Effective::Limited { limits, .. } if limits.is_empty() => Planned::NoLimit,
                Effective::Limited { rule, limits } => {
                    let mut specs = Vec::with_capacity(limits.len());
                    for l in limits {
                        plan.asked.push(Op {
                            key: l.key,
                            algorithm: l.spec.algorithm,
                            requests_per_unit: l.spec.requests_per_unit,
                            period_secs: l.spec.unit.seconds(),
                            burst: l.spec.burst,
                            hits: d.hits,
                            refund: d.refund,
                        });
                        specs.push(l.spec);
                    }
                    Planned::Limited {
                        rule,
                        limits: specs,
                    }
                }
            };
            plan.descriptors.push(planned);
        }
        // Only a call mixing charges and refunds (Envoy's stream-done settlement) can need it.
        let mixed = plan.asked.iter().any(|o| o.refund)
            && plan.asked.iter().any(|o| !o.refund && o.hits > 0);
        if mixed {
            plan.ops = Some(settle(&plan.asked));
        }
        plan
    }

    /// The ops to run, for the store (charges and refunds of one counter settled).
    pub fn ops(&self) -> &[Op] {
        self.ops.as_deref().unwrap_or(&self.asked)
    }

    /// The ops as the descriptors asked for them, before settlement.
    pub fn requested_ops(&self) -> &[Op] {
        &self.asked
    }

    /// Whether no counter needs the store.
    pub fn is_empty(&self) -> bool {
        self.asked.is_empty()
    }

    /// Pairs every op with its outcome (`outcomes[i]` answers `ops()[i]`).
    pub fn zip(self, outcomes: Vec<Outcome>) -> Result<Vec<Decided<'a>>, OutcomeMismatch> {
        if outcomes.len() != self.asked.len() {
            return Err(OutcomeMismatch {
                want: self.asked.len(),
                got: outcomes.len(),
            });
        }
        // Each descriptor is paired with the op it asked for and the outcome of its counter.
        let mut pairs = self.asked.into_iter().zip(outcomes);
        let mut out = Vec::with_capacity(self.descriptors.len());
        for planned in self.descriptors {
            out.push(match planned {
                Planned::NoLimit => Decided::NoLimit,
                Planned::Unlimited => Decided::Unlimited,
                Planned::Limited { rule, limits } => Decided::Limited {
                    rule,
                    limits: limits
                        .into_iter()
                        .zip(pairs.by_ref())
                        .map(|(limit, (op, outcome))| Checked { limit, op, outcome })
                        .collect(),
                },
            });
        }
        Ok(out)
    }
}

/// Whether two ops count on the same counter the same way (same key and limit), so that
/// their hits may be netted.
fn same_counter(a: &Op, b: &Op) -> bool {
    a.key == b.key
        && a.algorithm == b.algorithm
        && a.requests_per_unit == b.requests_per_unit
        && a.period_secs == b.period_secs
        && a.burst == b.burst
}

/// The counters of `ops` that are both charged and refunded: each one's op positions (first
/// op first) with its total hits charged and refunded. Quadratic in the ops of one request,
/// which [`crate::request::RequestBounds`] bounds.
fn mixed_counters(ops: &[Op]) -> Vec<(Vec<usize>, u64, u64)> {
    let mut out = Vec::new();
    let mut done = vec![false; ops.len()];
    for i in 0..ops.len() {
        if done[i] {
            continue;
        }
        let group: Vec<usize> = (i..ops.len())
            .filter(|&j| !done[j] && same_counter(&ops[i], &ops[j]))
            .collect();
        let (mut charged, mut refunded) = (0u64, 0u64);
        for &j in &group {
            done[j] = true;
            if ops[j].refund {
                refunded += u64::from(ops[j].hits);
            } else {
                charged += u64::from(ops[j].hits);
            }
        }
        if charged > 0 && refunded > 0 {
            out.push((group, charged, refunded));
        }
    }
    out
}

/// A hit count as an op carries it (capped at [`crate::limiter::MAX_HITS`]).
fn hits(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `ops` with every counter that is both charged and refunded in it settled: its first op
/// carries the net hits (`charged - refunded`, a refund when negative; capped at
/// [`crate::limiter::MAX_HITS`]) and its other ops become checks (hits 0). Counters only
/// charged, or only refunded, are left as they are.
pub fn settle(ops: &[Op]) -> Vec<Op> {
    let mut out = ops.to_vec();
    for (group, charged, refunded) in mixed_counters(ops) {
        let (net, refund) = if charged >= refunded {
            (charged - refunded, false)
        } else {
            (refunded - charged, true)
        };
        for (n, &j) in group.iter().enumerate() {
            let op = &mut out[j];
            (op.hits, op.refund) = if n == 0 {
                (hits(net), refund && net > 0)
            } else {
                (0, false)
            };
        }
    }
    out
}

/// Per op of `ops` (the requested ops; positions as in [`settle`]): the hits it charges and
/// refunds before netting. A counter both charged and refunded has its totals on its first op
/// (the one [`settle`] gives the net) and `(0, 0)` on the others; any other op has its own.
/// An idempotent settlement caps the refunds by what its key reserved before netting
/// ([`crate::limiter::once`]).
pub fn gross(ops: &[Op]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = ops
        .iter()
        .map(|o| if o.refund { (0, o.hits) } else { (o.hits, 0) })
        .collect();
    for (group, charged, refunded) in mixed_counters(ops) {
        for (n, &j) in group.iter().enumerate() {
            out[j] = if n == 0 {
                (hits(charged), hits(refunded))
            } else {
                (0, 0)
            };
        }
    }
    out
}
