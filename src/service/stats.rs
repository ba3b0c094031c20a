//! envoyproxy/ratelimit's per-rule counters, with its Prometheus names and labels, so existing
//! dashboards work: `ratelimit_service_rate_limit_{total_hits,over_limit,near_limit,
//! within_limit,shadow_mode}{domain,key1,key2}`.
//!
//! Labels come from the rule's stats key (`domain.key1_value.key2`), never from runtime values
//! unless the rule asks (`detailed_metric`), so cardinality is bounded by the rule files.
//! Counter handles are cached per stats key: the hot path takes a read lock and a map lookup.
//!
//! [`CallStats`]: upstream's call-level series — `ratelimit_service_total_requests`,
//! `ratelimit_service_response_time_seconds` and `ratelimit_service_should_rate_limit_error`.

use crate::keys::detailed_stats_key;
use crate::limiter::plan::Decided;
use crate::meter::Meter;
use crate::request::ValidRequest;
use crate::service::error::{ErrType, ServiceError};
use hashbrown::HashMap;
use metrics::{Counter, Histogram};
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::Duration;

/// The gRPC method label upstream's interceptor gives its series (the method's short name).
const SHOULD_RATE_LIMIT: &str = "ShouldRateLimit";

/// upstream's call-level series, under the names its Prometheus mapper gives them. Handles are
/// registered once (all at zero, so `rate()` works from the first scrape); calls only add.
#[derive(Clone)]
pub struct CallStats {
    /// `ratelimit_service_total_requests{grpc_method="ShouldRateLimit"}`: gRPC calls that
    /// reached the handler (upstream's interceptor runs after decoding; `/json` is not a gRPC
    /// call and is not counted).
    total_requests: Counter,
    /// `ratelimit_service_response_time_seconds{grpc_method="ShouldRateLimit"}`: the
    /// handler's time, errors included, in seconds (Envoy Gateway's mapper drops upstream's
    /// millisecond scale).
    response_time: Histogram,
    /// `ratelimit_service_should_rate_limit_error{err_type="redis_error"}`: calls (gRPC and
    /// `/json`) the counter store failed.
    redis_error: Counter,
    /// `…{err_type="service_error"}`: calls refused as invalid (empty domain, …).
    service_error: Counter,
    /// `sluice_idempotency_requests_total{result="first"}`: requests with an idempotency key
    /// that were decided (and charged).
    idempotent_first: Counter,
    /// `…{result="replayed"}`: repeats answered from a record, charged nothing.
    idempotent_replayed: Counter,
}

impl Default for CallStats {
    /// Records nowhere (a limiter built without a meter).
    fn default() -> CallStats {
        CallStats {
            total_requests: Counter::noop(),
            response_time: Histogram::noop(),
            redis_error: Counter::noop(),
            service_error: Counter::noop(),
            idempotent_first: Counter::noop(),
            idempotent_replayed: Counter::noop(),
        }
    }
}

impl CallStats {
    /// The series, registered in `meter`.
    pub fn new(meter: &Meter) -> CallStats {
        meter.record(|| {
            metrics::describe_counter!(
                "ratelimit_service_total_requests",
                "gRPC calls received, by method."
            );
            metrics::describe_histogram!(
                "ratelimit_service_response_time_seconds",
                metrics::Unit::Seconds,
                "Time to answer a gRPC call, by method."
            );
            metrics::describe_counter!(
                "ratelimit_service_should_rate_limit_error",
                "ShouldRateLimit calls answered with an error, by cause."
            );
            metrics::describe_counter!(
                "sluice_idempotency_requests_total",
                "Requests carrying an idempotency key: decided first, or replayed (charged nothing)."
            );
            let idempotent = |result: &'static str| {
                metrics::counter!("sluice_idempotency_requests_total", "result" => result)
            };
            let error = |t: ErrType| {
                metrics::counter!("ratelimit_service_should_rate_limit_error", "err_type" => t.as_str())
            };
            CallStats {
                total_requests: metrics::counter!(
                    "ratelimit_service_total_requests",
                    "grpc_method" => SHOULD_RATE_LIMIT
                ),
                response_time: metrics::histogram!(
                    "ratelimit_service_response_time_seconds",
                    "grpc_method" => SHOULD_RATE_LIMIT
                ),
                redis_error: error(ErrType::Redis),
                service_error: error(ErrType::Service),
                idempotent_first: idempotent("first"),
                idempotent_replayed: idempotent("replayed"),
            }
        })
    }

    /// A request with an idempotency key was answered: `replayed` from a record.
    pub fn idempotent(&self, replayed: bool) {
        if replayed {
            self.idempotent_replayed.increment(1);
        } else {
            self.idempotent_first.increment(1);
        }
    }

    /// A gRPC ShouldRateLimit call reached the handler.
    pub fn requested(&self) {
        self.total_requests.increment(1);
    }

    /// The handler answered (or failed) after `elapsed`.
    pub fn responded(&self, elapsed: Duration) {
        self.response_time.record(elapsed.as_secs_f64());
    }

    /// A ShouldRateLimit call (gRPC or `/json`) failed with `error`.
    pub fn failed(&self, error: &ServiceError) {
        match error.err_type() {
            ErrType::Redis => self.redis_error.increment(1),
            ErrType::Service => self.service_error.increment(1),
        }
    }
}

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

/// Most per-rule series kept: `detailed_metric` puts runtime values into series names, so a
/// client sending ever-new values could otherwise grow the registry without end.
pub const MAX_STATS_KEYS: usize = 10_000;

/// Per-rule counters, created on first use.
pub struct Stats {
    /// Handles by stats key.
    rules: RwLock<HashMap<String, Arc<RuleStats>>>,
    /// `near_limit` counts hits above `floor(limit × ratio)` (upstream default 0.8).
    near_ratio: f64,
    /// Where the series are registered.
    meter: Meter,
}

impl Stats {
    /// Counters with the given near-limit ratio, registered in `meter`.
    pub fn new(near_ratio: f64, meter: Meter) -> Stats {
        Stats {
            rules: RwLock::new(HashMap::new()),
            near_ratio,
            meter,
        }
    }

    fn rule(&self, key: &str) -> Arc<RuleStats> {
        if let Some(s) = self.rules.read().get(key) {
            return Arc::clone(s);
        }
        let mut w = self.rules.write();
        Arc::clone(
            w.entry(key.to_owned())
                .or_insert_with(|| Arc::new(self.meter.record(|| RuleStats::new(key)))),
        )
    }

    /// Counts one answered request, as upstream's limiter does for every matched limit.
    pub fn record(&self, decided: &[Decided<'_>], request: &ValidRequest<'_>) {
        for (d, descriptor) in decided.iter().zip(request.descriptors()) {
            let Some(rule) = d.rule() else {
                continue; // limit overrides: no rule, no per-rule stats (upstream's leak, #275)
            };
            // Only detailed metrics build a key per request; others use the rule's own. Their
            // series are capped: past the cap, runtime values fold into the rule's series.
            let stats = if rule.detailed_metric {
                let key = detailed_stats_key(rule.stats_key, descriptor.pairs());
                self.detailed(&key, rule.stats_key)
            } else {
                self.rule(rule.stats_key)
            };
            for c in d.checks() {
                let (op, o) = (&c.op, &c.outcome);
                if op.refund {
                    continue;
                }
                let limit = u64::from(c.limit.requests_per_unit);
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
                if rule.shadow {
                    stats.shadow_mode.increment(over);
                }
            }
        }
    }

    /// The series of a detailed key; the rule's own once [`MAX_STATS_KEYS`] series exist.
    fn detailed(&self, key: &str, rule_key: &str) -> Arc<RuleStats> {
        {
            let rules = self.rules.read();
            if let Some(s) = rules.get(key) {
                return Arc::clone(s);
            }
            if rules.len() >= MAX_STATS_KEYS {
                drop(rules);
                return self.rule(rule_key);
            }
        }
        self.rule(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn call_series_start_at_zero_and_count_by_cause() {
        let meter = Meter::prometheus();
        let calls = CallStats::new(&meter);
        let line = |text: &str, series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
        };
        let total = "ratelimit_service_total_requests{grpc_method=\"ShouldRateLimit\"}";
        let redis = "ratelimit_service_should_rate_limit_error{err_type=\"redis_error\"}";
        let service = "ratelimit_service_should_rate_limit_error{err_type=\"service_error\"}";
        let text = meter.render();
        assert_eq!(line(&text, total).as_deref(), Some("0"), "{text}");
        assert_eq!(line(&text, redis).as_deref(), Some("0"), "{text}");
        calls.requested();
        calls.requested();
        calls.responded(Duration::from_micros(300));
        calls.failed(&ServiceError::invalid("domain", "must not be empty"));
        calls.failed(&ServiceError::Store(StoreError::Unavailable("down".into())));
        calls.failed(&ServiceError::Store(StoreError::Rejected("NOPERM".into())));
        let text = meter.render();
        assert_eq!(line(&text, total).as_deref(), Some("2"), "{text}");
        assert_eq!(line(&text, redis).as_deref(), Some("2"), "{text}");
        assert_eq!(line(&text, service).as_deref(), Some("1"), "{text}");
        let count =
            "ratelimit_service_response_time_seconds_count{grpc_method=\"ShouldRateLimit\"}";
        assert_eq!(line(&text, count).as_deref(), Some("1"), "{text}");
        let bucket = "ratelimit_service_response_time_seconds_bucket{grpc_method=\"ShouldRateLimit\",le=\"0.0005\"}";
        assert_eq!(
            line(&text, bucket).as_deref(),
            Some("1"),
            "seconds, latency buckets: {text}"
        );
    }

    #[test]
    fn detailed_series_are_capped_then_fold_into_the_rule() {
        let meter = Meter::prometheus();
        let stats = Stats::new(0.8, meter.clone());
        for i in 0..MAX_STATS_KEYS + 50 {
            stats
                .detailed(&format!("d.k_{i}"), "d.k")
                .total_hits
                .increment(1);
        }
        assert_eq!(
            stats.rules.read().len(),
            MAX_STATS_KEYS + 1,
            "the cap, plus the rule's own"
        );
        let text = meter.render();
        let rule_line = "ratelimit_service_rate_limit_total_hits{domain=\"d\",key1=\"k\"}";
        assert!(
            text.lines().any(|l| l == format!("{rule_line} 50")),
            "the 50 past the cap count on the rule's series"
        );
        // A series that existed before the cap keeps counting on its own.
        stats.detailed("d.k_0", "d.k").total_hits.increment(1);
        assert!(text.contains("key1=\"k_0\""));
    }
}
