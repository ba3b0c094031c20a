//! Parsing a descriptor's `concurrency:` map into a [`ConcurrencyRule`], with the same
//! file/path/reason errors as every other rule field.

use crate::concurrency::rule::{
    parse_duration, ConcurrencyRule, LEASE_RANGE, MAX_QUEUE, MAX_QUEUE_TIMEOUT, MAX_SLOTS,
    MAX_WEIGHT, MAX_WEIGHTS,
};
use crate::rules::parse::{join, show, Parser};
use crate::rules::RuleError;
use serde_yaml::{Mapping, Value};
use std::time::Duration;

/// Keys a `concurrency` map may contain.
const CONCURRENCY_KEYS: &[&str] = &[
    "max",
    "queue",
    "queue_timeout",
    "lease",
    "fair_by",
    "weight_by",
    "weights",
    "lease_id",
];

/// `queue_timeout` when the rule has a queue but names no timeout.
const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// `lease` when the rule names none.
const DEFAULT_LEASE: Duration = Duration::from_secs(300);

impl Parser<'_> {
    /// One `concurrency` map.
    pub(super) fn concurrency(&self, v: &Value, path: &str) -> Result<ConcurrencyRule, RuleError> {
        let Value::Mapping(m) = v else {
            return Err(self.err(path, format!("must be a map, not {}", show(v))));
        };
        self.check_keys(m, path, CONCURRENCY_KEYS)?;
        let max = match self.u32_field(m, "max", path)? {
            None => return Err(self.err(&join(path, "max"), "is required")),
            Some(n) if n == 0 || n > MAX_SLOTS => {
                return Err(self.err(
                    &join(path, "max"),
                    format!("must be from 1 to {MAX_SLOTS}, not {n}"),
                ))
            }
            Some(n) => n,
        };
        let queue = match self.u32_field(m, "queue", path)?.unwrap_or(0) {
            n if n > MAX_QUEUE => {
                return Err(self.err(
                    &join(path, "queue"),
                    format!("must be from 0 to {MAX_QUEUE}, not {n}"),
                ))
            }
            n => n,
        };
        let queue_timeout = self
            .duration(m, "queue_timeout", path)?
            .unwrap_or(DEFAULT_QUEUE_TIMEOUT);
        if queue_timeout.is_zero() || queue_timeout > MAX_QUEUE_TIMEOUT {
            return Err(self.err(
                &join(path, "queue_timeout"),
                format!(
                    "must be more than 0 and at most {}s",
                    MAX_QUEUE_TIMEOUT.as_secs()
                ),
            ));
        }
        let lease = self.duration(m, "lease", path)?.unwrap_or(DEFAULT_LEASE);
        if lease < LEASE_RANGE.0 || lease > LEASE_RANGE.1 {
            return Err(self.err(
                &join(path, "lease"),
                format!(
                    "must be from {}s to {}s",
                    LEASE_RANGE.0.as_secs(),
                    LEASE_RANGE.1.as_secs()
                ),
            ));
        }
        let fair_by = self.attribute(m, "fair_by", path)?;
        let weight_by = self.attribute(m, "weight_by", path)?;
        let lease_id = self.attribute(m, "lease_id", path)?;
        if lease_id.is_some() && (lease_id == fair_by || lease_id == weight_by) {
            return Err(self.err(
                &join(path, "lease_id"),
                "must name another descriptor key than fair_by and weight_by",
            ));
        }
        let weights = self.weights(m, path)?;
        if !weights.is_empty() && fair_by.is_none() {
            return Err(self.err(
                &join(path, "weights"),
                "weights need fair_by (the groups that share the slots)",
            ));
        }
        Ok(ConcurrencyRule {
            max,
            queue,
            queue_timeout,
            lease,
            fair_by,
            weight_by,
            weights,
            lease_id,
        })
    }

    /// A duration field: `30s`, `5m`, `250ms`, `1h`, or a number of seconds.
    fn duration(&self, m: &Mapping, key: &str, path: &str) -> Result<Option<Duration>, RuleError> {
        let here = join(path, key);
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let text = self.scalar(v, &here)?;
                parse_duration(&text).map(Some).ok_or_else(|| {
                    self.err(
                        &here,
                        format!("invalid duration '{text}' (expected e.g. 250ms, 30s, 5m, 1h; at most 24h)"),
                    )
                })
            }
        }
    }

    /// A request attribute's descriptor key: a non-empty string.
    fn attribute(&self, m: &Mapping, key: &str, path: &str) -> Result<Option<String>, RuleError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let text = self.scalar(v, &join(path, key))?;
                if text.is_empty() {
                    return Err(self.err(&join(path, key), "must name a descriptor key"));
                }
                Ok(Some(text))
            }
        }
    }

    /// `weights: {value: n, …}`, each 1..=[`MAX_WEIGHT`].
    fn weights(
        &self,
        m: &Mapping,
        path: &str,
    ) -> Result<hashbrown::HashMap<String, u32>, RuleError> {
        let here = join(path, "weights");
        let map = match m.get("weights") {
            None | Some(Value::Null) => return Ok(Default::default()),
            Some(Value::Mapping(map)) => map,
            Some(other) => {
                return Err(self.err(&here, format!("must be a map, not {}", show(other))))
            }
        };
        if map.len() > MAX_WEIGHTS {
            return Err(self.err(&here, format!("at most {MAX_WEIGHTS} entries")));
        }
        let mut out = hashbrown::HashMap::with_capacity(map.len());
        for (k, v) in map {
            let name = self.scalar(k, &here)?;
            let at = join(&here, &name);
            let w = match v {
                Value::Number(n) => n
                    .as_u64()
                    .filter(|w| (1..=u64::from(MAX_WEIGHT)).contains(w)),
                _ => None,
            };
            let Some(w) = w else {
                return Err(self.err(
                    &at,
                    format!(
                        "weight must be an integer from 1 to {MAX_WEIGHT}, not {}",
                        show(v)
                    ),
                ));
            };
            out.insert(name, w as u32);
        }
        Ok(out)
    }
}
