//! The `concurrency:` rule field: what it accepts, every rejection with file, path and reason,
//! and how request attributes (`fair_by`, `weight_by`, `lease_id`) end a descriptor's match.

use sluice::rules::parse::parse_domain;
use sluice::rules::{Lookup, RuleError, Rules};
use std::time::Duration;

fn parse_err(text: &str) -> RuleError {
    match parse_domain("c.yaml", text) {
        Ok(_) => panic!("expected an error for {text}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_err(text: &str, path: &str, reason: &str) {
    let e = parse_err(text);
    assert_eq!(e.file, "c.yaml");
    assert_eq!(e.path, path, "{e:?}");
    assert!(e.reason.contains(reason), "{e:?} should contain {reason:?}");
}

fn with(concurrency: &str) -> String {
    format!("domain: d\ndescriptors:\n  - key: pool\n    concurrency: {concurrency}\n")
}

const POOL: &str = "
domain: d
descriptors:
  - key: pool
    value: gpu
    concurrency: {max: 100, queue: 500, queue_timeout: 30s, lease: 5m,
                  fair_by: tenant, weight_by: tier, weights: {enterprise: 4, pro: 2, free: 1}, lease_id: request_id}
    rate_limit: {unit: minute, requests_per_unit: 1000}
  - key: user
    concurrency: {max: 3}
    descriptors:
      - key: model
        rate_limit: {unit: second, requests_per_unit: 5}
";

fn rules() -> Rules {
    let d = parse_domain("c.yaml", POOL).expect("parses");
    Rules::from_domains(vec![("c.yaml".into(), d)]).expect("builds")
}

#[test]
fn the_issue_shape_parses_with_defaults() {
    let r = rules();
    let Lookup::Matched { node, .. } = r.lookup("d", [("pool", "gpu")]) else {
        panic!("pool matches")
    };
    let c = node.concurrency.as_deref().expect("concurrency");
    assert_eq!((c.max, c.queue), (100, 500));
    assert_eq!(c.queue_timeout, Duration::from_secs(30));
    assert_eq!(c.lease, Duration::from_secs(300));
    assert_eq!(c.weight(Some("enterprise"), Some("acme")), 4);
    assert_eq!(c.weight(None, Some("acme")), 1);
    let Lookup::Matched { node, .. } = r.lookup("d", [("user", "u")]) else {
        panic!("user matches")
    };
    let c = node.concurrency.as_deref().expect("concurrency");
    assert_eq!((c.queue, c.lease), (0, Duration::from_secs(300)));
    assert!(
        r.describe()
            .iter()
            .any(|l| l.starts_with("d.pool_gpu: concurrency max=100 queue=500")),
        "{:?}",
        r.describe()
    );
}

#[test]
fn attributes_end_the_match_and_stay_out_of_the_counter_key() {
    let r = rules();
    let with_attrs = [
        ("pool", "gpu"),
        ("tenant", "acme"),
        ("tier", "pro"),
        ("request_id", "7f3a"),
    ];
    let Lookup::Matched {
        node,
        counter_key,
        matched,
    } = r.lookup("d", with_attrs)
    else {
        panic!("matches with attributes")
    };
    assert_eq!((node.stats_key.as_str(), matched), ("d.pool_gpu", 1));
    assert_eq!(counter_key.as_str(), "d_pool_gpu");
    // Any subset, any order.
    assert!(matches!(
        r.lookup("d", [("pool", "gpu"), ("request_id", "x")]),
        Lookup::Matched { matched: 1, .. }
    ));
    assert!(matches!(
        r.lookup("d", [("pool", "gpu"), ("tier", "x"), ("tenant", "y")]),
        Lookup::Matched { .. }
    ));
    // A key the rule does not name, or an attribute twice, matches nothing.
    assert!(matches!(
        r.lookup("d", [("pool", "gpu"), ("tenant", "a"), ("other", "x")]),
        Lookup::NoMatch
    ));
    assert!(matches!(
        r.lookup("d", [("pool", "gpu"), ("tenant", "a"), ("tenant", "b")]),
        Lookup::NoMatch
    ));
    // Children still match below a concurrency node whose attributes they are not.
    assert!(matches!(
        r.lookup("d", [("user", "u"), ("model", "m")]),
        Lookup::Matched { matched: 2, .. }
    ));
}

#[test]
fn every_field_is_validated_with_its_path() {
    assert_err(
        &with("{queue: 1}"),
        "descriptors[0].concurrency.max",
        "is required",
    );
    assert_err(
        &with("{max: 0}"),
        "descriptors[0].concurrency.max",
        "from 1 to",
    );
    assert_err(
        &with("{max: 1000001}"),
        "descriptors[0].concurrency.max",
        "from 1 to",
    );
    assert_err(
        &with("{max: -1}"),
        "descriptors[0].concurrency.max",
        "integer",
    );
    assert_err(
        &with("{max: 1, queue: 100001}"),
        "descriptors[0].concurrency.queue",
        "from 0 to",
    );
    assert_err(
        &with("{max: 1, queue_timeout: 0s}"),
        "descriptors[0].concurrency.queue_timeout",
        "more than 0",
    );
    assert_err(
        &with("{max: 1, queue_timeout: 11m}"),
        "descriptors[0].concurrency.queue_timeout",
        "at most 600s",
    );
    assert_err(
        &with("{max: 1, queue_timeout: soon}"),
        "descriptors[0].concurrency.queue_timeout",
        "invalid duration 'soon'",
    );
    assert_err(
        &with("{max: 1, lease: 500ms}"),
        "descriptors[0].concurrency.lease",
        "from 1s to 86400s",
    );
    assert_err(
        &with("{max: 1, lease: 2d}"),
        "descriptors[0].concurrency.lease",
        "invalid duration",
    );
    assert_err(
        &with("{max: 1, fair_by: ''}"),
        "descriptors[0].concurrency.fair_by",
        "must name a descriptor key",
    );
    assert_err(
        &with("{max: 1, weights: {a: 1}}"),
        "descriptors[0].concurrency.weights",
        "need fair_by",
    );
    assert_err(
        &with("{max: 1, fair_by: t, weights: {a: 0}}"),
        "descriptors[0].concurrency.weights.a",
        "from 1 to 1000",
    );
    assert_err(
        &with("{max: 1, fair_by: t, weights: {a: x}}"),
        "descriptors[0].concurrency.weights.a",
        "from 1 to 1000",
    );
    assert_err(
        &with("{max: 1, fair_by: t, weights: [1]}"),
        "descriptors[0].concurrency.weights",
        "must be a map",
    );
    assert_err(
        &with("{max: 1, fair_by: t, lease_id: t}"),
        "descriptors[0].concurrency.lease_id",
        "another descriptor key",
    );
    assert_err(
        &with("{max: 1, slots: 2}"),
        "descriptors[0].concurrency.slots",
        "unknown key 'slots'",
    );
    assert_err(&with("5"), "descriptors[0].concurrency", "must be a map");
    let clash = "domain: d\ndescriptors:\n  - key: pool\n    concurrency: {max: 1, fair_by: tenant}\n    descriptors:\n      - key: tenant\n        rate_limit: {unit: second, requests_per_unit: 1}\n";
    assert_err(
        clash,
        "descriptors[0].concurrency",
        "'tenant' is both a request attribute",
    );
}
