//! Rule-file validation, pinned to envoyproxy/ratelimit's error table, plus sluice's
//! `rate_limits` extension and `Rules::load_dir`'s directory handling (dot files, directories,
//! the Kubernetes ConfigMap symlink layout).
//!
//! Every error is checked for the file it names, the path inside the file and a substring of
//! the reason that matches the reference service's message.

use sluice::rules::model::{Algorithm, Limit, Policy};
use sluice::rules::parse::parse_domain;
use sluice::rules::unit::Unit;
use sluice::rules::{Lookup, RuleError, Rules};
use std::fs;
use std::path::Path;

/// Parses `text`, requiring an error.
fn parse_err(file: &str, text: &str) -> RuleError {
    match parse_domain(file, text) {
        Ok(domain) => panic!("{file}: expected an error, parsed domain '{}'", domain.name),
        Err(e) => e,
    }
}

/// Checks an error's file, path and (a substring of its) reason.
#[track_caller]
fn assert_err(err: &RuleError, file: &str, path: &str, reason: &str) {
    assert_eq!(err.file, file, "file of {err:?}");
    assert_eq!(err.path, path, "path of {err:?}");
    assert!(
        err.reason.contains(reason),
        "reason of {err:?} should contain {reason:?}"
    );
}

/// Parses `text` into a one-domain snapshot.
fn rules_of(file: &str, text: &str) -> Rules {
    let domain = parse_domain(file, text).unwrap_or_else(|e| panic!("{file} must parse: {e}"));
    Rules::from_domains(vec![(file.to_owned(), domain)])
        .unwrap_or_else(|e| panic!("{file} must build: {e}"))
}

/// The policy of the node `entries` lead to in `rules`' domain `d`.
fn policy_at(rules: &Rules, entries: &[(&str, &str)]) -> Policy {
    match rules.lookup("d", entries.iter().copied()) {
        Lookup::Matched { node, .. } => node.policy.clone(),
        other => panic!("{entries:?}: expected a match, got {other:?}"),
    }
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

const GOOD: &str = "domain: good\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n";

// ---------------------------------------------------------------------------------------------
// The reference service's validation errors
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_domain() {
    let err = parse_err(
        "empty_domain.yaml",
        "domain: \"\"\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
    );
    assert_err(
        &err,
        "empty_domain.yaml",
        "domain",
        "config file cannot have empty domain",
    );
}

#[test]
fn missing_domain_and_empty_file_count_as_empty_domain() {
    let err = parse_err("no_domain.yaml", "descriptors: []\n");
    assert_err(
        &err,
        "no_domain.yaml",
        "domain",
        "config file cannot have empty domain",
    );
    let err = parse_err("empty.yaml", "");
    assert_err(
        &err,
        "empty.yaml",
        "domain",
        "config file cannot have empty domain",
    );
}

#[test]
fn duplicate_domain_across_two_files_in_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("a_first.yaml");
    let second = dir.path().join("b_second.yaml");
    write(
        &first,
        "domain: test-domain\ndescriptors:\n  - key: k1\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
    );
    write(
        &second,
        "domain: test-domain\ndescriptors:\n  - key: k2\n    rate_limit: {unit: minute, requests_per_unit: 2}\n",
    );
    let err = Rules::load_dir(dir.path()).expect_err("two files with one domain");
    // Files load in name order, so the second one is at fault.
    assert_err(
        &err,
        &second.display().to_string(),
        "domain",
        "duplicate domain 'test-domain' in config file",
    );
}

#[test]
fn duplicate_domain_via_from_domains() {
    let a = parse_domain("a.yaml", GOOD).expect("parses");
    let b = parse_domain("b.yaml", GOOD).expect("parses");
    let err = Rules::from_domains(vec![("a.yaml".into(), a), ("b.yaml".into(), b)])
        .expect_err("duplicate domain");
    assert_err(
        &err,
        "b.yaml",
        "domain",
        "duplicate domain 'good' in config file",
    );
}

#[test]
fn empty_key() {
    let err = parse_err(
        "empty_key.yaml",
        "domain: test-domain\ndescriptors:\n  - key: \"\"\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
    );
    assert_err(
        &err,
        "empty_key.yaml",
        "descriptors[0].key",
        "descriptor has empty key",
    );
}

#[test]
fn missing_key_in_a_nested_descriptor() {
    let err = parse_err(
        "nested_empty_key.yaml",
        "domain: test-domain
descriptors:
  - key: outer
    value: v
    descriptors:
      - key: inner
        rate_limit: {unit: second, requests_per_unit: 1}
      - value: no-key-here
        rate_limit: {unit: second, requests_per_unit: 1}
",
    );
    assert_err(
        &err,
        "nested_empty_key.yaml",
        "descriptors[0].descriptors[1].key",
        "descriptor has empty key",
    );
}

#[test]
fn duplicate_composite_key() {
    let err = parse_err(
        "duplicate_key.yaml",
        "domain: test-domain
descriptors:
  - key: key1
    value: value1
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: key1
    value: value1
    rate_limit: {unit: minute, requests_per_unit: 10}
",
    );
    assert_err(
        &err,
        "duplicate_key.yaml",
        "descriptors[1]",
        "duplicate descriptor composite key 'test-domain.key1_value1'",
    );
}

#[test]
fn two_limits_on_one_default_key_are_a_duplicate() {
    // The reference service cannot hold a per-second and a per-day rule on one key.
    let err = parse_err(
        "two_limits.yaml",
        "domain: test-domain
descriptors:
  - key: k
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: other
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: k
    rate_limit: {unit: day, requests_per_unit: 500}
",
    );
    assert_err(
        &err,
        "two_limits.yaml",
        "descriptors[2]",
        "duplicate descriptor composite key 'test-domain.k'",
    );
}

#[test]
fn duplicate_nested_and_wildcard_composite_keys() {
    let err = parse_err(
        "dup_nested.yaml",
        "domain: test-domain
descriptors:
  - key: a
    value: x
    descriptors:
      - key: b
        value: y
      - key: b
        value: y
",
    );
    assert_err(
        &err,
        "dup_nested.yaml",
        "descriptors[0].descriptors[1]",
        "duplicate descriptor composite key 'test-domain.a_x.b_y'",
    );

    let err = parse_err(
        "dup_wild.yaml",
        "domain: test-domain
descriptors:
  - key: w
    value: \"foo*\"
  - key: w
    value: \"foo*\"
",
    );
    assert_err(
        &err,
        "dup_wild.yaml",
        "descriptors[1]",
        "duplicate descriptor composite key 'test-domain.w_foo*'",
    );
}

#[test]
fn same_key_value_under_different_parents_is_not_a_duplicate() {
    let rules = rules_of(
        "ok.yaml",
        "domain: d
descriptors:
  - key: a
    value: x
    descriptors:
      - key: b
        rate_limit: {unit: second, requests_per_unit: 1}
  - key: a
    value: y
    descriptors:
      - key: b
        rate_limit: {unit: second, requests_per_unit: 2}
",
    );
    assert_eq!(
        policy_at(&rules, &[("a", "y"), ("b", "z")]),
        Policy::Limited(vec![Limit::fixed(2, Unit::Second)])
    );
}

#[test]
fn bad_limit_unit() {
    let err = parse_err(
        "bad_limit_unit.yaml",
        "domain: test-domain
descriptors:
  - key: key1
    value: value1
    rate_limit:
      unit: foo
      requests_per_unit: 5
",
    );
    assert_err(
        &err,
        "bad_limit_unit.yaml",
        "descriptors[0].rate_limit.unit",
        "invalid rate limit unit 'foo'",
    );
}

#[test]
fn unknown_unit_and_missing_unit_are_invalid() {
    let err = parse_err(
        "unknown_unit.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: unknown, requests_per_unit: 5}\n",
    );
    assert_err(
        &err,
        "unknown_unit.yaml",
        "descriptors[0].rate_limit.unit",
        "invalid rate limit unit 'unknown'",
    );
    let err = parse_err(
        "no_unit.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {requests_per_unit: 5}\n",
    );
    assert_err(
        &err,
        "no_unit.yaml",
        "descriptors[0].rate_limit.unit",
        "invalid rate limit unit ''",
    );
}

#[test]
fn units_are_case_insensitive_and_include_week_month_year() {
    let rules = rules_of(
        "units.yaml",
        "domain: d
descriptors:
  - {key: s, rate_limit: {unit: SECOND, requests_per_unit: 1}}
  - {key: m, rate_limit: {unit: Minute, requests_per_unit: 2}}
  - {key: w, rate_limit: {unit: week, requests_per_unit: 3}}
  - {key: mo, rate_limit: {unit: month, requests_per_unit: 4}}
  - {key: y, rate_limit: {unit: YEAR, requests_per_unit: 5}}
",
    );
    for (key, rpu, unit) in [
        ("s", 1, Unit::Second),
        ("m", 2, Unit::Minute),
        ("w", 3, Unit::Week),
        ("mo", 4, Unit::Month),
        ("y", 5, Unit::Year),
    ] {
        assert_eq!(
            policy_at(&rules, &[(key, "v")]),
            Policy::Limited(vec![Limit::fixed(rpu, unit)]),
            "{key}"
        );
    }
}

#[test]
fn replaces_empty() {
    let err = parse_err(
        "replaces_empty.yaml",
        "domain: test-domain
descriptors:
  - key: key1
    rate_limit:
      unit: second
      requests_per_unit: 5
      name: my_limit
      replaces:
        - name: \"\"
",
    );
    assert_err(
        &err,
        "replaces_empty.yaml",
        "descriptors[0].rate_limit.replaces[0]",
        "should not have an empty replaces entry",
    );
}

#[test]
fn replaces_self() {
    let err = parse_err(
        "replaces_self.yaml",
        "domain: test-domain
descriptors:
  - key: key1
    rate_limit:
      unit: second
      requests_per_unit: 5
      name: my_limit
      replaces:
        - name: other_limit
        - name: my_limit
",
    );
    assert_err(
        &err,
        "replaces_self.yaml",
        "descriptors[0].rate_limit.replaces[1]",
        "replaces should not contain name of same descriptor",
    );
}

#[test]
fn valid_replaces_are_kept_in_order() {
    let rules = rules_of(
        "replaces.yaml",
        "domain: d
descriptors:
  - key: k
    rate_limit:
      unit: minute
      requests_per_unit: 2
      name: override
      replaces: [{name: banned_limit}, {name: other}]
",
    );
    let mut expected = Limit::fixed(2, Unit::Minute);
    expected.name = Some("override".into());
    expected.replaces = vec!["banned_limit".into(), "other".into()];
    assert_eq!(
        policy_at(&rules, &[("k", "v")]),
        Policy::Limited(vec![expected])
    );
}

#[test]
fn bad_yaml() {
    let err = parse_err("bad_yaml.yaml", "domain: test-domain\ndescriptors: [\n");
    assert_err(&err, "bad_yaml.yaml", "", "error loading config file:");
    assert!(
        err.reason.starts_with("error loading config file:"),
        "{err:?}"
    );
}

#[test]
fn misspelled_key_at_descriptor_level() {
    let err = parse_err(
        "misspelled_key.yaml",
        "domain: test-domain
descriptors:
  - key: key1
    value: value1
    ratelimit:
      unit: second
      requests_per_unit: 5
",
    );
    assert_err(
        &err,
        "misspelled_key.yaml",
        "descriptors[0].ratelimit",
        "config error, unknown key 'ratelimit'",
    );
}

#[test]
fn misspelled_key_at_rate_limit_level() {
    let err = parse_err(
        "misspelled_key2.yaml",
        "domain: test-domain
descriptors:
  - key: key1
    value: value1
    rate_limit:
      unit: second
      requestsperunit: 5
",
    );
    assert_err(
        &err,
        "misspelled_key2.yaml",
        "descriptors[0].rate_limit.requestsperunit",
        "config error, unknown key 'requestsperunit'",
    );
}

#[test]
fn misspelled_key_at_root_level() {
    let err = parse_err(
        "misspelled_root.yaml",
        "domain: test-domain
descriptor:
  - key: key1
    rate_limit: {unit: second, requests_per_unit: 5}
",
    );
    assert_err(
        &err,
        "misspelled_root.yaml",
        "descriptor",
        "config error, unknown key 'descriptor'",
    );
}

#[test]
fn misspelled_key_inside_replaces() {
    let err = parse_err(
        "misspelled_replaces.yaml",
        "domain: d
descriptors:
  - key: k
    rate_limit:
      unit: second
      requests_per_unit: 5
      replaces: [{nmae: x}]
",
    );
    assert_err(
        &err,
        "misspelled_replaces.yaml",
        "descriptors[0].rate_limit.replaces[0].nmae",
        "config error, unknown key 'nmae'",
    );
}

#[test]
fn non_string_key() {
    let err = parse_err(
        "non_string_key.yaml",
        "domain: test-domain
descriptors:
  - key: key1
    value: value1
    0.25:
      unit: second
      requests_per_unit: 5
",
    );
    assert_err(
        &err,
        "non_string_key.yaml",
        "descriptors[0]",
        "config error, key is not of type string: 0.25",
    );
}

#[test]
fn non_string_key_inside_rate_limit() {
    let err = parse_err(
        "non_string_key2.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 5, 7: x}\n",
    );
    assert_err(
        &err,
        "non_string_key2.yaml",
        "descriptors[0].rate_limit",
        "config error, key is not of type string: 7",
    );
}

#[test]
fn non_map_list_item() {
    let err = parse_err(
        "non_map_list.yaml",
        "domain: test-domain
descriptors:
  - a
  - key: key1
    rate_limit: {unit: second, requests_per_unit: 5}
",
    );
    assert_err(
        &err,
        "non_map_list.yaml",
        "descriptors[0]",
        "config error, yaml file contains list of type other than map: a",
    );
}

#[test]
fn non_map_list_item_nested() {
    let err = parse_err(
        "non_map_nested.yaml",
        "domain: d
descriptors:
  - key: k
    value: v
    descriptors:
      - key: ok
      - just-a-string
",
    );
    assert_err(
        &err,
        "non_map_nested.yaml",
        "descriptors[0].descriptors[1]",
        "config error, yaml file contains list of type other than map: just-a-string",
    );
}

#[test]
fn unlimited_with_unit() {
    let err = parse_err(
        "unlimited_with_unit.yaml",
        "domain: test-domain
descriptors:
  - key: key1
    rate_limit:
      unlimited: true
      unit: second
",
    );
    assert_err(
        &err,
        "unlimited_with_unit.yaml",
        "descriptors[0].rate_limit.unit",
        "should not specify rate limit unit when unlimited",
    );
}

#[test]
fn unlimited_without_unit_is_unlimited() {
    let rules = rules_of(
        "unlimited.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unlimited: true}\n",
    );
    assert_eq!(
        policy_at(&rules, &[("k", "v")]),
        Policy::Unlimited { replaces: vec![] }
    );
}

#[test]
fn replaces_of_an_unlimited_limit_are_validated_too() {
    // Upstream checks `replaces` whether or not the limit is unlimited.
    let err = parse_err(
        "unlimited_replaces_empty.yaml",
        "domain: d
descriptors:
  - key: vip
    rate_limit:
      unlimited: true
      replaces: [{name: per_user}, {name: \"\"}]
",
    );
    assert_err(
        &err,
        "unlimited_replaces_empty.yaml",
        "descriptors[0].rate_limit.replaces[1]",
        "should not have an empty replaces entry",
    );

    let err = parse_err(
        "unlimited_replaces_self.yaml",
        "domain: d
descriptors:
  - key: vip
    rate_limit:
      unlimited: true
      name: vip
      replaces: [{name: vip}]
",
    );
    assert_err(
        &err,
        "unlimited_replaces_self.yaml",
        "descriptors[0].rate_limit.replaces[0]",
        "replaces should not contain name of same descriptor",
    );
}

#[test]
fn float_value_is_rejected_but_ints_and_bools_are_values() {
    let err = parse_err(
        "float_value.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    value: 1.5\n",
    );
    assert_err(&err, "float_value.yaml", "descriptors[0].value", "1.5");

    let rules = rules_of(
        "scalar_values.yaml",
        "domain: d
descriptors:
  - {key: n, value: 42, rate_limit: {unit: second, requests_per_unit: 1}}
  - {key: b, value: true, rate_limit: {unit: second, requests_per_unit: 2}}
",
    );
    assert_eq!(
        policy_at(&rules, &[("n", "42")]),
        Policy::Limited(vec![Limit::fixed(1, Unit::Second)])
    );
    assert_eq!(
        policy_at(&rules, &[("b", "true")]),
        Policy::Limited(vec![Limit::fixed(2, Unit::Second)])
    );
}

#[test]
fn share_threshold_requires_a_wildcard_value() {
    let err = parse_err(
        "share_exact.yaml",
        "domain: d
descriptors:
  - key: files
    value: files/a.pdf
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 10}
",
    );
    assert_err(
        &err,
        "share_exact.yaml",
        "descriptors[0].share_threshold",
        "share_threshold",
    );
    assert!(err.reason.contains('*'), "{err:?}");

    let err = parse_err(
        "share_default.yaml",
        "domain: d
descriptors:
  - key: files
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 10}
",
    );
    assert_err(
        &err,
        "share_default.yaml",
        "descriptors[0].share_threshold",
        "share_threshold",
    );

    // `share_threshold: false` on an exact value is fine.
    rules_of(
        "share_false.yaml",
        "domain: d\ndescriptors:\n  - {key: f, value: x, share_threshold: false}\n",
    );
}

// ---------------------------------------------------------------------------------------------
// sluice's `rate_limits` extension
// ---------------------------------------------------------------------------------------------

#[test]
fn rate_limits_list_parses_into_several_limits() {
    let rules = rules_of(
        "multi.yaml",
        "domain: d
descriptors:
  - key: user
    rate_limits:
      - unit: second
        requests_per_unit: 10
        algorithm: token_bucket
      - unit: day
        requests_per_unit: 1000
        algorithm: sliding_window
        name: daily
",
    );
    let Policy::Limited(limits) = policy_at(&rules, &[("user", "alice")]) else {
        panic!("expected limits");
    };
    assert_eq!(limits.len(), 2);
    assert_eq!(
        limits[0],
        Limit {
            name: None,
            requests_per_unit: 10,
            unit: Unit::Second,
            algorithm: Algorithm::TokenBucket,
            burst: 10, // defaults to requests_per_unit
            replaces: Vec::new(),
        }
    );
    assert_eq!(
        limits[1],
        Limit {
            name: Some("daily".into()),
            requests_per_unit: 1000,
            unit: Unit::Day,
            algorithm: Algorithm::SlidingWindow,
            burst: 1000,
            replaces: Vec::new(),
        }
    );
}

#[test]
fn rate_limits_explicit_burst_and_default_algorithm() {
    let rules = rules_of(
        "burst.yaml",
        "domain: d
descriptors:
  - key: k
    rate_limits:
      - {unit: minute, requests_per_unit: 60, algorithm: token_bucket, burst: 5}
      - {unit: hour, requests_per_unit: 100}
      - {unit: second, requests_per_unit: 3, algorithm: sliding_log}
      - {unit: second, requests_per_unit: 4, algorithm: fixed_window}
",
    );
    let Policy::Limited(limits) = policy_at(&rules, &[("k", "v")]) else {
        panic!("expected limits");
    };
    let summary: Vec<(u32, Unit, Algorithm, u32)> = limits
        .iter()
        .map(|l| (l.requests_per_unit, l.unit, l.algorithm, l.burst))
        .collect();
    assert_eq!(
        summary,
        [
            (60, Unit::Minute, Algorithm::TokenBucket, 5),
            (100, Unit::Hour, Algorithm::FixedWindow, 100),
            (3, Unit::Second, Algorithm::SlidingLog, 3),
            (4, Unit::Second, Algorithm::FixedWindow, 4),
        ]
    );
}

#[test]
fn single_rate_limit_accepts_an_algorithm() {
    let rules = rules_of(
        "single_algo.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 7, algorithm: token_bucket, burst: 9}\n",
    );
    let mut expected = Limit::fixed(7, Unit::Second);
    expected.algorithm = Algorithm::TokenBucket;
    expected.burst = 9;
    assert_eq!(
        policy_at(&rules, &[("k", "v")]),
        Policy::Limited(vec![expected])
    );
}

#[test]
fn rate_limit_and_rate_limits_together() {
    let err = parse_err(
        "both.yaml",
        "domain: d
descriptors:
  - key: k
    rate_limit: {unit: second, requests_per_unit: 1}
    rate_limits:
      - {unit: day, requests_per_unit: 100}
",
    );
    assert_err(&err, "both.yaml", "descriptors[0]", "not both");
    assert!(
        err.reason.contains("rate_limit") && err.reason.contains("rate_limits"),
        "{err:?}"
    );
}

#[test]
fn unknown_algorithm() {
    let err = parse_err(
        "algo.yaml",
        "domain: d
descriptors:
  - key: k
    rate_limits:
      - {unit: second, requests_per_unit: 1}
      - {unit: day, requests_per_unit: 100, algorithm: leaky_bucket}
",
    );
    assert_err(
        &err,
        "algo.yaml",
        "descriptors[0].rate_limits[1].algorithm",
        "unknown algorithm 'leaky_bucket'",
    );

    // Algorithm names are exact (lower case).
    let err = parse_err(
        "algo_case.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1, algorithm: Token_Bucket}\n",
    );
    assert_err(
        &err,
        "algo_case.yaml",
        "descriptors[0].rate_limit.algorithm",
        "unknown algorithm 'Token_Bucket'",
    );
}

#[test]
fn burst_without_token_bucket() {
    let err = parse_err(
        "burst_fixed.yaml",
        "domain: d
descriptors:
  - key: k
    rate_limits:
      - {unit: second, requests_per_unit: 1, algorithm: sliding_window, burst: 3}
",
    );
    assert_err(
        &err,
        "burst_fixed.yaml",
        "descriptors[0].rate_limits[0].burst",
        "burst only applies to algorithm: token_bucket",
    );

    // Without `algorithm` the limit is fixed_window, so `burst` is still wrong.
    let err = parse_err(
        "burst_default.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1, burst: 3}\n",
    );
    assert_err(
        &err,
        "burst_default.yaml",
        "descriptors[0].rate_limit.burst",
        "burst only applies to algorithm: token_bucket",
    );
}

#[test]
fn unlimited_inside_rate_limits() {
    let err = parse_err(
        "unlimited_list.yaml",
        "domain: d
descriptors:
  - key: k
    rate_limits:
      - {unlimited: true}
",
    );
    assert_err(
        &err,
        "unlimited_list.yaml",
        "descriptors[0].rate_limits[0].unlimited",
        "unlimited",
    );
}

#[test]
fn errors_inside_rate_limits_name_the_item() {
    let err = parse_err(
        "list_unit.yaml",
        "domain: d
descriptors:
  - key: k
    value: v
    descriptors:
      - key: inner
        rate_limits:
          - {unit: second, requests_per_unit: 1}
          - {unit: fortnight, requests_per_unit: 1}
",
    );
    assert_err(
        &err,
        "list_unit.yaml",
        "descriptors[0].descriptors[0].rate_limits[1].unit",
        "invalid rate limit unit 'fortnight'",
    );

    let err = parse_err(
        "list_non_map.yaml",
        "domain: d\ndescriptors:\n  - key: k\n    rate_limits: [oops]\n",
    );
    assert_err(
        &err,
        "list_non_map.yaml",
        "descriptors[0].rate_limits[0]",
        "list of type other than map: oops",
    );
}

// ---------------------------------------------------------------------------------------------
// Rules::load_dir
// ---------------------------------------------------------------------------------------------

#[test]
fn load_dir_skips_dot_files_and_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("good.yaml"), GOOD);
    // Each of these would fail to load (bad YAML or a duplicate domain) if it were read.
    write(&dir.path().join(".hidden.yaml"), "domain: [broken\n");
    write(&dir.path().join(".good.yaml.swp"), GOOD);
    let sub = dir.path().join("nested");
    fs::create_dir(&sub).expect("mkdir");
    write(&sub.join("rules.yaml"), "domain: [broken\n");
    write(&sub.join("dup.yaml"), GOOD);

    let rules = Rules::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules.files().len(), 1, "{:?}", rules.files());
    assert_eq!(
        rules.files()[0],
        (
            dir.path().join("good.yaml").display().to_string(),
            "good".to_owned()
        )
    );
    assert!(matches!(
        rules.lookup("good", [("k", "v")]),
        Lookup::Matched { .. }
    ));
}

#[test]
fn load_dir_names_the_broken_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("a.yaml"), GOOD);
    let bad = dir.path().join("b.yaml");
    write(
        &bad,
        "domain: other\ndescriptors:\n  - key: k\n    rate_limit: {unit: foo, requests_per_unit: 1}\n",
    );
    let err = Rules::load_dir(dir.path()).expect_err("b.yaml is invalid");
    assert_err(
        &err,
        &bad.display().to_string(),
        "descriptors[0].rate_limit.unit",
        "invalid rate limit unit 'foo'",
    );
}

#[test]
fn load_dir_of_a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("does-not-exist");
    let err = Rules::load_dir(&missing).expect_err("missing directory");
    assert_eq!(err.file, missing.display().to_string());
    assert_eq!(err.path, "");
    assert!(err.reason.contains("cannot read rule directory"), "{err:?}");
}

#[test]
fn load_dir_of_an_empty_directory_has_no_domains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = Rules::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(rules.files().is_empty());
    assert!(matches!(
        rules.lookup("good", [("k", "v")]),
        Lookup::UnknownDomain
    ));
}

/// A Kubernetes ConfigMap volume: the real files live in a timestamped `..<ts>` directory,
/// `..data` is a symlink to it, and each visible name is a symlink through `..data`.
#[cfg(unix)]
#[test]
fn load_dir_reads_a_configmap_mount_once() {
    use std::os::unix::fs::symlink;

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let stamp = "..2026_01_01_12_00_00.123456789";
    fs::create_dir(root.join(stamp)).expect("mkdir");
    write(
        &root.join(stamp).join("config.yaml"),
        "domain: configmap\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 3}\n",
    );
    write(&root.join(stamp).join("another.yaml"), GOOD);
    symlink(stamp, root.join("..data")).expect("..data symlink");
    symlink("..data/config.yaml", root.join("config.yaml")).expect("config.yaml symlink");
    symlink("..data/another.yaml", root.join("another.yaml")).expect("another.yaml symlink");

    let rules = Rules::load_dir(root).unwrap_or_else(|e| panic!("{e}"));
    let mut domains: Vec<&str> = rules.files().iter().map(|(_, d)| d.as_str()).collect();
    domains.sort_unstable();
    assert_eq!(domains, ["configmap", "good"], "each domain exactly once");
    let config = rules
        .files()
        .iter()
        .find(|(_, d)| d == "configmap")
        .map(|(f, _)| f.as_str());
    assert_eq!(
        config,
        Some(root.join("config.yaml").display().to_string().as_str()),
        "loaded through the visible symlink, not the timestamped directory"
    );
    assert!(matches!(
        rules.lookup("configmap", [("k", "v")]),
        Lookup::Matched { .. }
    ));
}

/// Mid-swap, a visible symlink can point at a target that no longer exists; it is skipped.
#[cfg(unix)]
#[test]
fn load_dir_skips_a_dangling_symlink() {
    use std::os::unix::fs::symlink;

    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("good.yaml"), GOOD);
    symlink("..data/gone.yaml", dir.path().join("gone.yaml")).expect("symlink");
    let rules = Rules::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules.files().len(), 1);
    assert_eq!(rules.files()[0].1, "good");
}
