//! The admin API's quota status (used / limit / remaining / reset of one descriptor, without
//! charging it) and counter reset, on the memory store and on a real redis-server.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use serde_json::json;
use support::http::request;
use support::redis::RedisServer;
use support::*;

const RULES: &str = "\
domain: api
descriptors:
  - key: tenant
    rate_limit: {unit: minute, requests_per_unit: 10}
    descriptors:
      - key: model
        rate_limits:
          - {unit: minute, requests_per_unit: 100, name: per_minute}
          - {unit: hour, requests_per_unit: 1000, algorithm: sliding_window, name: per_hour}
  - key: health
    rate_limit: {unlimited: true}
";

const ACME: &str = r#"{"domain":"api","descriptor":[{"key":"tenant","value":"acme"}]}"#;
const ACME_GPT: &str = r#"{"domain":"api","descriptor":[{"key":"tenant","value":"acme"},{"key":"model","value":"gpt"}]}"#;

async fn usage(s: &TestServer, target: &str) -> serde_json::Value {
    let r = request(s.http, "POST", "/admin/usage", None, Some(target)).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// `redis_time`: Redis counts on its own clock (TIME), not the test's manual one.
async fn exercise(s: &TestServer, redis_time: bool) {
    if redis_time {
        // Stay clear of a minute boundary, which would empty the window mid-test.
        while std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() % 60)
            > 55
        {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let mut c = s.client().await;
    for _ in 0..3 {
        call(&mut c, req("api", vec![desc(&[("tenant", "acme")])])).await;
    }
    call(
        &mut c,
        req(
            "api",
            vec![desc_hits(&[("tenant", "acme"), ("model", "gpt")], 40)],
        ),
    )
    .await;

    let mut got = usage(s, ACME).await;
    let reset = got["limits"][0]["reset_seconds"]
        .take()
        .as_u64()
        .unwrap_or(0);
    if redis_time {
        assert!((1..=60).contains(&reset), "{reset}");
    } else {
        assert_eq!(
            reset, 59,
            "T0 is noon + 1 s: the minute window resets in 59 s"
        );
    }
    let expected = json!({"status": "limited", "limits": [{
        "name": "", "requests_per_unit": 10, "unit": "minute", "used": 3, "remaining": 7,
        "reset_seconds": null, "override": false, "fallback": false}]});
    assert_eq!(got, expected);
    let mut again = usage(s, ACME).await;
    again["limits"][0]["reset_seconds"].take();
    assert_eq!(again, expected, "reading usage charges nothing");
    let both = usage(s, ACME_GPT).await;
    assert_eq!(both["limits"][0]["name"], "per_minute");
    assert_eq!(both["limits"][0]["used"], 40);
    assert_eq!(both["limits"][0]["remaining"], 60);
    assert_eq!(both["limits"][1]["name"], "per_hour");
    assert_eq!(both["limits"][1]["unit"], "hour");
    assert_eq!(both["limits"][1]["used"], 40);
    assert_eq!(both["limits"][1]["remaining"], 960);

    let health = r#"{"domain":"api","descriptor":[{"key":"health","value":"x"}]}"#;
    assert_eq!(
        usage(s, health).await,
        json!({"status": "unlimited", "limits": []})
    );
    let unknown = r#"{"domain":"api","descriptor":[{"key":"nope","value":"x"}]}"#;
    assert_eq!(
        usage(s, unknown).await,
        json!({"status": "no_limit", "limits": []})
    );

    let reset = request(s.http, "POST", "/admin/reset", None, Some(ACME_GPT)).await;
    assert_eq!((reset.status, reset.json()), (200, json!({"reset": 2})));
    let both = usage(s, ACME_GPT).await;
    assert_eq!(
        (
            both["limits"][0]["used"].as_u64(),
            both["limits"][1]["used"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(
        usage(s, ACME).await["limits"][0]["used"],
        3,
        "only the named descriptor"
    );
    let r = call(
        &mut c,
        req(
            "api",
            vec![desc_hits(&[("tenant", "acme"), ("model", "gpt")], 100)],
        ),
    )
    .await;
    assert_eq!(
        overall(&r),
        Code::Ok,
        "the whole minute limit is available again"
    );
}

#[tokio::test]
async fn usage_and_reset_on_the_memory_store() {
    let s = TestServer::start(&[("api.yaml", RULES)], &[]).await;
    exercise(&s, false).await;
    s.stop().await;
}

#[tokio::test]
async fn usage_and_reset_on_redis() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let s = TestServer::start(
        &[("api.yaml", RULES)],
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
    exercise(&s, true).await;
    s.stop().await;
}
