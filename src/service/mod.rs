//! The gRPC-facing layer: the ShouldRateLimit adapter, responses, stats, error mapping.
//!
//! - [`rls`]: `ShouldRateLimit` over the engine ([`crate::engine`]) every API calls.
//! - [`response`]: statuses, overall code, rate-limit headers.
//! - [`stats`]: upstream's per-rule counters (`ratelimit_service_rate_limit_*`).
//! - [`error`]: the single conversion of errors to `tonic::Status`.
//! - [`codec`], [`strict`]: the decision services' wire layer (malformed → INVALID_ARGUMENT,
//!   oversize → RESOURCE_EXHAUSTED).

pub mod codec;
pub mod error;
pub mod response;
pub mod rls;
pub mod stats;
pub mod strict;
