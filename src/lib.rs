//! sluice: a rate-limit service for Envoy.
//!
//! It answers `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` with the rule
//! format and decisions of envoyproxy/ratelimit, counting in memory or in Redis.
//!
//! One request, top to bottom:
//!
//! - [`server`]: the tonic server (ShouldRateLimit, health, reflection, graceful shutdown).
//! - [`admin`]: the HTTP port (`/healthcheck`, `/rlconfig`, `/metrics`, `/json`) and the
//!   authenticated admin API (runtime overrides, usage, reset).
//! - [`service`]: validates the request ([`service::validate`]), runs the decision flow
//!   ([`service::rls`]) and shapes the answer ([`service::response`]); the only place where
//!   errors become `tonic::Status` is [`service::error`].
//! - [`authz`]: ext_authz Check: API key → identity → the same limits, in one hop.
//! - [`rules`]: rule files → validated tree → lookup of each descriptor.
//! - [`limiter`]: the [`limiter::plan::Plan`] of counters a request needs, and the pure
//!   algorithms (fixed window, sliding window, sliding log, token bucket).
//! - [`overrides`]: operators' temporary limits, consulted by the plan after the rules, shared
//!   between replicas through Redis.
//! - [`store`]: where counters live; [`store::memory`] is the embedded default.
//! - [`net`]: connection deadlines (first request, idle) and accept-error handling, both ports.
//! - [`clock`]: injectable time; [`secret`]: constant-time comparison of secrets.
//! - [`settings`]: flags, `SLUICE_*` environment and settings file, validated once.
//! - [`telemetry`]: logs, spans, optional OTLP export.

#![forbid(unsafe_code)]

pub mod admin;
pub mod authz;
pub mod clock;
pub mod limiter;
pub mod net;
pub mod overrides;
pub mod rules;
pub mod secret;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod telemetry;
