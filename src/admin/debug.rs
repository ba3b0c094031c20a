//! The debug port (upstream's `DEBUG_HOST`/`DEBUG_PORT`, 6070): `/rlconfig`, which
//! `egctl x config ratelimit` reads, and `/stats`. Read-only; nothing here changes state.
//!
//! - `/`: the list of endpoints.
//! - `/rlconfig`: the loaded rules, one line per limit in upstream's format, then the active
//!   runtime overrides (the same text as on the HTTP port).
//! - `/stats`: the counters, as Prometheus text (upstream serves Go's expvar here).

use crate::admin::{control, prometheus, AdminState};
use crate::store::Store;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The endpoints, listed on `/`.
const INDEX: &str = "sluice debug port\n\
    /rlconfig: the loaded rate limit configuration, one line per limit\n\
    /stats: the counters (Prometheus text)\n";

/// The debug port's routes.
pub fn debug_router<S: Store>(state: Arc<AdminState<S>>) -> Router {
    Router::new()
        .route("/", get(|| async { INDEX }))
        .route("/rlconfig", get(control::rlconfig::<S>))
        .route("/stats", get(prometheus::handler::<S>))
        .with_state(state)
}
