use super::*;
use crate::limiter::unit::Unit;
use crate::overrides::{Override, OverrideLimit, Target};
use crate::request::RequestBounds;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;

fn rules(yaml: &str) -> Rules {
    let domain = crate::rules::parse::parse_domain("t.yaml", yaml).expect("valid rules");
    Rules::from_domains(vec![("t.yaml".into(), domain)]).expect("one domain")
}

fn request(pairs: &[(&str, &str)]) -> RateLimitRequest {
    RateLimitRequest {
        domain: "d".into(),
        descriptors: pairs
            .iter()
            .map(|(k, v)| RateLimitDescriptor {
                entries: vec![Entry {
                    key: (*k).into(),
                    value: (*v).into(),
                }],
                ..Default::default()
            })
            .collect(),
        hits_addend: 0,
    }
}

fn rule_override(rule: &str, unit: Unit, algorithm: Option<Algorithm>) -> Override {
    Override {
        target: Target::Rule(rule.into()),
        limit: OverrideLimit::Limited {
            requests_per_unit: 50,
            unit,
            algorithm,
            burst: None,
        },
        expires_at_ms: u64::MAX,
        created_at_ms: 0,
        reason: String::new(),
    }
}

fn keys(e: &[Effective<'_>]) -> Vec<String> {
    e.iter()
        .flat_map(|e| match e {
            Effective::Limited { limits, .. } => limits.iter().map(|l| l.key.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn an_override_keeps_the_counter_only_when_it_counts_the_same_way() {
    let r = rules("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: sliding_log}\n");
    let req = request(&[("k", "v")]);
    let valid = ValidRequest::new(&req, &RequestBounds::default()).expect("valid");
    for (o, key, algorithm) in [
        (
            rule_override("d.k", Unit::Minute, None),
            "d_k_v_#l",
            Algorithm::SlidingLog,
        ),
        (
            rule_override("d.k", Unit::Hour, None),
            "d_k_v_#o_#l",
            Algorithm::SlidingLog,
        ),
        (
            rule_override("d.k", Unit::Minute, Some(Algorithm::TokenBucket)),
            "d_k_v_#o_#b",
            Algorithm::TokenBucket,
        ),
    ] {
        let set = OverrideSet::new([o]);
        let e = resolve(&r, &set, 0, &valid);
        let Effective::Limited { limits, .. } = &e[0] else {
            panic!("limited: {e:?}");
        };
        assert_eq!(limits[0].key, key);
        assert_eq!(limits[0].spec.algorithm, algorithm);
        assert_eq!(limits[0].spec.requests_per_unit, 50);
        assert_eq!(limits[0].spec.source, LimitSource::Runtime);
    }
}

#[test]
fn an_overridden_rule_still_replaces_and_a_replaced_one_stays_off() {
    let r = rules(
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: minute, requests_per_unit: 5, name: la, replaces: [{name: lb}]}\n  - key: b\n    rate_limit: {unit: minute, requests_per_unit: 1, name: lb}\n",
    );
    let req = request(&[("a", "x"), ("b", "y")]);
    let valid = ValidRequest::new(&req, &RequestBounds::default()).expect("valid");
    for target in ["d.a", "d.b"] {
        let set = OverrideSet::new([rule_override(target, Unit::Minute, None)]);
        let e = resolve(&r, &set, 0, &valid);
        assert_eq!(keys(&e), vec!["d_a_x"], "override of {target}");
        assert_eq!(e[1], Effective::NoLimit);
    }
}

#[test]
fn each_extra_limit_has_a_counter_no_value_can_name() {
    let r = rules(
        "domain: d\ndescriptors:\n  - key: u\n    rate_limits:\n      - {unit: minute, requests_per_unit: 5}\n      - {unit: hour, requests_per_unit: 50}\n",
    );
    let req = request(&[("u", "alice"), ("u", "alice_#2")]);
    let valid = ValidRequest::new(&req, &RequestBounds::default()).expect("valid");
    let e = resolve(&r, &OverrideSet::default(), 0, &valid);
    assert_eq!(
        keys(&e),
        vec![
            "d_u_alice",
            "d_u_alice_#2",
            "d_u_alice%5F%232",
            "d_u_alice%5F%232_#2"
        ]
    );
}
