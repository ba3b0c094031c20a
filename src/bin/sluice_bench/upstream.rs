//! `sluice-bench upstream`: the HTTP/1.1 upstream behind Envoy in the Envoy benchmarks and tests.
//!
//! * Any method and path answers `200 ok`, `--delay-ms` (or the request's `x-delay-ms`) late: a
//!   fast or a slow upstream.
//! * `POST /v1/chat/completions` and `POST /v1/completions` always answer like an LLM endpoint
//!   (no flag to turn on: no other test uses those paths): token usage decided up front from
//!   `max_tokens` (`llm_request`), sent in response headers and an OpenAI-shaped body, optionally
//!   streamed for a set time (`llm_reply`). Bad input is a 400 (413 for a body over 1 MiB)
//!   with an OpenAI-shaped error naming the field or header; other methods on those paths 405.
//!
//! The delay comes before the response headers, whatever the route.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use clap::Args;
use futures_util::StreamExt;
use tokio::net::TcpListener;

use crate::llm_reply::{refusal, Answer};
use crate::llm_request::{
    Endpoint, LlmConfig, LlmError, LlmRequest, UsageRatio, MAX_BODY_BYTES, MAX_STREAM_MS,
    MAX_TOKENS,
};
use crate::{announce, parse_loopback, shutdown_signal, BoxError};

/// The longest delay `upstream` adds to a response (`--delay-ms`, `x-delay-ms`).
pub(crate) const MAX_DELAY_MS: u64 = 60_000;
/// How long a request body may take to arrive before the request is refused (408).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub(crate) struct UpstreamArgs {
    /// Address to listen on; port 0 picks a free port. Loopback only.
    #[arg(long, value_parser = parse_loopback)]
    addr: SocketAddr,
    /// Answer every request this many milliseconds late (a slow upstream), at most 60 000. A
    /// request's own `x-delay-ms` header replaces it for that request (capped at 60 000).
    #[arg(long, default_value_t = 0, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(..=MAX_DELAY_MS))]
    delay_ms: u64,
    /// Model endpoints: completion tokens = max_tokens x RATIO, rounded down, when the request
    /// has no `x-completion-tokens` header. A decimal from 0 to 1, at most 6 decimal places.
    #[arg(long, default_value = "0.5", value_name = "RATIO")]
    usage_ratio: UsageRatio,
    /// Model endpoints: max_tokens when neither the body nor `x-max-tokens` gives one.
    #[arg(long, default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TOKENS))]
    default_max_tokens: u64,
    /// Model endpoints: stream every answer over this many milliseconds unless the body says
    /// `"stream": false` (0: only when the body says `"stream": true` or the request has
    /// `x-stream-ms`). At most 60 000.
    #[arg(long, default_value_t = 0, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(..=MAX_STREAM_MS))]
    stream_ms: u64,
}

/// What the model routes share.
struct LlmState {
    /// The validated flags.
    config: LlmConfig,
    /// `--delay-ms`: the delay when a request has no valid `x-delay-ms`.
    default_delay_ms: u64,
    /// Numbers the answers' ids, so each is unique within the process.
    next_id: AtomicU64,
}

/// Serves until SIGTERM/SIGINT.
pub(crate) async fn run_upstream(args: UpstreamArgs) -> Result<(), BoxError> {
    let config = LlmConfig::new(args.usage_ratio, args.default_max_tokens, args.stream_ms)?;
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(args.addr).await?;
    let local = listener.local_addr()?;
    let app = router(config, args.delay_ms);
    // The same readiness line as the gRPC servers, so scripts wait for both alike.
    announce(local)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The routes: the two model endpoints, and `ok` for everything else.
fn router(config: LlmConfig, default_delay_ms: u64) -> axum::Router {
    let state = Arc::new(LlmState {
        config,
        default_delay_ms,
        next_id: AtomicU64::new(1),
    });
    let model_route = |endpoint: Endpoint| {
        let state = Arc::clone(&state);
        post(move |request: Request| {
            let state = Arc::clone(&state);
            async move { complete(&state, endpoint, request).await }
        })
    };
    axum::Router::new()
        .route("/v1/chat/completions", model_route(Endpoint::Chat))
        .route("/v1/completions", model_route(Endpoint::Completion))
        .fallback(move |headers: HeaderMap| async move {
            let delay = upstream_delay(&headers, default_delay_ms);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            "ok"
        })
}

/// One model request: read and check it, wait the delay, answer (or refuse).
async fn complete(state: &LlmState, endpoint: Endpoint, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let delay = upstream_delay(&parts.headers, state.default_delay_ms);
    let parsed = match read_body(&parts.headers, body).await {
        Ok(bytes) => LlmRequest::parse(endpoint, &parts.headers, &bytes, &state.config),
        Err(e) => Err(e),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match parsed {
        Ok(request) => {
            let seq = state.next_id.fetch_add(1, Ordering::Relaxed);
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Answer::new(request, seq, created).into_response()
        }
        Err(e) => refusal(&e),
    }
}

/// The request body, at most [`MAX_BODY_BYTES`] (a larger declared or sent body is refused
/// without reading the rest), arriving within [`BODY_TIMEOUT`].
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, LlmError> {
    let too_large = LlmError::BodyTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large);
    }
    let read = async {
        let mut data = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(|e| LlmError::BodyRead(e.to_string()))?;
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(bytes))
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or(Err(LlmError::BodyTimeout(BODY_TIMEOUT)))
}

/// How late to answer: the request's `x-delay-ms` (a whole number of milliseconds) if it has a
/// valid one, else `default_ms`; at most [`MAX_DELAY_MS`].
fn upstream_delay(headers: &HeaderMap, default_ms: u64) -> Duration {
    let ms = headers
        .get("x-delay-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(default_ms);
    Duration::from_millis(ms.min(MAX_DELAY_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_replaces_the_default_delay_within_the_cap() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-delay-ms", v.parse().expect("header value"));
            h
        };
        let none = HeaderMap::new();
        assert_eq!(upstream_delay(&none, 0), Duration::ZERO);
        assert_eq!(upstream_delay(&none, 250), Duration::from_millis(250));
        assert_eq!(upstream_delay(&with("40"), 250), Duration::from_millis(40));
        assert_eq!(upstream_delay(&with("0"), 250), Duration::ZERO);
        assert_eq!(
            upstream_delay(&with("soon"), 250),
            Duration::from_millis(250)
        );
        assert_eq!(upstream_delay(&with("-5"), 250), Duration::from_millis(250));
        assert_eq!(
            upstream_delay(&with("999999999"), 0),
            Duration::from_secs(60)
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_whether_declared_or_sent() {
        let mut declared = HeaderMap::new();
        declared.insert(CONTENT_LENGTH, (MAX_BODY_BYTES + 1).into());
        let refused = read_body(&declared, Body::empty()).await;
        assert!(matches!(refused, Err(LlmError::BodyTooLarge { .. })));

        let chunks = (0..3).map(|_| Ok::<_, std::io::Error>(vec![b' '; MAX_BODY_BYTES / 2]));
        let sent = Body::from_stream(futures_util::stream::iter(chunks));
        let refused = read_body(&HeaderMap::new(), sent).await;
        assert!(matches!(refused, Err(LlmError::BodyTooLarge { .. })));

        let exact = Body::from(vec![b'x'; MAX_BODY_BYTES]);
        let read = read_body(&HeaderMap::new(), exact)
            .await
            .expect("at the limit");
        assert_eq!(read.len(), MAX_BODY_BYTES);
    }
}
