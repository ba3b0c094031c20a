//! A descriptor's `concurrency:` rule: how many requests may be in flight at once, how many
//! may wait, for how long, how waiters share the slots, and how a slot is tied to a request.
//!
//! ```yaml
//! - key: pool
//!   value: gpu
//!   concurrency: {max: 100, queue: 500, queue_timeout: 30s, lease: 300s,
//!                 fair_by: tenant, weight_by: tier, weights: {pro: 2, free: 1}, lease_id: request_id}
//! ```
//!
//! `fair_by`, `weight_by` and `lease_id` name descriptor keys that follow the matched node in a
//! request: they are attributes of the request (who it is for, how much it weighs, which
//! request holds the slot), never part of rule matching nor of the counter key.

use hashbrown::HashMap;
use std::time::Duration;

/// The most slots one key may have.
pub const MAX_SLOTS: u32 = 1_000_000;
/// The longest waiting room one key may have.
pub const MAX_QUEUE: u32 = 100_000;
/// The longest a request may wait for a slot.
pub const MAX_QUEUE_TIMEOUT: Duration = Duration::from_secs(600);
/// The shortest and longest lease: a slot whose release never comes is freed after it.
pub const LEASE_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));
/// The most entries `weights` may have, and the largest weight.
pub const MAX_WEIGHTS: usize = 10_000;
/// The largest weight of one `fair_by` value.
pub const MAX_WEIGHT: u32 = 1_000;

/// A validated `concurrency:` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyRule {
    /// Slots: requests of one key that may hold a slot at once (1..=[`MAX_SLOTS`]).
    pub max: u32,
    /// Requests that may wait for a slot (0: a full key answers OVER_LIMIT at once).
    pub queue: u32,
    /// The longest wait (also capped by the caller's deadline and `--request-timeout-ms`).
    pub queue_timeout: Duration,
    /// A slot whose release never comes (Envoy crashed, the call was lost) is freed after it.
    pub lease: Duration,
    /// The descriptor key whose value waiters are grouped by (round-robin between groups);
    /// `None`: one FIFO.
    pub fair_by: Option<String>,
    /// The descriptor key whose value picks a group's weight in [`ConcurrencyRule::weights`].
    pub weight_by: Option<String>,
    /// Weight per `weight_by` value (or per `fair_by` value without `weight_by`); 1 when absent.
    pub weights: HashMap<String, u32>,
    /// The descriptor key whose value identifies the request holding a slot (Envoy's
    /// `x-request-id`): a release frees only a slot this id holds.
    pub lease_id: Option<String>,
}

impl ConcurrencyRule {
    /// Whether `key` names one of this rule's request attributes.
    pub fn is_attribute(&self, key: &str) -> bool {
        [&self.fair_by, &self.weight_by, &self.lease_id]
            .into_iter()
            .any(|k| k.as_deref() == Some(key))
    }

    /// A waiter's weight: by its `weight_by` value (else its `fair_by` value); 1 when unknown.
    pub fn weight(&self, weight_value: Option<&str>, fair_value: Option<&str>) -> u32 {
        let by = if self.weight_by.is_some() {
            weight_value
        } else {
            fair_value
        };
        by.and_then(|v| self.weights.get(v).copied()).unwrap_or(1)
    }

    /// One line for `/rlconfig`.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "concurrency max={} queue={} queue_timeout={}ms lease={}s",
            self.max,
            self.queue,
            self.queue_timeout.as_millis(),
            self.lease.as_secs()
        );
        for (name, v) in [
            ("fair_by", &self.fair_by),
            ("weight_by", &self.weight_by),
            ("lease_id", &self.lease_id),
        ] {
            if let Some(v) = v {
                line.push_str(&format!(" {name}={v}"));
            }
        }
        line
    }
}

/// Parses a duration as rule files write it: `250ms`, `30s`, `5m`, `1h`, or a bare number of
/// seconds. `None` when malformed or beyond a day.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (d <= Duration::from_secs(86_400)).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("12"), Some(Duration::from_secs(12)));
        for bad in ["", "s", "-1s", "1.5s", "10x", "25h", "9999999999s", "1 s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn weights_by_weight_key_else_fair_key() {
        let mut r = ConcurrencyRule {
            max: 1,
            queue: 0,
            queue_timeout: Duration::from_secs(1),
            lease: Duration::from_secs(1),
            fair_by: Some("tenant".into()),
            weight_by: None,
            weights: [("acme".to_owned(), 3)].into_iter().collect(),
            lease_id: None,
        };
        assert_eq!(r.weight(None, Some("acme")), 3);
        assert_eq!(r.weight(None, Some("other")), 1);
        r.weight_by = Some("tier".into());
        assert_eq!(r.weight(Some("acme"), Some("x")), 3);
        assert_eq!(r.weight(None, Some("acme")), 1);
    }
}
