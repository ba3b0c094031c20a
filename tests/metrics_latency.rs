//! Latency histograms and operational gauges on `/metrics` after known traffic: one request
//! latency observation per ShouldRateLimit, one Redis call observation per shard call, the
//! active-override gauge, and the live in-memory key gauge. Each server has its own registry,
//! so the two servers here report only their own traffic.

mod support;

use support::http::request;
use support::redis::RedisServer;
use support::*;

const RULES: &str = "\
domain: lat
descriptors:
  - key: k
    rate_limit: {unit: hour, requests_per_unit: 100}
";

/// The value of the sample line starting with `series ` (name plus labels, exact).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn histograms_count_every_request_and_every_redis_call() {
    let redis = RedisServer::start();
    let url = redis.url();
    let shard = format!("127.0.0.1:{}", redis.port);
    let mem = TestServer::start(&[("lat.yaml", RULES)], &[]).await;
    let red = TestServer::start(
        &[("lat.yaml", RULES)],
        &[
            "--backend",
            "redis",
            "--redis-nodes",
            &url,
            "--redis-timeout",
            "1s",
        ],
    )
    .await;
    let scrape = || async { request(mem.http, "GET", "/metrics", None, None).await.body };
    let scrape_redis = || async { request(red.http, "GET", "/metrics", None, None).await.body };
    let redis_series = format!("sluice_redis_call_duration_seconds_count{{shard=\"{shard}\"}}");
    assert_eq!(sample(&scrape_redis().await, &redis_series), 0.0);

    let mut m = mem.client().await;
    for i in 0..7 {
        call(&mut m, req("lat", vec![desc(&[("k", &i.to_string())])])).await;
    }
    let mut r = red.client().await;
    for _ in 0..5 {
        // Two descriptors, one shard: one call per request.
        call(
            &mut r,
            req("lat", vec![desc(&[("k", "a")]), desc(&[("k", "b")])]),
        )
        .await;
    }
    let after = scrape().await;
    let count = "sluice_request_duration_seconds_count";
    assert_eq!(sample(&after, count), 7.0, "{after}");
    let after_redis = scrape_redis().await;
    assert_eq!(sample(&after_redis, count), 5.0, "{after_redis}");
    assert_eq!(sample(&after_redis, &redis_series), 5.0, "{after_redis}");
    assert_eq!(
        sample(&after, &redis_series),
        0.0,
        "not the memory server's"
    );
    // Buckets, not a summary: `le` series up to +Inf, dense below Envoy's 20 ms timeout.
    for le in ["0.00005", "0.001", "0.02", "+Inf"] {
        let series = format!("sluice_request_duration_seconds_bucket{{le=\"{le}\"}}");
        assert!(
            after.contains(&format!("{series} ")),
            "no {series} in:\n{after}"
        );
    }
    assert_eq!(
        sample(&after, "sluice_memory_store_keys"),
        7.0,
        "live in-memory counters"
    );
    let inf = "sluice_request_duration_seconds_bucket{le=\"+Inf\"}";
    assert_eq!(sample(&after, inf), sample(&after, count));

    // Overrides gauge: one active override.
    let body = r#"{"rule":"lat.k","requests_per_unit":1,"unit":"hour","ttl_seconds":60}"#;
    let set = request(mem.http, "POST", "/admin/overrides", None, Some(body)).await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(sample(&scrape().await, "sluice_overrides_active"), 1.0);

    mem.stop().await;
    red.stop().await;
}
