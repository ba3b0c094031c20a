//! The HTTP admin port (default 8080, as upstream).
//!
//! - `/healthcheck`: `OK`, or 500 once shutdown has begun (load balancers stop first).
//! - `/rlconfig`: the loaded rules, one line per limit, then the active runtime overrides.
//! - `/metrics`: Prometheus ([`prometheus`]: this server's registry and the [`process`] series).
//! - `/json`: upstream's protojson `RateLimitRequest` → `RateLimitResponse` ([`json`]).
//! - `/admin/overrides`, `/admin/usage`, `/admin/reset`: the authenticated admin API
//!   ([`control`]): runtime overrides, a descriptor's usage, counter resets.
//!
//! Two more listeners serve parts of it, as upstream's ports do: the metrics port
//! ([`metrics_router`], `PROMETHEUS_ADDR`) and the debug port ([`debug_router`], `DEBUG_PORT`:
//! `/rlconfig`, `/stats`). All three share [`serve_router`]'s connection hygiene.
//!
//! Metrics are recorded anywhere with the `metrics` crate macros into the server's
//! [`Meter`] (never a process-wide recorder) and rendered here.

pub mod control;
pub mod debug;
pub mod json;
pub mod process;
pub mod prometheus;

pub use debug::debug_router;
pub use prometheus::metrics_router;

use crate::meter::Meter;
use crate::net::track::{self, Tracker};
use crate::net::{GuardedListener, Timeouts};
use crate::secret::constant_time_eq;
use crate::service::rls::RateLimiter;
use crate::store::Storage;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Who may use the admin API. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Callers must send `Authorization: Bearer <token>`.
    Token(String),
    /// No token, but the port listens on loopback only: anyone local may call.
    LoopbackOnly,
    /// No token on a reachable address: the admin API refuses every call.
    Disabled,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::LoopbackOnly => f.write_str("LoopbackOnly"),
            Auth::Disabled => f.write_str("Disabled"),
        }
    }
}

impl Auth {
    /// The policy for a port bound to `addr` with an optional token.
    pub fn new(token: Option<String>, addr: SocketAddr) -> Auth {
        match token {
            Some(t) => Auth::Token(t),
            None if addr.ip().is_loopback() => Auth::LoopbackOnly,
            None => Auth::Disabled,
        }
    }

    /// Lets a call through, or says why not. Calls with a body must declare it JSON, which a
    /// browser cannot send cross-site without a preflight (no CSRF against a loopback port);
    /// without a token, the Host must be loopback too (no DNS rebinding).
    pub fn check(&self, headers: &HeaderMap, has_body: bool) -> Result<(), Denied> {
        if has_body {
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if !json {
                return Err(Denied::NotJson);
            }
        }
        match self {
            Auth::LoopbackOnly => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if loopback_host(host) {
                    Ok(())
                } else {
                    Err(Denied::ForeignHost)
                }
            }
            Auth::Disabled => Err(Denied::Disabled),
            Auth::Token(token) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim());
                match given {
                    Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
                    Some(_) => Err(Denied::BadToken),
                    None => Err(Denied::NoToken),
                }
            }
        }
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why an admin call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header (401).
    NoToken,
    /// The wrong token (401).
    BadToken,
    /// The admin API is off (403).
    Disabled,
    /// A body that is not declared `application/json` (415).
    NotJson,
    /// No token, and a Host that is not loopback (403).
    ForeignHost,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::NoToken => unauthorized("missing Authorization: Bearer <token>"),
            Denied::BadToken => unauthorized("invalid bearer token"),
            Denied::NotJson => error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON: send Content-Type: application/json",
            ),
            Denied::ForeignHost => error(
                StatusCode::FORBIDDEN,
                "without an admin token the admin API answers only to a loopback Host",
            ),
            Denied::Disabled => error(
                StatusCode::FORBIDDEN,
                "admin API disabled: the HTTP port is not on loopback and no admin token is set (--admin-token-file)",
            ),
        }
    }
}

fn unauthorized(reason: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, reason);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// A JSON error body: `{"error": "<reason>"}`.
pub fn error(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": reason }).to_string(),
    )
        .into_response()
}

/// What the admin handlers share.
pub struct AdminState<S> {
    /// The decision engine (rules, overrides, store).
    pub limiter: Arc<RateLimiter<S>>,
    /// Who may call `/admin/*`.
    pub auth: Auth,
    /// Set when shutdown begins: `/healthcheck` then answers 500.
    pub draining: Arc<AtomicBool>,
    /// This server's metrics, rendered by `/metrics`.
    pub meter: Meter,
    /// With xDS: turns `true` at the first config; until then `/json` answers as gRPC does
    /// ("no rate limit configuration loaded"). `None`: rules come from files (always loaded).
    pub loaded: Option<tokio::sync::watch::Receiver<bool>>,
}

impl<S> AdminState<S> {
    /// Whether rules have been loaded (always, without xDS).
    pub fn config_loaded(&self) -> bool {
        self.loaded.as_ref().is_none_or(|l| *l.borrow())
    }
}

/// Bounds on the HTTP port's connections and request bodies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// First-request and idle deadlines (see [`crate::net`]).
    pub timeouts: Timeouts,
    /// `max_request_bytes`: a larger body (e.g. on `/json`) is 413 before it is buffered.
    pub max_request_bytes: usize,
    /// `request_timeout_ms`: a request not answered by then (a body that stalls) is 408.
    pub request_timeout: std::time::Duration,
    /// `max_connections`: open connections on the HTTP port.
    pub max_connections: usize,
}

/// The HTTP port's routes: `/healthcheck`, `/rlconfig`, `/metrics`, `/json`, `/admin/*`.
pub fn admin_router<S: Storage>(state: Arc<AdminState<S>>) -> Router {
    let draining = Arc::clone(&state.draining);
    Router::new()
        .route(
            "/healthcheck",
            get(move || {
                let draining = draining.load(Ordering::SeqCst);
                async move {
                    if draining {
                        (StatusCode::INTERNAL_SERVER_ERROR, "draining")
                    } else {
                        (StatusCode::OK, "OK")
                    }
                }
            }),
        )
        .route("/rlconfig", get(control::rlconfig::<S>))
        .route("/metrics", get(prometheus::handler::<S>))
        .route("/json", post(json::handle::<S>))
        .route(
            "/admin/overrides",
            get(control::list::<S>)
                .post(control::set::<S>)
                .delete(control::clear::<S>),
        )
        .route("/admin/usage", post(control::usage::<S>))
        .route("/admin/reset", post(control::reset::<S>))
        .with_state(state)
}

/// Serves the admin endpoints on `listener` until `shutdown` completes (see [`serve_router`]).
pub async fn serve<S: Storage>(
    listener: TcpListener,
    state: AdminState<S>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let meter = state.meter.clone();
    serve_router(
        listener,
        admin_router(Arc::new(state)),
        limits,
        &meter,
        shutdown,
    )
    .await
}

/// Serves `router` on `listener` until `shutdown` completes, with the HTTP port's hygiene —
/// the HTTP, metrics and debug ports all go through here: connections are held to
/// `limits.timeouts` and `limits.max_connections`, bodies to `limits.max_request_bytes`,
/// requests to `limits.request_timeout` (408), and accept errors (EMFILE) never end or spin
/// the loop. Connection counters are recorded in `meter`.
pub fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    meter: &Meter,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    let conns = crate::net::ConnMetrics::new(meter, limits.max_connections);
    let app = router
        .layer(DefaultBodyLimit::max(limits.max_request_bytes))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
                    Ok(response) => response,
                    Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
                }
            },
        ))
        .layer(axum::middleware::from_fn(track::axum_track));
    let listener = GuardedListener::new(listener, limits.timeouts, conns);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<Tracker>(),
    )
    .with_graceful_shutdown(shutdown)
    .into_future()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reachable_port_without_a_token_disables_the_admin_api() {
        let public: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert_eq!(Auth::new(None, public), Auth::Disabled);
        assert_eq!(Auth::new(None, local), Auth::LoopbackOnly);
        assert_eq!(Auth::new(Some("t".into()), public), Auth::Token("t".into()));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:9090",
            "127.1.2.3",
            "[::1]:8080",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1",
            "",
            "[::2]",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let shown = format!("{:?}", Auth::Token("s3cret-token-0123456789".into()));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
