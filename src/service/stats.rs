//! envoyproxy/ratelimit's per-rule counters, with its Prometheus names and labels, so existing
//! dashboards work: `ratelimit_service_rate_limit_{total_hits,over_limit,near_limit,
//! within_limit,shadow_mode}{domain,key1,key2}`.
//!
//! Labels come from the rule's stats key (`domain.key1_value.key2`), never from runtime values
//! unless the rule asks (`detailed_metric`), so cardinality is bounded by the rule files.
//! Counter handles are cached per stats key: the hot path takes a read lock and a map lookup.

use crate::limiter::plan::{Plan, Planned};
use crate::limiter::Outcome;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use hashbrown::HashMap;
use metrics::Counter;
use parking_lot::RwLock;
use std::sync::Arc;

/// The five counters of one rule.
struct RuleStats {
    total_hits: Counter,
    over_limit: Counter,
    near_limit: Counter,
    within_limit: Counter,
    shadow_mode: Counter,
}

impl RuleStats {
    fn new(stats_key: &str) -> RuleStats {
        let mut parts = stats_key.splitn(3, '.');
        let domain = parts.next().unwrap_or_default().to_owned();
        let key1 = parts.next().unwrap_or_default().to_owned();
        let key2 = parts.next().unwrap_or_default().to_owned();
        let counter = |stat: &str| {
            let name = format!("ratelimit_service_rate_limit_{stat}");
            if key2.is_empty() {
                metrics::counter!(name, "domain" => domain.clone(), "key1" => key1.clone())
            } else {
                metrics::counter!(name, "domain" => domain.clone(), "key1" => key1.clone(), "key2" => key2.clone())
            }
        };
        RuleStats {
            total_hits: counter("total_hits"),
            over_limit: counter("over_limit"),
            near_limit: counter("near_limit"),
            within_limit: counter("within_limit"),
            shadow_mode: counter("shadow_mode"),
        }
    }
}

/// Per-rule counters, created on first use.
pub struct Stats {
    /// Handles by stats key.
    rules: RwLock<HashMap<String, Arc<RuleStats>>>,
    /// `near_limit` counts hits above `floor(limit × ratio)` (upstream default 0.8).
    near_ratio: f64,
}

impl Stats {
    /// Counters with the given near-limit ratio.
    pub fn new(near_ratio: f64) -> Stats {
        Stats {
            rules: RwLock::new(HashMap::new()),
            near_ratio,
        }
    }

    fn rule(&self, key: &str) -> Arc<RuleStats> {
        if let Some(s) = self.rules.read().get(key) {
            return Arc::clone(s);
        }
        let mut w = self.rules.write();
        Arc::clone(
            w.entry(key.to_owned())
                .or_insert_with(|| Arc::new(RuleStats::new(key))),
        )
    }

    /// Counts one answered request, as upstream's limiter does for every matched limit.
    pub fn record(
        &self,
        plan: &Plan<'_>,
        outcomes: &[Outcome],
        descriptors: &[RateLimitDescriptor],
    ) {
        for (d, planned) in plan.descriptors.iter().enumerate() {
            let Planned::Limited { ops, node } = planned else {
                continue;
            };
            let Some(node) = node else {
                continue; // limit overrides: no rule, no per-rule stats (upstream's leak, #275)
            };
            // Only detailed metrics build a key per request; others use the rule's own.
            let detailed;
            let key: &str = if node.detailed_metric {
                detailed = detailed_key(&node.stats_key, &descriptors[d]);
                &detailed
            } else {
                &node.stats_key
            };
            let stats = self.rule(key);
            for i in ops.clone() {
                let op = &plan.ops[i];
                if op.refund {
                    continue;
                }
                let o = &outcomes[i];
                let limit = u64::from(plan.limits[i].requests_per_unit());
                let near = (limit as f64 * self.near_ratio).floor() as u64;
                let (hits, before) = (u64::from(op.hits), o.used_before);
                let after = before + hits;
                stats.total_hits.increment(hits);
                if o.allowed {
                    stats.within_limit.increment(hits);
                    if after > near {
                        stats.near_limit.increment(after - before.max(near));
                    }
                    continue;
                }
                // Hits above the limit; a request denied below it (sliding/bucket) is all over.
                let over = if before >= limit || after <= limit {
                    hits
                } else {
                    after - limit
                };
                stats.over_limit.increment(over);
                if before < limit && after > limit {
                    stats.near_limit.increment(limit - near.max(before));
                }
                if node.shadow_mode {
                    stats.shadow_mode.increment(over);
                }
            }
        }
    }
}

/// `domain.k1_v1.k2_v2` with every runtime value (upstream's `detailed_metric`), sanitized.
fn detailed_key(stats_key: &str, d: &RateLimitDescriptor) -> String {
    let domain = stats_key.split('.').next().unwrap_or_default();
    let mut key = domain.to_owned();
    for e in &d.entries {
        let (k, v) = (&e.key, &e.value);
        key.push('.');
        key.push_str(k);
        key.push('_');
        // As upstream sanitizes stat names (IPv4 dots, `:` and `|`); dots would also split labels.
        key.extend(
            v.chars()
                .map(|c| if matches!(c, '.' | ':' | '|') { '_' } else { c }),
        );
    }
    key
}
