//! sluice: a rate-limit service for Envoy.
//!
//! It answers `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` with the rule
//! format and decisions of envoyproxy/ratelimit, counting in memory (or, later, in Redis).
//!
//! One request, top to bottom:
//!
//! - [`server`]: the tonic server (ShouldRateLimit, health, reflection, graceful shutdown).
//! - [`admin`]: the HTTP admin port (`/healthcheck`, `/metrics`).
//! - [`service`]: validates the request ([`service::validate`]), runs the decision flow
//!   ([`service::rls`]) and shapes the answer ([`service::response`]); the only place where
//!   errors become `tonic::Status` is [`service::error`].
//! - [`rules`]: rule files → validated tree → lookup of each descriptor.
//! - [`limiter`]: the [`limiter::plan::Plan`] of counters a request needs, and the pure
//!   algorithms (fixed window, sliding window, sliding log, token bucket).
//! - [`store`]: where counters live; [`store::memory`] is the embedded default.
//! - [`clock`]: injectable time.
//! - [`settings`]: flags, `SLUICE_*` environment and settings file, validated once.

#![forbid(unsafe_code)]

pub mod admin;
pub mod clock;
pub mod limiter;
pub mod overrides;
pub mod rules;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod telemetry;
