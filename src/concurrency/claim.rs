//! From a request's concurrency descriptors to the waiting room's [`Claim`]s, and from the
//! room's answers back to checked limits the response and the stats read like any other.
//!
//! A descriptor that matched a `concurrency:` rule claims: a slot when it charges (positive
//! hits, whatever their number), a release with `is_negative_hits`, a look with hits 0. Its
//! attributes (the entries after the matched node) give the waiter's flow (`fair_by`), weight
//! (`weight_by`) and lease id (`lease_id`); a missing one means no flow, weight 1, no id.

use crate::concurrency::room::Claim;
use crate::concurrency::slots::{SlotAction, SlotOp, SlotOutcome, SlotResult};
use crate::effective::{rule_info, Pending};
use crate::limiter::plan::{Checked, Decided, LimitSource, LimitSpec};
use crate::limiter::unit::Unit;
use crate::limiter::{Algorithm, Op, Outcome};
use crate::request::ValidRequest;
use std::sync::Arc;

/// The claims of `pending` descriptors of `request`, in the same order.
pub fn claims(pending: &[Pending<'_>], request: &ValidRequest<'_>) -> Vec<Claim> {
    pending
        .iter()
        .map(|p| {
            let d = &request.descriptors()[p.index];
            let attr = |name: &Option<String>| -> Option<&str> {
                let name = name.as_deref()?;
                d.entries
                    .get(p.matched..)?
                    .iter()
                    .find(|e| e.key == name)
                    .map(|e| e.value.as_str())
            };
            let fair = attr(&p.rule.fair_by);
            let action = if d.refund {
                SlotAction::Release
            } else if d.hits == 0 {
                SlotAction::Peek
            } else {
                SlotAction::Acquire
            };
            Claim {
                op: SlotOp {
                    key: p.key.clone(),
                    max: p.rule.max,
                    lease_ms: u64::try_from(p.rule.lease.as_millis()).unwrap_or(u64::MAX),
                    lease: attr(&p.rule.lease_id).map(str::to_owned),
                    action,
                    rule: Arc::from(p.node.stats_key.as_str()),
                },
                queue: p.rule.queue,
                queue_timeout: p.rule.queue_timeout,
                flow: fair.map(Into::into),
                weight: p.rule.weight(attr(&p.rule.weight_by), fair),
                shadow: p.node.shadow_mode,
            }
        })
        .collect()
}

/// Adds each claim's answer to its descriptor's checks (beside the node's rate limits, if it
/// has any), so the response, the headers and the stats treat it like a limit.
pub fn merge<'a>(
    decided: &mut [Decided<'a>],
    pending: &[Pending<'a>],
    claims: &[Claim],
    outcomes: &[SlotOutcome],
    request: &ValidRequest<'_>,
) {
    for ((p, c), o) in pending.iter().zip(claims).zip(outcomes) {
        let Some(slot) = decided.get_mut(p.index) else {
            continue;
        };
        let hits = request.descriptors()[p.index].hits;
        let checked = checked(p, c, o, hits);
        match slot {
            Decided::Limited { limits, .. } => limits.push(checked),
            _ => {
                *slot = Decided::Limited {
                    rule: Some(rule_info(p.node)),
                    limits: vec![checked],
                }
            }
        }
    }
}

/// One claim's answer as a checked limit: `max` slots, `remaining` = free slots, the wait for
/// a slot (the earliest lease's end) as `retry_after`/`reset_after`.
fn checked<'a>(p: &Pending<'a>, c: &Claim, o: &SlotOutcome, hits: u32) -> Checked<'a> {
    let max = p.rule.max;
    let allowed = match c.op.action {
        SlotAction::Acquire => o.result == SlotResult::Granted,
        _ => true,
    };
    let until = o.next_expiry.unwrap_or_default();
    let held = u64::from(o.held);
    Checked {
        limit: LimitSpec {
            name: "",
            requests_per_unit: max,
            unit: Unit::Second,
            algorithm: Algorithm::FixedWindow,
            burst: max,
            source: LimitSource::Concurrency,
        },
        op: Op {
            key: c.op.key.clone(),
            algorithm: Algorithm::FixedWindow,
            requests_per_unit: max,
            period_secs: 0,
            burst: max,
            hits,
            refund: c.op.action == SlotAction::Release,
        },
        outcome: Outcome {
            allowed,
            remaining: if allowed {
                max.saturating_sub(o.held)
            } else {
                0
            },
            reset_after: until,
            retry_after: if allowed {
                std::time::Duration::ZERO
            } else {
                until.max(std::time::Duration::from_secs(1))
            },
            used_before: if o.result == SlotResult::Granted {
                held.saturating_sub(1)
            } else {
                held
            },
            used_after: held,
            fallback: o.fallback,
        },
    }
}
