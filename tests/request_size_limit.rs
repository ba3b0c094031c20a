//! `max_request_bytes` bounds both ports: a gRPC request message above it is
//! `RESOURCE_EXHAUSTED` (gRPC's convention, not tonic's `OUT_OF_RANGE`), one at the bound is
//! served, and a larger `/json` body is 413.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use prost::Message;
use support::http::http_request;
use support::raw_grpc::call_raw;
use support::*;

const RULES: &str =
    "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: 5}}\n";
const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// An encoded request of exactly `len` bytes (the value of its only entry is padded).
fn request_of(len: usize) -> Vec<u8> {
    let mut pad = 0;
    loop {
        let value = "v".repeat(pad);
        let bytes = req("d", vec![desc(&[("k", &value)])]).encode_to_vec();
        if bytes.len() >= len {
            assert_eq!(bytes.len(), len, "cannot hit {len} exactly");
            return bytes;
        }
        pad += 1;
    }
}

#[tokio::test]
async fn oversize_requests_are_refused_on_both_ports() {
    let s = TestServer::start(&[("d.yaml", RULES)], &["--max-request-bytes", "1000"]).await;

    let at_bound = call_raw(s.addr, PATH, request_of(1000)).await;
    assert!(at_bound.is_ok(), "1000 bytes is allowed: {at_bound:?}");
    let err = call_raw(s.addr, PATH, request_of(1001))
        .await
        .expect_err("1001 bytes is too many");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("max_request_bytes"), "{err:?}");
    // The decoded check is not fooled: a valid request is still a RateLimitRequest.
    assert!(RateLimitRequest::decode(&request_of(1000)[..]).is_ok());

    let big = format!(
        r#"{{"domain":"d","descriptors":[{{"entries":[{{"key":"k","value":"{}"}}]}}]}}"#,
        "v".repeat(1000)
    );
    let r = http_request(s.http, "POST", "/json", &[], Some(&big))
        .await
        .expect("/json answers");
    assert_eq!(r.status, 413, "{r:?}");
    let small = r#"{"domain":"d","descriptors":[{"entries":[{"key":"k","value":"v"}]}]}"#;
    let r = http_request(s.http, "POST", "/json", &[], Some(small))
        .await
        .expect("/json answers");
    assert_eq!(r.status, 200, "{r:?}");
    s.stop().await;
}
