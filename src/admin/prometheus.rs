//! The Prometheus scrape: this server's registry ([`crate::meter`]) followed by the process
//! series ([`super::process`]), served on the HTTP port's `/metrics` and, alone, on the
//! metrics port ([`metrics_router`]: what upstream's `PROMETHEUS_ADDR` / `PROMETHEUS_PATH`
//! bind; Envoy Gateway scrapes `:19001/metrics`).

use crate::admin::{process, AdminState};
use crate::store::Store;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;

/// The text exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything a scrape shows, fresh: gauges read at scrape time are set first.
pub async fn text<S: Store>(state: &AdminState<S>) -> String {
    if let Some(n) = state.limiter.store().live_keys() {
        state
            .meter
            .record(|| metrics::gauge!("sluice_memory_store_keys").set(n as f64));
    }
    let mut text = state.meter.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&process::scrape().await);
    text
}

/// `GET` handler of a scrape.
pub async fn handler<S: Store>(State(st): State<Arc<AdminState<S>>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text(&st).await).into_response()
}

/// A router that serves only the scrape, at `path` (`/metrics` by default). The path is
/// compared as a plain string, never parsed as a route pattern, so no configured path can
/// make routing fail; other paths are 404, other methods 405.
pub fn metrics_router<S: Store>(state: Arc<AdminState<S>>, path: &str) -> Router {
    let path: Arc<str> = Arc::from(path);
    Router::new()
        .fallback(
            move |st: State<Arc<AdminState<S>>>, method: Method, uri: Uri| {
                let path = Arc::clone(&path);
                async move {
                    if uri.path() != &*path {
                        return (StatusCode::NOT_FOUND, "not found\n").into_response();
                    }
                    if method != Method::GET && method != Method::HEAD {
                        let mut r = (StatusCode::METHOD_NOT_ALLOWED, "use GET\n").into_response();
                        r.headers_mut()
                            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                        return r;
                    }
                    handler(st).await
                }
            },
        )
        .with_state(state)
}
