//! The HTTP admin port (default 8080, as upstream): `/healthcheck`, `/rlconfig` (the loaded
//! rules, one line per limit) and Prometheus `/metrics`.
//!
//! Metrics are recorded anywhere with the `metrics` crate macros; the recorder is installed once
//! per process and rendered here.

use crate::rules::Rules;
use arc_swap::ArcSwap;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;

/// The process-wide Prometheus recorder's handle.
static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle; `None` if some
/// other recorder was installed first.
pub fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|()| handle)
        })
        .clone()
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    rules: Arc<ArcSwap<Rules>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = prometheus();
    let app = Router::new()
        .route("/healthcheck", get(|| async { "OK" }))
        .route(
            "/rlconfig",
            get(move || {
                let rules = rules.load_full();
                async move {
                    let mut text = rules.describe().join("\n");
                    text.push('\n');
                    text
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move { handle.map(|h| h.render()).unwrap_or_default() }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
