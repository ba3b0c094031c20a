//! The validated form of a `RateLimitRequest`: every bound checked once, at the boundary, so
//! nothing after it (matching, planning, the stores) meets an unbounded or unknown value.
//!
//! [`ValidRequest::new`] is the only way to build one. It refuses, naming the field:
//! an empty domain or descriptor list, more than `max_descriptors` descriptors, a descriptor
//! without entries or with more than `max_entries`, an empty entry key, a key, value or domain
//! longer than `max_value_bytes`, a `hits_addend` above [`MAX_HITS`], and a limit override in an
//! unknown unit. The defaults are far beyond what Envoy sends (a route's `rate_limits` actions
//! make a handful of descriptors of a few entries each).

use crate::limiter::unit::Unit;
use crate::limiter::MAX_HITS;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;

/// Why a request was refused: the field (`descriptors[2].entries[0].value`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidRequest {
    /// The offending field's path in the request.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidRequest {
    /// Refuses `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> InvalidRequest {
        InvalidRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// How big a request may be (settings `max_descriptors`, `max_entries`, `max_value_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBounds {
    /// Descriptors per request.
    pub max_descriptors: usize,
    /// Entries per descriptor.
    pub max_entries: usize,
    /// Bytes of the domain and of each entry key and value.
    pub max_value_bytes: usize,
}

impl Default for RequestBounds {
    fn default() -> Self {
        RequestBounds {
            max_descriptors: 128,
            max_entries: 32,
            max_value_bytes: 4096,
        }
    }
}

/// A limit override carried by the request (`descriptor.limit`), in a known unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimit {
    /// Hits per unit.
    pub requests_per_unit: u32,
    /// A unit the limiter knows.
    pub unit: Unit,
}

/// One checked descriptor.
#[derive(Debug, Clone, Copy)]
pub struct ValidDescriptor<'r> {
    /// Its entries: 1..=`max_entries`, keys non-empty, keys and values bounded.
    pub entries: &'r [Entry],
    /// Hits to charge: the descriptor's `hits_addend`, else the request's (0 meaning 1).
    pub hits: u32,
    /// `is_negative_hits`: give the hits back.
    pub refund: bool,
    /// `descriptor.limit`, replacing the rules for this descriptor.
    pub limit: Option<RequestLimit>,
}

impl<'r> ValidDescriptor<'r> {
    /// The entries as `(key, value)` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&'r str, &'r str)> + Clone + 'r {
        self.entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
    }
}

/// A request that passed every bound.
#[derive(Debug, Clone)]
pub struct ValidRequest<'r> {
    /// The domain: non-empty and bounded.
    domain: &'r str,
    /// The descriptors in request order.
    descriptors: Vec<ValidDescriptor<'r>>,
}

impl<'r> ValidRequest<'r> {
    /// Checks `req` against `bounds`.
    pub fn new(
        req: &'r RateLimitRequest,
        bounds: &RequestBounds,
    ) -> Result<ValidRequest<'r>, InvalidRequest> {
        if req.domain.is_empty() {
            return Err(InvalidRequest::new(
                "domain",
                "rate limit domain must not be empty",
            ));
        }
        check_len(|| "domain".to_owned(), &req.domain, bounds)?;
        if req.descriptors.is_empty() {
            return Err(InvalidRequest::new(
                "descriptors",
                "rate limit descriptor list must not be empty",
            ));
        }
        if req.descriptors.len() > bounds.max_descriptors {
            return Err(InvalidRequest::new(
                "descriptors",
                format!(
                    "{} descriptors, more than max_descriptors ({})",
                    req.descriptors.len(),
                    bounds.max_descriptors
                ),
            ));
        }
        let request_hits = req.hits_addend.max(1);
        let mut descriptors = Vec::with_capacity(req.descriptors.len());
        for (i, d) in req.descriptors.iter().enumerate() {
            if d.entries.is_empty() {
                return Err(InvalidRequest::new(
                    format!("descriptors[{i}].entries"),
                    "a descriptor needs at least one entry",
                ));
            }
            if d.entries.len() > bounds.max_entries {
                return Err(InvalidRequest::new(
                    format!("descriptors[{i}].entries"),
                    format!(
                        "{} entries, more than max_entries ({})",
                        d.entries.len(),
                        bounds.max_entries
                    ),
                ));
            }
            for (j, e) in d.entries.iter().enumerate() {
                if e.key.is_empty() {
                    return Err(InvalidRequest::new(
                        format!("descriptors[{i}].entries[{j}].key"),
                        "entry key must not be empty",
                    ));
                }
                check_len(
                    || format!("descriptors[{i}].entries[{j}].key"),
                    &e.key,
                    bounds,
                )?;
                check_len(
                    || format!("descriptors[{i}].entries[{j}].value"),
                    &e.value,
                    bounds,
                )?;
            }
            let hits = match &d.hits_addend {
                None => request_hits,
                Some(h) => u32::try_from(h.value)
                    .ok()
                    .filter(|&v| u64::from(v) <= MAX_HITS)
                    .ok_or_else(|| {
                        InvalidRequest::new(
                            format!("descriptors[{i}].hits_addend"),
                            format!(
                                "{} is more than the most hits a request may ask for ({MAX_HITS})",
                                h.value
                            ),
                        )
                    })?,
            };
            let limit = match &d.limit {
                None => None,
                Some(l) => Some(RequestLimit {
                    requests_per_unit: l.requests_per_unit,
                    unit: Unit::from_override(l.unit).ok_or_else(|| {
                        InvalidRequest::new(
                            format!("descriptors[{i}].limit.unit"),
                            format!(
                                "unit {} is not a rate limit unit (expected SECOND=1, MINUTE=2, HOUR=3, DAY=4, MONTH=5 or YEAR=6)",
                                l.unit
                            ),
                        )
                    })?,
                }),
            };
            descriptors.push(ValidDescriptor {
                entries: &d.entries,
                hits,
                refund: d.is_negative_hits,
                limit,
            });
        }
        Ok(ValidRequest {
            domain: &req.domain,
            descriptors,
        })
    }

    /// The domain.
    pub fn domain(&self) -> &'r str {
        self.domain
    }

    /// The descriptors, in request order.
    pub fn descriptors(&self) -> &[ValidDescriptor<'r>] {
        &self.descriptors
    }
}

/// Refuses `text` longer than `max_value_bytes`; `field` names it (built only on failure).
fn check_len(
    field: impl FnOnce() -> String,
    text: &str,
    bounds: &RequestBounds,
) -> Result<(), InvalidRequest> {
    if text.len() > bounds.max_value_bytes {
        return Err(InvalidRequest::new(
            field(),
            format!(
                "{} bytes, more than max_value_bytes ({})",
                text.len(),
                bounds.max_value_bytes
            ),
        ));
    }
    Ok(())
}
