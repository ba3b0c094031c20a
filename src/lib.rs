//! sluice: a rate-limit service for Envoy.
//!
//! It answers `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` with the rule
//! format and decisions of envoyproxy/ratelimit, counting in memory or in Redis.
//!
//! One request, top to bottom — each layer calls only the ones below it:
//!
//! - [`server`]: the tonic server (ShouldRateLimit, health, reflection, graceful shutdown).
//! - [`admin`]: the HTTP port (`/healthcheck`, `/rlconfig`, `/metrics`, `/json`) and the
//!   authenticated admin API (runtime overrides, usage, reset); upstream's debug port
//!   (`/rlconfig`, `/stats`) and a metrics-only port, with process metrics.
//! - [`service`]: the gRPC adapter ([`service::rls`]), the answer ([`service::response`]),
//!   upstream's per-rule stats ([`service::stats`]); the only place where errors become
//!   `tonic::Status` is [`service::error`].
//! - [`authz`]: ext_authz Check: API key → identity → the same limits, in one hop.
//! - [`engine`]: the decision engine every API calls: validate → resolve → plan → count →
//!   answer.
//! - [`request`]: the validated request: every bound checked once, at the boundary.
//! - [`effective`]: each descriptor's effective limits — rules, request overrides, `replaces`,
//!   runtime overrides — resolved in one place into plain data.
//! - [`rules`]: rule files → validated tree → lookup of each descriptor.
//! - [`xds`]: rules pushed over xDS (ADS, `RateLimitConfig`) instead of read from files:
//!   the same validation, ACK/NACK, reconnects with backoff.
//! - [`overrides`]: operators' temporary limits, shared between replicas through Redis.
//! - [`limiter`]: the [`limiter::plan::Plan`] of ops a request needs (zipped with the store's
//!   outcomes by type), algorithms and units, calendar windows, the pure algorithms, and
//!   idempotent charging ([`limiter::once`]: what a repeat is, what it answers).
//! - [`concurrency`]: in-flight limits: slot tables (memory, Redis), the fair waiting room
//!   that holds a call until a slot frees, and the claims a request's descriptors make.
//! - [`keys`]: every counter key, escaped so no value can forge another's, bounded in length.
//! - [`store`]: where counters live ([`store::Store`]) and where overrides are shared
//!   ([`store::OverrideMedium`]); [`store::memory`] is the embedded default.
//! - [`net`]: connection deadlines (first request, idle) and accept-error handling, both ports;
//!   TLS on the gRPC port ([`net::tls`]: certificates, client verification, reload).
//! - [`clock`]: injectable time; [`secret`]: constant-time comparison of secrets.
//! - [`settings`]: one table of settings → flags, `SLUICE_*` and upstream environment, settings
//!   file; typed and validated once.
//! - [`telemetry`]: logs, spans, optional OTLP export; [`meter`]: each server's own metrics.

#![forbid(unsafe_code)]

pub mod admin;
pub mod authz;
pub mod clock;
pub mod concurrency;
pub mod effective;
pub mod engine;
pub mod keys;
pub mod limiter;
pub mod meter;
pub mod net;
pub mod overrides;
pub mod request;
pub mod rules;
pub mod secret;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod xds;
