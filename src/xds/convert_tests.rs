//! Unit tests of [`super::to_rules`]: EG-shaped resources, upstream's unit quirks, bounds.

use super::*;
use crate::rules::model::Policy;
use crate::rules::Lookup;
use crate::xds::proto::RateLimitReplace;

const BOUNDS: Bounds = Bounds {
    max_resources: 10,
    max_resource_bytes: 10_000,
    merge_domains: false,
};

fn any(config: &RateLimitConfig) -> Any {
    Any {
        type_url: TYPE_URL.into(),
        value: config.encode_to_vec(),
    }
}

fn desc(key: &str, value: &str, children: Vec<RateLimitDescriptor>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        key: key.into(),
        value: value.into(),
        descriptors: children,
        ..Default::default()
    }
}

fn limit(unit: RateLimitUnit, n: u32) -> Option<RateLimitPolicy> {
    Some(RateLimitPolicy {
        unit: unit as i32,
        requests_per_unit: n,
        ..Default::default()
    })
}

/// What Envoy Gateway generates for one HTTPRoute rule limited per client CIDR.
fn eg_domain(domain: &str, n: u32) -> RateLimitConfig {
    let route = "httproute/default/backend/rule/0/match/0/*";
    let mut leaf = desc("masked_remote_address", "0.0.0.0/0", vec![]);
    leaf.rate_limit = limit(RateLimitUnit::Hour, n);
    RateLimitConfig {
        name: domain.into(),
        domain: domain.into(),
        descriptors: vec![desc(
            route,
            route,
            vec![desc("rule-0-match-0", "rule-0-match-0", vec![leaf])],
        )],
    }
}

fn one(config: &RateLimitConfig) -> Result<Rules, RuleError> {
    to_rules(&[any(config)], &BOUNDS)
}

#[test]
fn an_envoy_gateway_resource_becomes_its_domain() {
    let rules = one(&eg_domain("default/eg/http", 3)).expect("valid");
    let route = "httproute/default/backend/rule/0/match/0/*";
    let entries = [
        (route, route),
        ("rule-0-match-0", "rule-0-match-0"),
        ("masked_remote_address", "0.0.0.0/0"),
    ];
    match rules.lookup("default/eg/http", entries) {
        Lookup::Matched { node, .. } => match &node.policy {
            Policy::Limited(l) => assert_eq!(l[0].requests_per_unit, 3),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rules.files(),
        &[(
            "xds:default/eg/http".to_owned(),
            "default/eg/http".to_owned()
        )]
    );
}

#[test]
fn zero_resources_mean_no_domains() {
    let rules = to_rules(&[], &BOUNDS).expect("valid");
    assert!(rules.files().is_empty());
}

#[test]
fn unknown_unit_is_valid_only_when_unlimited() {
    let mut config = eg_domain("d", 1);
    let leaf = &mut config.descriptors[0].descriptors[0].descriptors[0];
    leaf.rate_limit = limit(RateLimitUnit::Unknown, 0);
    let err = one(&config).expect_err("UNKNOWN without unlimited");
    assert_eq!(err.file, "xds:d");
    assert_eq!(
        err.path,
        "descriptors[0].descriptors[0].descriptors[0].rate_limit.unit"
    );
    assert!(
        err.reason.contains("invalid rate limit unit 'UNKNOWN'"),
        "{err}"
    );

    let leaf = &mut config.descriptors[0].descriptors[0].descriptors[0];
    leaf.rate_limit = Some(RateLimitPolicy {
        unlimited: true,
        ..Default::default()
    });
    let rules = one(&config).expect("unlimited with UNKNOWN is valid");
    assert!(rules
        .describe()
        .iter()
        .any(|l| l.contains("unit=UNKNOWN requests_per_unit=0")));

    let leaf = &mut config.descriptors[0].descriptors[0].descriptors[0];
    leaf.rate_limit = Some(RateLimitPolicy {
        unlimited: true,
        unit: RateLimitUnit::Minute as i32,
        ..Default::default()
    });
    let err = one(&config).expect_err("unlimited with a unit");
    assert!(
        err.reason
            .contains("should not specify rate limit unit when unlimited"),
        "{err}"
    );

    let leaf = &mut config.descriptors[0].descriptors[0].descriptors[0];
    leaf.rate_limit = Some(RateLimitPolicy {
        unit: 42,
        requests_per_unit: 1,
        ..Default::default()
    });
    let err = one(&config).expect_err("unit number out of the enum");
    assert!(err.reason.contains("invalid rate limit unit '42'"), "{err}");
}

#[test]
fn every_field_reaches_the_rule_tree() {
    let mut d = desc("k", "v", vec![]);
    d.rate_limit = Some(RateLimitPolicy {
        unit: RateLimitUnit::Week as i32,
        requests_per_unit: 7,
        name: "weekly".into(),
        replaces: vec![RateLimitReplace {
            name: "other".into(),
        }],
        ..Default::default()
    });
    d.shadow_mode = true;
    d.quota_mode = true;
    d.detailed_metric = true;
    d.metadata = Some(Struct {
        fields: [(
            "team".to_owned(),
            envoy_types::pb::google::protobuf::Value {
                kind: Some(Kind::StringValue("a".into())),
            },
        )]
        .into_iter()
        .collect(),
    });
    let config = RateLimitConfig {
        name: "res".into(),
        domain: "d".into(),
        descriptors: vec![d],
    };
    let rules = one(&config).expect("valid");
    let Lookup::Matched { node, .. } = rules.lookup("d", [("k", "v")]) else {
        panic!("no match");
    };
    assert!(node.shadow_mode && node.quota_mode && node.detailed_metric);
    let Policy::Limited(l) = &node.policy else {
        panic!("{:?}", node.policy);
    };
    assert_eq!(l[0].name.as_deref(), Some("weekly"));
    assert_eq!(l[0].replaces, vec!["other".to_owned()]);
    assert_eq!(l[0].unit, crate::rules::unit::Unit::Week);
    assert_eq!(rules.files()[0].0, "xds:res", "errors name the resource");
}

#[test]
fn file_validation_applies() {
    // Duplicate composite key inside one resource.
    let mut config = eg_domain("d", 1);
    let dup = config.descriptors[0].clone();
    config.descriptors.push(dup);
    let err = one(&config).expect_err("duplicate key");
    assert_eq!(err.path, "descriptors[1]");
    assert!(
        err.reason.contains("duplicate descriptor composite key"),
        "{err}"
    );
    // Empty key, empty domain, empty replaces name.
    let err = one(&RateLimitConfig {
        name: "n".into(),
        domain: "d".into(),
        descriptors: vec![desc("", "", vec![])],
    })
    .expect_err("empty key");
    assert!(err.reason.contains("descriptor has empty key"), "{err}");
    let err = one(&RateLimitConfig::default()).expect_err("empty domain");
    assert_eq!(err.file, "xds:resources[0]");
    assert!(err.reason.contains("empty domain"), "{err}");
    let mut d = desc("k", "", vec![]);
    d.rate_limit = Some(RateLimitPolicy {
        unit: RateLimitUnit::Second as i32,
        replaces: vec![RateLimitReplace::default()],
        ..Default::default()
    });
    let err = one(&RateLimitConfig {
        name: "n".into(),
        domain: "d".into(),
        descriptors: vec![d],
    })
    .expect_err("empty replaces");
    assert!(err.reason.contains("empty replaces entry"), "{err}");
}

#[test]
fn two_resources_of_one_domain_merge_only_when_asked() {
    let a = eg_domain("d", 1);
    let mut b = eg_domain("d", 1);
    b.name = "d-2".into();
    b.descriptors[0].key = "other".into();
    b.descriptors[0].value = "other".into();
    let err = to_rules(&[any(&a), any(&b)], &BOUNDS).expect_err("duplicate domain");
    assert_eq!(err.file, "xds:d-2");
    assert!(err.reason.contains("duplicate domain 'd'"), "{err}");
    let merge = Bounds {
        merge_domains: true,
        ..BOUNDS
    };
    let rules = to_rules(&[any(&a), any(&b)], &merge).expect("merged");
    assert_eq!(rules.describe().len(), 2);
    let err = to_rules(&[any(&a), any(&a)], &merge).expect_err("same key twice");
    assert!(
        err.reason.contains("duplicate descriptor composite key"),
        "{err}"
    );
}

#[test]
fn bounds_and_garbage_are_rejected_with_the_resource_named() {
    let big = eg_domain(&"x".repeat(20_000), 1);
    let err = one(&big).expect_err("too big");
    assert_eq!(err.file, "xds:resources[0]");
    assert!(
        err.reason.contains("larger than rules_max_file_bytes"),
        "{err}"
    );

    let many: Vec<Any> = (0..11)
        .map(|i| any(&eg_domain(&format!("d{i}"), 1)))
        .collect();
    let err = to_rules(&many, &BOUNDS).expect_err("too many");
    assert!(err.reason.contains("11 resources"), "{err}");

    let garbage = Any {
        type_url: TYPE_URL.into(),
        value: vec![0xff, 0xff, 0xff],
    };
    let err = to_rules(&[garbage], &BOUNDS).expect_err("garbage");
    assert!(err.reason.contains("cannot decode"), "{err}");

    let wrong = Any {
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        value: vec![],
    };
    let err = to_rules(&[wrong], &BOUNDS).expect_err("wrong type");
    assert!(err.reason.contains("expected"), "{err}");

    let mut deep = desc("k", "", vec![]);
    for _ in 0..MAX_DEPTH {
        deep = desc("k", "", vec![deep]);
    }
    let err = one(&RateLimitConfig {
        name: "deep".into(),
        domain: "d".into(),
        descriptors: vec![deep],
    })
    .expect_err("too deep");
    assert!(err.reason.contains("nested more than"), "{err}");
}
