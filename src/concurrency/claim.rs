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
            replayed: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effective::resolve_all;
    use crate::overrides::OverrideSet;
    use crate::request::RequestBounds;
    use crate::rules::Rules;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
    use envoy_types::pb::google::protobuf::UInt64Value;

    const RULES: &str = "domain: d
descriptors:
  - key: pool
    concurrency: {max: 4, queue: 9, queue_timeout: 5s, lease: 60s, fair_by: tenant, weight_by: tier, weights: {pro: 3}, lease_id: request_id}
";

    fn descriptor(
        entries: &[(&str, &str)],
        hits: Option<u64>,
        refund: bool,
    ) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            hits_addend: hits.map(|value| UInt64Value { value }),
            is_negative_hits: refund,
            ..Default::default()
        }
    }

    #[test]
    fn attributes_become_flow_weight_and_lease() {
        let domain = crate::rules::parse::parse_domain("t.yaml", RULES).expect("rules");
        let rules = Rules::from_domains(vec![("t.yaml".into(), domain)]).expect("rules");
        let req = RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![
                descriptor(
                    &[
                        ("pool", "gpu"),
                        ("tier", "pro"),
                        ("tenant", "acme"),
                        ("request_id", "r1"),
                    ],
                    Some(5),
                    false,
                ),
                descriptor(&[("pool", "gpu")], None, false),
                descriptor(&[("pool", "gpu"), ("request_id", "r1")], Some(1), true),
                descriptor(
                    &[("pool", "gpu"), ("tenant", "x"), ("tier", "free")],
                    Some(0),
                    false,
                ),
            ],
            hits_addend: 0,
        };
        let request = ValidRequest::new(&req, &RequestBounds::default()).expect("valid");
        let (_, pending) = resolve_all(&rules, &OverrideSet::default(), 0, &request);
        let c = claims(&pending, &request);
        assert_eq!(c.len(), 4);
        // One slot whatever the hits; attributes out of order still found.
        assert_eq!(c[0].op.action, SlotAction::Acquire);
        assert_eq!(c[0].op.lease.as_deref(), Some("r1"));
        assert_eq!((c[0].flow.as_deref(), c[0].weight), (Some("acme"), 3));
        assert_eq!((c[0].op.max, c[0].op.lease_ms, c[0].queue), (4, 60_000, 9));
        assert_eq!(c[0].op.key, "d_pool_gpu_#c");
        assert_eq!(&*c[0].op.rule, "d.pool");
        // No attributes: no flow, weight 1, an anonymous lease, the same key.
        assert_eq!(
            (c[1].flow.as_deref(), c[1].weight, c[1].op.lease.as_deref()),
            (None, 1, None)
        );
        assert_eq!(c[1].op.key, c[0].op.key);
        assert_eq!(c[2].op.action, SlotAction::Release);
        assert_eq!(c[3].op.action, SlotAction::Peek);
        assert_eq!(c[3].weight, 1, "an unknown tier weighs 1");
    }
}
