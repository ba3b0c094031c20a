//! Parsing a rule file's top-level `idempotency: {key, ttl}` ([`crate::limiter::once`]), with
//! the same file/path/reason errors as every other rule field.
//!
//! - `key`: the descriptor key whose single-entry descriptor carries a request's idempotency
//!   key (e.g. `request_id`, filled by Envoy from `Idempotency-Key` or `x-request-id`); a
//!   non-empty string of at most [`MAX_KEY_BYTES`].
//! - `ttl`: how long a repeat is recognised: `250ms`, `30s`, `10m`, `1h`, at least 1 s and at
//!   most 24 h; 10 minutes when absent.
//! - `max_repeats`: how many repeats one record answers (1 to [`MAX_REPEATS`]); past that the
//!   key is charged as a new request. Absent: every repeat within the ttl.

use crate::concurrency::rule::parse_duration;
use crate::rules::model::Idempotency;
use crate::rules::parse::{join, show, Parser};
use crate::rules::RuleError;
use serde_yaml::{Mapping, Value};
use std::time::Duration;

/// The longest idempotency descriptor key.
pub const MAX_KEY_BYTES: usize = 256;

/// The ttl when a rule gives none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// Keys `idempotency` may contain.
const KEYS: &[&str] = &["key", "ttl", "max_repeats"];

/// The most repeats a rule may let one record answer.
pub const MAX_REPEATS: u32 = 1_000_000;

impl Parser<'_> {
    /// The domain's `idempotency` (None when absent or null).
    pub(super) fn idempotency(&self, v: Option<&Value>) -> Result<Option<Idempotency>, RuleError> {
        let path = "idempotency";
        let m: &Mapping = match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Mapping(m)) => m,
            Some(other) => {
                return Err(self.err(
                    path,
                    format!("must be a map with 'key' and 'ttl', not {}", show(other)),
                ))
            }
        };
        self.check_keys(m, path, KEYS)?;
        let key_path = join(path, "key");
        let key = match m.get("key") {
            None | Some(Value::Null) => {
                return Err(self.err(
                    &key_path,
                    "must name the descriptor key of the idempotency key",
                ))
            }
            Some(v) => self.scalar(v, &key_path)?,
        };
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(self.err(
                &key_path,
                format!("must be a descriptor key of 1 to {MAX_KEY_BYTES} bytes"),
            ));
        }
        let ttl_path = join(path, "ttl");
        let ttl = match m.get("ttl") {
            None | Some(Value::Null) => DEFAULT_TTL,
            Some(v) => {
                let text = self.scalar(v, &ttl_path)?;
                match parse_duration(&text) {
                    Some(d) if d >= Duration::from_secs(1) => d,
                    _ => {
                        return Err(self.err(
                            &ttl_path,
                            format!(
                                "invalid duration '{text}' (expected e.g. 30s, 10m, 1h; from 1s to 24h)"
                            ),
                        ))
                    }
                }
            }
        };
        let repeats_path = join(path, "max_repeats");
        let max_repeats = match self.u32_field(m, "max_repeats", path)? {
            None => None,
            Some(n) if (1..=MAX_REPEATS).contains(&n) => Some(n),
            Some(n) => {
                return Err(self.err(
                    &repeats_path,
                    format!("must be from 1 to {MAX_REPEATS}, not {n}"),
                ))
            }
        };
        Ok(Some(Idempotency {
            key,
            ttl,
            max_repeats,
        }))
    }
}
