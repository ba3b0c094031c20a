//! `/rlconfig` prints the loaded rules as envoyproxy/ratelimit does — one
//! `<FullKey>: unit=<UNIT> requests_per_unit=<n>, shadow_mode: <bool>, quota_mode: <bool>` line
//! per limit, each ending in a newline — which `egctl x config ratelimit` shows operators.

mod support;

use support::http::http_get;
use support::*;

/// upstream's conformance shapes: nested keys, values and no values, shadow and quota mode,
/// an unlimited rule, a wildcard, and an intermediate node without a limit.
const TEST_DOMAIN: &str = "
domain: test-domain
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit: {unit: second, requests_per_unit: 5}
      - key: subkey1
        value: subvalue1
        rate_limit: {unit: second, requests_per_unit: 10}
  - key: key2
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: key2
    value: value2
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 30}
  - key: key3
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: key6
    rate_limit: {unlimited: true}
  - key: wild
    value: foo*
    rate_limit: {unit: day, requests_per_unit: 3}
  - key: key8
    rate_limit: {unit: week, requests_per_unit: 8}
";

/// What Envoy Gateway generates: a listener domain, the route's generic key, a header match
/// and a masked remote address, the limit on the leaf.
const EG_DOMAIN: &str = "
domain: default/eg/http
descriptors:
  - key: httproute/default/x/rule/0/match/0/host_example
    value: httproute/default/x/rule/0/match/0/host_example
    descriptors:
      - key: rule-0-match-0
        value: rule-0-match-0
        descriptors:
          - key: masked_remote_address
            value: 0.0.0.0/0
            rate_limit: {unit: hour, requests_per_unit: 3}
";

/// upstream's dump of the two files (its order is a map's: compared sorted).
const EXPECTED: &[&str] = &[
    "test-domain.key1_value1.subkey1: unit=SECOND requests_per_unit=5, shadow_mode: false, quota_mode: false",
    "test-domain.key1_value1.subkey1_subvalue1: unit=SECOND requests_per_unit=10, shadow_mode: false, quota_mode: false",
    "test-domain.key2: unit=MINUTE requests_per_unit=20, shadow_mode: false, quota_mode: false",
    "test-domain.key2_value2: unit=MINUTE requests_per_unit=30, shadow_mode: true, quota_mode: false",
    "test-domain.key3: unit=HOUR requests_per_unit=1, shadow_mode: false, quota_mode: true",
    "test-domain.key6: unit=UNKNOWN requests_per_unit=0, shadow_mode: false, quota_mode: false",
    "test-domain.wild_foo*: unit=DAY requests_per_unit=3, shadow_mode: false, quota_mode: false",
    "test-domain.key8: unit=WEEK requests_per_unit=8, shadow_mode: false, quota_mode: false",
    "default/eg/http.httproute/default/x/rule/0/match/0/host_example_httproute/default/x/rule/0/match/0/host_example.rule-0-match-0_rule-0-match-0.masked_remote_address_0.0.0.0/0: unit=HOUR requests_per_unit=3, shadow_mode: false, quota_mode: false",
];

/// The body's lines, sorted, after checking that every line ends with a newline.
fn lines(body: &str) -> Vec<String> {
    assert!(
        body.ends_with('\n'),
        "every line ends with a newline: {body:?}"
    );
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn expected() -> Vec<String> {
    let mut e: Vec<String> = EXPECTED.iter().map(|l| l.to_string()).collect();
    e.sort();
    e
}

#[tokio::test]
async fn rlconfig_lines_are_upstreams_on_the_debug_port_and_the_http_port() {
    let s = TestServer::start(
        &[("t.yaml", TEST_DOMAIN), ("eg.yaml", EG_DOMAIN)],
        &["--debug-addr", "127.0.0.1:0"],
    )
    .await;
    let debug = s.debug.expect("the debug port is bound");
    let r = http_get(debug, "/rlconfig", &[])
        .await
        .expect("GET /rlconfig");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(lines(&r.body), expected(), "{r:?}");
    let on_http = http_get(s.http, "/rlconfig", &[])
        .await
        .expect("GET /rlconfig");
    assert_eq!(on_http.body, r.body, "the same text on both ports");
    // The debug port lists its endpoints, serves the counters, and nothing of the admin API.
    let index = http_get(debug, "/", &[]).await.expect("GET /");
    assert!(
        index.status == 200 && index.body.contains("/rlconfig"),
        "{index:?}"
    );
    let stats = http_get(debug, "/stats", &[]).await.expect("GET /stats");
    assert!(
        stats.status == 200 && stats.body.contains("# TYPE "),
        "{stats:?}"
    );
    for path in ["/json", "/admin/overrides", "/healthcheck"] {
        let r = http_get(debug, path, &[]).await.expect("GET");
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn no_debug_port_unless_asked() {
    let s = TestServer::start(&[("t.yaml", TEST_DOMAIN)], &[]).await;
    assert_eq!((s.debug, s.prometheus), (None, None));
    s.stop().await;
}

#[tokio::test]
async fn no_limits_no_text() {
    let s = TestServer::start(&[("e.yaml", "domain: empty\ndescriptors: []\n")], &[]).await;
    let r = http_get(s.http, "/rlconfig", &[])
        .await
        .expect("GET /rlconfig");
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{r:?}");
    s.stop().await;
}
