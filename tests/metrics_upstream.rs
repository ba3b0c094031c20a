//! The series Envoy Gateway's dashboards and upstream's mapper name, through a real server:
//! per-rule counters, `ratelimit_service_total_requests{grpc_method}`,
//! `ratelimit_service_response_time_seconds`, `ratelimit_service_should_rate_limit_error
//! {err_type}` (a refused request is `service_error`, a Redis failure `redis_error`) and the
//! process series (`process_resident_memory_bytes`, …), with their HELP and TYPE lines — on
//! the HTTP port's `/metrics` and on the metrics-only port (`--prometheus-addr`/`-path`).

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::http::{http_get, http_request};
use support::redis::RedisServer;
use support::*;

const RULES: &str = "
domain: up
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 3}
";

/// The value of the series whose line starts with `series` followed by a space.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

async fn scrape(s: &TestServer) -> String {
    scrape_at(s.http, "/metrics").await
}

async fn scrape_at(addr: std::net::SocketAddr, path: &str) -> String {
    let r = http_get(addr, path, &[]).await.expect("GET metrics");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{r:?}"
    );
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_series_count_requests_errors_and_the_process() {
    let s = TestServer::start(&[("up.yaml", RULES)], &[]).await;
    let mut c = s.client().await;
    let before = scrape(&s).await;
    // Registered at start, at zero: rate() works from the first scrape.
    assert_eq!(
        must(
            &before,
            "ratelimit_service_total_requests{grpc_method=\"ShouldRateLimit\"}"
        ),
        0.0
    );
    assert_eq!(
        must(
            &before,
            "ratelimit_service_should_rate_limit_error{err_type=\"redis_error\"}"
        ),
        0.0
    );

    let codes: Vec<Code> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(overall(
                &call(&mut c, req("up", vec![desc(&[("user", "a")])])).await,
            ));
        }
        v
    };
    assert_eq!(
        codes.iter().filter(|c| **c == Code::OverLimit).count(),
        2,
        "{codes:?}"
    );
    // An invalid request: answered with an error, counted as upstream's service_error.
    let err = c
        .should_rate_limit(req("", vec![desc(&[("user", "a")])]))
        .await
        .expect_err("an empty domain is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    // `/json` is not a gRPC call (not in total_requests) but its failures count, as upstream's.
    let json = http_request(
        s.http,
        "POST",
        "/json",
        &[],
        Some(r#"{"domain":"","descriptors":[{"entries":[{"key":"user","value":"b"}]}]}"#),
    )
    .await
    .expect("POST /json");
    assert_eq!(json.status, 400, "{json:?}");

    let m = scrape(&s).await;
    let rule = "{domain=\"up\",key1=\"user\"}";
    assert_eq!(
        must(
            &m,
            &format!("ratelimit_service_rate_limit_total_hits{rule}")
        ),
        5.0
    );
    assert_eq!(
        must(
            &m,
            &format!("ratelimit_service_rate_limit_within_limit{rule}")
        ),
        3.0
    );
    assert_eq!(
        must(
            &m,
            &format!("ratelimit_service_rate_limit_over_limit{rule}")
        ),
        2.0
    );
    assert_eq!(
        must(
            &m,
            "ratelimit_service_total_requests{grpc_method=\"ShouldRateLimit\"}"
        ),
        6.0,
        "5 decided + 1 refused gRPC calls"
    );
    assert_eq!(
        must(
            &m,
            "ratelimit_service_response_time_seconds_count{grpc_method=\"ShouldRateLimit\"}"
        ),
        6.0
    );
    assert_eq!(
        must(
            &m,
            "ratelimit_service_response_time_seconds_bucket{grpc_method=\"ShouldRateLimit\",le=\"+Inf\"}"
        ),
        6.0
    );
    assert!(
        m.contains("ratelimit_service_response_time_seconds_bucket{grpc_method=\"ShouldRateLimit\",le=\"0.02\"}"),
        "the latency buckets:\n{m}"
    );
    assert_eq!(
        must(
            &m,
            "ratelimit_service_should_rate_limit_error{err_type=\"service_error\"}"
        ),
        2.0,
        "the gRPC and the /json refusal"
    );
    assert_eq!(
        must(
            &m,
            "ratelimit_service_should_rate_limit_error{err_type=\"redis_error\"}"
        ),
        0.0
    );

    // The process, as every Prometheus client library names it.
    assert!(must(&m, "process_resident_memory_bytes") > 0.0, "{m}");
    assert!(must(&m, "process_virtual_memory_bytes") >= must(&m, "process_resident_memory_bytes"));
    assert!(must(&m, "process_open_fds") > 0.0);
    assert!(must(&m, "process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let started = must(&m, "process_start_time_seconds");
    assert!(started > 0.0 && started <= now + 1.0, "{started} vs {now}");
    for (name, kind) in [
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_open_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("ratelimit_service_total_requests", "counter"),
        ("ratelimit_service_should_rate_limit_error", "counter"),
        ("ratelimit_service_response_time_seconds", "histogram"),
    ] {
        assert!(
            m.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}:\n{m}"
        );
    }
    assert!(m.contains("# HELP process_resident_memory_bytes "), "{m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_serves_the_same_series_at_its_path_only() {
    let s = TestServer::start(
        &[("up.yaml", RULES)],
        &[
            "--prometheus-addr",
            "127.0.0.1:0",
            "--prometheus-path",
            "/stats/prometheus",
        ],
    )
    .await;
    let port = s.prometheus.expect("the metrics port is bound");
    let mut c = s.client().await;
    call(&mut c, req("up", vec![desc(&[("user", "a")])])).await;
    let m = scrape_at(port, "/stats/prometheus").await;
    assert_eq!(
        must(
            &m,
            "ratelimit_service_total_requests{grpc_method=\"ShouldRateLimit\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        must(
            &m,
            "ratelimit_service_rate_limit_total_hits{domain=\"up\",key1=\"user\"}"
        ),
        1.0
    );
    assert!(must(&m, "process_resident_memory_bytes") > 0.0, "{m}");
    // Only the scrape: other paths and the HTTP port's endpoints are not there.
    for path in [
        "/metrics",
        "/healthcheck",
        "/rlconfig",
        "/stats/prometheus/x",
    ] {
        let r = http_get(port, path, &[]).await.expect("GET");
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    let post = http_request(port, "POST", "/stats/prometheus", &[], Some("{}"))
        .await
        .expect("POST");
    assert_eq!(post.status, 405, "{post:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_failure_is_a_redis_error() {
    let node = RedisServer::start();
    // The default user may touch only sluice's own keys: every counter call is refused.
    let acl = node.command("ACL SETUSER default resetkeys ~sluice:*");
    assert!(acl.starts_with("+OK"), "{acl}");
    let s = TestServer::start(
        &[("up.yaml", RULES)],
        &["--backend", "redis", "--redis-nodes", &node.url()],
    )
    .await;
    let mut c = s.client().await;
    for _ in 0..2 {
        let err = c
            .should_rate_limit(req("up", vec![desc(&[("user", "a")])]))
            .await
            .expect_err("Redis refuses the script call");
        assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    }
    let m = scrape(&s).await;
    assert_eq!(
        must(
            &m,
            "ratelimit_service_should_rate_limit_error{err_type=\"redis_error\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        must(
            &m,
            "ratelimit_service_should_rate_limit_error{err_type=\"service_error\"}"
        ),
        0.0
    );
    assert_eq!(
        must(
            &m,
            "ratelimit_service_total_requests{grpc_method=\"ShouldRateLimit\"}"
        ),
        2.0
    );
    s.stop().await;
}
