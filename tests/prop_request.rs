//! Property tests over the request boundary: arbitrary bytes decoded as a RateLimitRequest,
//! and generated hostile requests (long values, many descriptors and entries, huge hits,
//! unknown units), through validation → effective limits → plan. Nothing panics; every
//! refusal names a field of the request; every accepted request stays within the bounds and
//! plans one op per limit with keys of bounded length.

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::google::protobuf::UInt64Value;
use proptest::prelude::*;
use prost::Message;
use sluice::effective;
use sluice::keys::MAX_KEY_BYTES;
use sluice::limiter::plan::Plan;
use sluice::overrides::OverrideSet;
use sluice::request::{RequestBounds, ValidRequest};
use sluice::rules::Rules;

const RULES: &str = "
domain: d
descriptors:
  - key: k
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: w
    value: 'a*'
    rate_limits:
      - {unit: second, requests_per_unit: 1, name: first}
      - {unit: hour, requests_per_unit: 100, algorithm: token_bucket}
  - key: p
    descriptors:
      - key: q
        rate_limit: {unit: day, requests_per_unit: 4294967295, algorithm: sliding_window}
";

fn rules() -> Rules {
    let d = sluice::rules::parse::parse_domain("t.yaml", RULES).expect("valid rules");
    Rules::from_domains(vec![("t.yaml".into(), d)]).expect("one domain")
}

const BOUNDS: RequestBounds = RequestBounds {
    max_descriptors: 8,
    max_entries: 4,
    max_value_bytes: 64,
};

/// Runs one request through the boundary and the planner; checks the invariants.
fn check(rules: &Rules, req: &RateLimitRequest) -> Result<(), TestCaseError> {
    match ValidRequest::new(req, &BOUNDS) {
        Err(e) => {
            let top = e.field.split(['[', '.']).next().unwrap_or_default();
            prop_assert!(
                ["domain", "descriptors"].contains(&top),
                "refusal names no request field: {e}"
            );
            prop_assert!(!e.reason.is_empty());
        }
        Ok(valid) => {
            prop_assert!(!req.domain.is_empty() && req.domain.len() <= BOUNDS.max_value_bytes);
            prop_assert!(valid.descriptors().len() <= BOUNDS.max_descriptors);
            for d in valid.descriptors() {
                prop_assert!(!d.entries.is_empty() && d.entries.len() <= BOUNDS.max_entries);
            }
            let overrides = OverrideSet::default();
            let effective = effective::resolve(rules, &overrides, 0, &valid);
            prop_assert_eq!(effective.len(), valid.descriptors().len());
            let plan = Plan::build(effective, &valid);
            for op in plan.ops() {
                prop_assert!(op.key.len() <= MAX_KEY_BYTES, "{} bytes", op.key.len());
            }
            let n = plan.ops().len();
            let outcomes = vec![sluice::limiter::Outcome::default(); n];
            prop_assert!(plan.zip(outcomes).is_ok());
        }
    }
    Ok(())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("k".to_owned()),
        Just("w".to_owned()),
        Just("p".to_owned()),
        Just("q".to_owned()),
        "a[a-z_#%:{}]{0,8}",
        "[a-z_#]{60,70}",
        any::<String>(),
    ]
}

fn descriptor() -> impl Strategy<Value = RateLimitDescriptor> {
    (
        prop::collection::vec((text(), text()), 0..6),
        prop::option::of(prop_oneof![
            Just(0u64),
            Just(1u64),
            Just(u64::from(u32::MAX)),
            Just(u64::from(u32::MAX) + 1),
            Just(1u64 << 63),
            Just(u64::MAX),
            any::<u64>(),
        ]),
        prop::option::of((any::<u32>(), -2i32..10)),
        any::<bool>(),
    )
        .prop_map(|(entries, hits, limit, negative)| RateLimitDescriptor {
            entries: entries
                .into_iter()
                .map(|(key, value)| Entry { key, value })
                .collect(),
            hits_addend: hits.map(|value| UInt64Value { value }),
            limit: limit.map(|(requests_per_unit, unit)| RateLimitOverride {
                requests_per_unit,
                unit,
            }),
            is_negative_hits: negative,
        })
}

fn request() -> impl Strategy<Value = RateLimitRequest> {
    (
        prop_oneof![Just("d".to_owned()), text()],
        prop::collection::vec(descriptor(), 0..11),
        any::<u32>(),
    )
        .prop_map(|(domain, descriptors, hits_addend)| RateLimitRequest {
            domain,
            descriptors,
            hits_addend,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let rules = rules();
        if let Ok(req) = RateLimitRequest::decode(bytes.as_slice()) {
            check(&rules, &req)?;
        }
    }

    #[test]
    fn hostile_requests_are_refused_by_field_or_planned_within_bounds(req in request()) {
        check(&rules(), &req)?;
    }
}

#[test]
fn each_bound_names_its_field() {
    let entry = |k: &str, v: &str| Entry {
        key: k.into(),
        value: v.into(),
    };
    let one = |entries: Vec<Entry>| RateLimitDescriptor {
        entries,
        ..Default::default()
    };
    let req = |descriptors: Vec<RateLimitDescriptor>| RateLimitRequest {
        domain: "d".into(),
        descriptors,
        hits_addend: 0,
    };
    let refused = |r: RateLimitRequest| match ValidRequest::new(&r, &BOUNDS) {
        Err(e) => e.to_string(),
        Ok(_) => "accepted".into(),
    };
    assert!(refused(req(vec![one(vec![entry("k", "v")]); 9]))
        .starts_with("descriptors: 9 descriptors, more than max_descriptors (8)"));
    assert!(refused(req(vec![one(vec![entry("k", "v"); 5])]))
        .starts_with("descriptors[0].entries: 5 entries"));
    assert!(refused(req(vec![
        one(vec![entry("k", "v")]),
        one(vec![entry("k", &"x".repeat(65))])
    ]))
    .starts_with("descriptors[1].entries[0].value: 65 bytes"));
    assert!(refused(req(vec![one(vec![entry(&"x".repeat(65), "v")])]))
        .starts_with("descriptors[0].entries[0].key: 65 bytes"));
    let mut huge = one(vec![entry("k", "v")]);
    huge.hits_addend = Some(UInt64Value {
        value: (1 << 63) - 1,
    });
    assert!(refused(req(vec![huge]))
        .starts_with("descriptors[0].hits_addend: 9223372036854775807 is more than"));
    let mut max = one(vec![entry("k", "v")]);
    max.hits_addend = Some(UInt64Value {
        value: u64::from(u32::MAX),
    });
    assert_eq!(refused(req(vec![max])), "accepted");
    let long_domain = RateLimitRequest {
        domain: "d".repeat(65),
        ..req(vec![one(vec![entry("k", "v")])])
    };
    assert!(refused(long_domain).starts_with("domain: 65 bytes"));
}
