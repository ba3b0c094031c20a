//! Request validation: everything the limiter relies on is checked here, and a bad request is
//! answered `INVALID_ARGUMENT` naming the field — never a panic, never a guess.

use crate::rules::unit::Unit;
use crate::service::error::ServiceError;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;

/// Checks a `RateLimitRequest` before it is planned.
pub fn validate(req: &RateLimitRequest) -> Result<(), ServiceError> {
    if req.domain.is_empty() {
        return Err(ServiceError::invalid(
            "domain",
            "rate limit domain must not be empty",
        ));
    }
    if req.descriptors.is_empty() {
        return Err(ServiceError::invalid(
            "descriptors",
            "rate limit descriptor list must not be empty",
        ));
    }
    for (i, d) in req.descriptors.iter().enumerate() {
        if d.entries.is_empty() {
            return Err(ServiceError::invalid(
                format!("descriptors[{i}].entries"),
                "a descriptor needs at least one entry",
            ));
        }
        if let Some(j) = d.entries.iter().position(|e| e.key.is_empty()) {
            return Err(ServiceError::invalid(
                format!("descriptors[{i}].entries[{j}].key"),
                "entry key must not be empty",
            ));
        }
        if let Some(limit) = &d.limit {
            if Unit::from_override(limit.unit).is_none() {
                return Err(ServiceError::invalid(
                    format!("descriptors[{i}].limit.unit"),
                    format!(
                        "unit {} is not a rate limit unit (expected SECOND=1, MINUTE=2, HOUR=3, DAY=4, MONTH=5 or YEAR=6)",
                        limit.unit
                    ),
                ));
            }
        }
    }
    Ok(())
}
