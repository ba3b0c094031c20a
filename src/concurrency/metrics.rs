//! The waiting room's Prometheus series, per rule (the rule's stats key, as `/rlconfig` names
//! it: bounded by the rule files, never by request values).
//!
//! - `sluice_concurrency_in_flight{rule}` (gauge): slots granted minus slots freed, as seen by
//!   this replica (exact with the memory store; with Redis, sum over replicas — a release may
//!   reach another replica than the grant did).
//! - `sluice_concurrency_queued{rule}` (gauge): requests waiting here.
//! - `sluice_concurrency_wait_seconds{rule}` (histogram): how long waiters waited, granted or not.
//! - `sluice_concurrency_granted_total{rule, waited}`, `sluice_concurrency_timeouts_total{rule}`,
//!   `sluice_concurrency_rejected_total{rule, reason}` (`full`, `queue_full`, `in_use`,
//!   `no_room`), `sluice_concurrency_cancelled_total{rule}`,
//!   `sluice_concurrency_leases_expired_total{rule}`,
//!   `sluice_concurrency_releases_total{rule, result}` (`released`, `absorbed`, `stray`).

use crate::concurrency::slots::{SlotOutcome, SlotResult};
use crate::meter::Meter;
use std::time::Duration;

/// Records the waiting room's series into one server's meter.
#[derive(Debug, Clone, Default)]
pub struct RoomMetrics {
    /// Where to record.
    meter: Meter,
}

impl RoomMetrics {
    /// Records into `meter`.
    pub fn new(meter: Meter) -> RoomMetrics {
        RoomMetrics { meter }
    }

    fn counter(
        &self,
        name: &'static str,
        rule: &str,
        extra: Option<(&'static str, &'static str)>,
        n: u64,
    ) {
        let rule = rule.to_owned();
        self.meter.record(|| match extra {
            Some((k, v)) => metrics::counter!(name, "rule" => rule, k => v).increment(n),
            None => metrics::counter!(name, "rule" => rule).increment(n),
        });
    }

    fn in_flight(&self, rule: &str, delta: f64) {
        let rule = rule.to_owned();
        self.meter.record(|| {
            metrics::gauge!("sluice_concurrency_in_flight", "rule" => rule).increment(delta)
        });
    }

    /// A slot op's outcome: grants, refusals, releases and expiries it reports.
    pub fn outcome(&self, rule: &str, o: &SlotOutcome, waited: bool) {
        if o.expired > 0 {
            self.expired(rule, u64::from(o.expired));
        }
        match o.result {
            SlotResult::Granted => {
                self.in_flight(rule, 1.0);
                let waited = if waited { "true" } else { "false" };
                self.counter(
                    "sluice_concurrency_granted_total",
                    rule,
                    Some(("waited", waited)),
                    1,
                );
            }
            SlotResult::Released => {
                self.in_flight(rule, -1.0);
                self.counter(
                    "sluice_concurrency_releases_total",
                    rule,
                    Some(("result", "released")),
                    1,
                );
            }
            SlotResult::Absorbed => self.counter(
                "sluice_concurrency_releases_total",
                rule,
                Some(("result", "absorbed")),
                1,
            ),
            SlotResult::Stray => self.counter(
                "sluice_concurrency_releases_total",
                rule,
                Some(("result", "stray")),
                1,
            ),
            SlotResult::Full => self.rejected(rule, "full"),
            SlotResult::InUse => self.rejected(rule, "in_use"),
            SlotResult::NoRoom => self.rejected(rule, "no_room"),
            SlotResult::Unchanged => {}
        }
    }

    /// A request refused without a slot for `reason`.
    pub fn rejected(&self, rule: &str, reason: &'static str) {
        self.counter(
            "sluice_concurrency_rejected_total",
            rule,
            Some(("reason", reason)),
            1,
        );
    }

    /// Leases that ended without a release.
    pub fn expired(&self, rule: &str, n: u64) {
        self.in_flight(rule, -(n as f64));
        self.counter("sluice_concurrency_leases_expired_total", rule, None, n);
    }

    /// A granted slot given back because its request did not keep it (rolled back, or the
    /// waiter was gone when the slot arrived).
    pub fn given_back(&self, rule: &str) {
        self.in_flight(rule, -1.0);
    }

    /// A waiter joined (+1) or left (-1) the queue.
    pub fn queued(&self, rule: &str, delta: f64) {
        let rule = rule.to_owned();
        self.meter.record(|| {
            metrics::gauge!("sluice_concurrency_queued", "rule" => rule).increment(delta)
        });
    }

    /// A wait ended after `waited`: granted, or timed out.
    pub fn waited(&self, rule: &str, waited: Duration, timed_out: bool) {
        let r = rule.to_owned();
        self.meter.record(|| {
            metrics::histogram!("sluice_concurrency_wait_seconds", "rule" => r)
                .record(waited.as_secs_f64())
        });
        if timed_out {
            self.counter("sluice_concurrency_timeouts_total", rule, None, 1);
        }
    }

    /// A waiter whose call was cancelled (Envoy gave up) left the queue.
    pub fn cancelled(&self, rule: &str) {
        self.counter("sluice_concurrency_cancelled_total", rule, None, 1);
    }
}
