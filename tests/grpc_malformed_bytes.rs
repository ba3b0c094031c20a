//! Bytes that are not the request message get `INVALID_ARGUMENT` naming the problem (not
//! `INTERNAL`), on both decision services (ShouldRateLimit, ext_authz Check), and the server
//! keeps serving.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::raw_grpc::call_raw;
use support::*;

const RULES: &str =
    "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: 5}}\n";
const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

#[tokio::test]
async fn garbage_protobuf_is_invalid_argument() {
    let s = TestServer::start(&[("d.yaml", RULES)], &[]).await;
    // 0xff…: a tag varint that never ends; 0x0a 0x05 'a': a string field cut short.
    for garbage in [vec![0xff; 16], vec![0x0a, 0x05, b'a']] {
        let err = call_raw(s.addr, PATH, garbage.clone())
            .await
            .expect_err("garbage must be rejected");
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{garbage:?}: {err:?}"
        );
        assert!(
            err.message().contains("malformed request")
                && err.message().contains("RateLimitRequest"),
            "names the problem: {:?}",
            err.message()
        );
    }
    let mut c = s.client().await;
    let r = call(&mut c, req("d", vec![desc(&[("k", "v")])])).await;
    assert_eq!(summary(&r), [(Code::Ok, 4, Some(5))]);
    s.stop().await;
}
