//! Descriptor matching, pinned to envoyproxy/ratelimit's `GetLimit` semantics.
//!
//! The fixtures under `tests/fixtures/rules/` restate the reference service's `basic_config`,
//! `wildcard` and `shadowmode_config` rule files (plus `share_threshold` and wildcard ordering);
//! every lookup the reference tests assert is checked here through the public API only.

use sluice::rules::model::{Algorithm, Limit, Node, Policy};
use sluice::rules::unit::Unit;
use sluice::rules::{Lookup, Rules};
use std::path::PathBuf;

/// Loads one fixture directory with `Rules::load_dir`.
fn fixture(dir: &str) -> Rules {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rules")
        .join(dir);
    Rules::load_dir(&path).unwrap_or_else(|e| panic!("fixture {dir} must load: {e}"))
}

/// Looks up `entries` and requires a match, returning the node and the counter key.
fn matched<'a>(rules: &'a Rules, domain: &str, entries: &[(&str, &str)]) -> (&'a Node, String) {
    match rules.lookup(domain, entries.iter().copied()) {
        Lookup::Matched {
            node, counter_key, ..
        } => (node, counter_key.as_str().to_owned()),
        other => panic!("{domain} {entries:?}: expected a match, got {other:?}"),
    }
}

/// Requires that `entries` match nothing in a known domain.
fn assert_no_match(rules: &Rules, domain: &str, entries: &[(&str, &str)]) {
    match rules.lookup(domain, entries.iter().copied()) {
        Lookup::NoMatch => {}
        other => panic!("{domain} {entries:?}: expected NoMatch, got {other:?}"),
    }
}

/// One upstream (fixed-window) limit.
fn limited(requests_per_unit: u32, unit: Unit) -> Policy {
    Policy::Limited(vec![Limit::fixed(requests_per_unit, unit)])
}

/// The only limit of a node, which must have exactly one.
fn single_limit(node: &Node) -> &Limit {
    match &node.policy {
        Policy::Limited(limits) if limits.len() == 1 => &limits[0],
        other => panic!("{}: expected one limit, got {other:?}", node.stats_key),
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture A: basic_config
// ---------------------------------------------------------------------------------------------

#[test]
fn basic_fixture_loads_one_domain_from_its_file() {
    let rules = fixture("basic");
    let files = rules.files();
    assert_eq!(files.len(), 1);
    assert!(files[0].0.ends_with("basic_config.yaml"), "{:?}", files[0]);
    assert_eq!(files[0].1, "test-domain");
    assert_eq!(
        rules.domain("test-domain").map(|d| d.name.as_str()),
        Some("test-domain")
    );
    assert!(rules.domain("foo_domain").is_none());
}

#[test]
fn unknown_domain_is_reported_as_such() {
    let rules = fixture("basic");
    assert!(matches!(
        rules.lookup("foo_domain", [("key2", "value2")]),
        Lookup::UnknownDomain
    ));
    assert!(matches!(
        rules.lookup("foo_domain", []),
        Lookup::UnknownDomain
    ));
    // Domains are matched exactly, not case-insensitively.
    assert!(matches!(
        rules.lookup("Test-Domain", [("key2", "value2")]),
        Lookup::UnknownDomain
    ));
}

#[test]
fn empty_descriptor_in_known_domain_has_no_limit() {
    let rules = fixture("basic");
    assert_no_match(&rules, "test-domain", &[]);
}

#[test]
fn value_without_exact_or_default_node_has_no_limit() {
    let rules = fixture("basic");
    // key1 only exists as key1=value1.
    assert_no_match(&rules, "test-domain", &[("key1", "something")]);
    // A key the file never mentions.
    assert_no_match(&rules, "test-domain", &[("nokey", "value1")]);
}

#[test]
fn stopping_at_an_intermediate_node_gives_no_limit() {
    let rules = fixture("basic");
    let (node, counter_key) = matched(&rules, "test-domain", &[("key1", "value1")]);
    assert_eq!(node.policy, Policy::None);
    assert_eq!(node.key, "key1");
    assert_eq!(node.value.as_deref(), Some("value1"));
    assert_eq!(node.stats_key, "test-domain.key1_value1");
    assert_eq!(counter_key, "test-domain_key1_value1");
    assert!(
        node.children.nodes().count() == 2,
        "key1=value1 is an intermediate node with two children"
    );
}

#[test]
fn descriptor_deeper_than_the_config_has_no_limit() {
    let rules = fixture("basic");
    assert_no_match(
        &rules,
        "test-domain",
        &[("key2", "value2"), ("subkey", "subvalue")],
    );
    // Even below a limited node: depth must match exactly.
    assert_no_match(
        &rules,
        "test-domain",
        &[("key1", "value1"), ("subkey1", "subvalue1"), ("extra", "x")],
    );
}

#[test]
fn no_default_child_at_depth_two_gives_no_limit() {
    let rules = fixture("basic");
    assert_no_match(
        &rules,
        "test-domain",
        &[("key5", "value5"), ("subkey5", "subvalue")],
    );
}

#[test]
fn node_with_limit_and_children_applies_at_both_depths() {
    let rules = fixture("basic");
    let (node, counter_key) = matched(&rules, "test-domain", &[("key5", "value5")]);
    assert_eq!(node.policy, limited(15, Unit::Day));
    assert_eq!(node.stats_key, "test-domain.key5_value5");
    assert_eq!(counter_key, "test-domain_key5_value5");

    let (node, counter_key) = matched(
        &rules,
        "test-domain",
        &[("key5", "value5"), ("subkey5", "subvalue5")],
    );
    assert_eq!(node.policy, limited(25, Unit::Day));
    assert_eq!(node.stats_key, "test-domain.key5_value5.subkey5_subvalue5");
    assert_eq!(counter_key, "test-domain_key5_value5_subkey5_subvalue5");
}

#[test]
fn nested_default_matches_any_value_with_per_value_counter() {
    let rules = fixture("basic");
    let (node, counter_key) = matched(
        &rules,
        "test-domain",
        &[("key1", "value1"), ("subkey1", "something")],
    );
    assert_eq!(node.policy, limited(5, Unit::Second));
    assert_eq!(node.value, None);
    assert_eq!(node.stats_key, "test-domain.key1_value1.subkey1");
    assert_eq!(counter_key, "test-domain_key1_value1_subkey1_something");
}

#[test]
fn nested_exact_value_beats_the_default() {
    let rules = fixture("basic");
    let (node, counter_key) = matched(
        &rules,
        "test-domain",
        &[("key1", "value1"), ("subkey1", "subvalue1")],
    );
    assert_eq!(node.policy, limited(10, Unit::Second));
    assert_eq!(node.stats_key, "test-domain.key1_value1.subkey1_subvalue1");
    assert_eq!(counter_key, "test-domain_key1_value1_subkey1_subvalue1");
}

#[test]
fn top_level_default_and_exact_override() {
    let rules = fixture("basic");
    let (default, counter_key) = matched(&rules, "test-domain", &[("key2", "something")]);
    assert_eq!(default.policy, limited(20, Unit::Minute));
    assert_eq!(default.stats_key, "test-domain.key2");
    assert_eq!(counter_key, "test-domain_key2_something");

    // Another value hits the same rule but its own counter.
    let (again, other_key) = matched(&rules, "test-domain", &[("key2", "other")]);
    assert!(std::ptr::eq(default, again));
    assert_eq!(other_key, "test-domain_key2_other");

    let (exact, counter_key) = matched(&rules, "test-domain", &[("key2", "value2")]);
    assert_eq!(exact.policy, limited(30, Unit::Minute));
    assert_eq!(exact.stats_key, "test-domain.key2_value2");
    assert_eq!(counter_key, "test-domain_key2_value2");
}

#[test]
fn value_without_limit_or_children_is_whitelisted() {
    let rules = fixture("basic");
    let (node, _) = matched(&rules, "test-domain", &[("key2", "value3")]);
    assert_eq!(
        node.policy,
        Policy::None,
        "the exact whitelist entry must win over key2's 20/minute default"
    );
    assert_eq!(node.stats_key, "test-domain.key2_value3");
    assert_eq!(node.children.nodes().count(), 0);
}

#[test]
fn limit_without_name_has_no_name() {
    let rules = fixture("basic");
    let (node, counter_key) = matched(&rules, "test-domain", &[("key3", "foo")]);
    let limit = single_limit(node);
    assert_eq!(limit.requests_per_unit, 1);
    assert_eq!(limit.unit, Unit::Hour);
    assert_eq!(limit.name, None);
    assert_eq!(limit.algorithm, Algorithm::FixedWindow);
    assert_eq!(limit.burst, 1);
    assert!(limit.replaces.is_empty());
    assert_eq!(node.stats_key, "test-domain.key3");
    assert_eq!(counter_key, "test-domain_key3_foo");
}

#[test]
fn named_limit_keeps_its_name() {
    let rules = fixture("basic");
    let (node, _) = matched(&rules, "test-domain", &[("key4", "foo")]);
    let limit = single_limit(node);
    assert_eq!(limit.name.as_deref(), Some("key4_rate_limit"));
    assert_eq!(limit.requests_per_unit, 1);
    assert_eq!(limit.unit, Unit::Day);
    assert_eq!(node.stats_key, "test-domain.key4");
}

#[test]
fn unlimited_descriptor() {
    let rules = fixture("basic");
    let (node, counter_key) = matched(&rules, "test-domain", &[("key6", "foo")]);
    assert_eq!(node.policy, Policy::Unlimited { replaces: vec![] });
    assert_eq!(node.stats_key, "test-domain.key6");
    assert_eq!(counter_key, "test-domain_key6_foo");
}

#[test]
fn detailed_metric_flag_and_per_value_counters() {
    let rules = fixture("basic");
    let (node, counter_key) = matched(&rules, "test-domain", &[("key7", "unspecified_value")]);
    assert_eq!(node.policy, limited(70, Unit::Minute));
    assert!(node.detailed_metric);
    // The node's own stats key has no runtime value; the runtime value is added where metrics
    // are emitted, because `detailed_metric` is set.
    assert_eq!(node.stats_key, "test-domain.key7");
    assert_eq!(counter_key, "test-domain_key7_unspecified%5Fvalue");

    let (other, counter_key) = matched(&rules, "test-domain", &[("key7", "another_value")]);
    assert!(std::ptr::eq(node, other));
    assert_eq!(counter_key, "test-domain_key7_another%5Fvalue");

    // No other node of the fixture asks for detailed metrics.
    let (key2, _) = matched(&rules, "test-domain", &[("key2", "x")]);
    assert!(!key2.detailed_metric);
}

#[test]
fn basic_nodes_carry_no_mode_flags() {
    let rules = fixture("basic");
    for entries in [
        &[("key1", "value1"), ("subkey1", "x")][..],
        &[("key2", "x")][..],
        &[("key2", "value2")][..],
        &[("key6", "x")][..],
    ] {
        let (node, _) = matched(&rules, "test-domain", entries);
        assert!(!node.shadow_mode, "{entries:?}");
        assert!(!node.quota_mode, "{entries:?}");
        assert!(!node.share_threshold, "{entries:?}");
        assert!(!node.value_to_metric, "{entries:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture B: wildcard
// ---------------------------------------------------------------------------------------------

#[test]
fn valueless_node_is_one_rule_with_per_value_counters() {
    let rules = fixture("wildcard");
    let (a, key_a) = matched(&rules, "test-domain", &[("noVal", "foo1")]);
    let (b, key_b) = matched(&rules, "test-domain", &[("noVal", "foo2")]);
    assert!(std::ptr::eq(a, b), "both values match the same rule");
    assert_eq!(a.policy, limited(20, Unit::Minute));
    assert_eq!(a.stats_key, "test-domain.noVal");
    assert_eq!(key_a, "test-domain_noVal_foo1");
    assert_eq!(key_b, "test-domain_noVal_foo2");
}

#[test]
fn trailing_star_matches_with_pattern_stats_and_runtime_counters() {
    let rules = fixture("wildcard");
    let (a, key_a) = matched(&rules, "test-domain", &[("wild", "foo1")]);
    let (b, key_b) = matched(&rules, "test-domain", &[("wild", "foo2")]);
    assert!(std::ptr::eq(a, b));
    assert_eq!(a.value.as_deref(), Some("foo*"));
    assert_eq!(a.policy, limited(20, Unit::Minute));
    assert_eq!(a.stats_key, "test-domain.wild_foo*");
    assert!(!a.share_threshold);
    // Without share_threshold every runtime value still has its own counter.
    assert_eq!(key_a, "test-domain_wild_foo1");
    assert_eq!(key_b, "test-domain_wild_foo2");

    // `*` also matches nothing at all.
    let (c, key_c) = matched(&rules, "test-domain", &[("wild", "foo")]);
    assert!(std::ptr::eq(a, c));
    assert_eq!(key_c, "test-domain_wild_foo");
}

#[test]
fn trailing_star_rejects_other_prefixes() {
    let rules = fixture("wildcard");
    assert_no_match(&rules, "test-domain", &[("wild", "bar")]);
    assert_no_match(&rules, "test-domain", &[("wild", "xfoo")]);
    assert_no_match(&rules, "test-domain", &[("wild", "fo")]);
}

#[test]
fn value_without_star_is_exact_not_a_prefix() {
    let rules = fixture("wildcard");
    assert_no_match(&rules, "test-domain", &[("noWild", "foo1")]);
    let (node, counter_key) = matched(&rules, "test-domain", &[("noWild", "foo")]);
    assert_eq!(node.stats_key, "test-domain.noWild_foo");
    assert_eq!(counter_key, "test-domain_noWild_foo");
}

#[test]
fn wildcard_one_level_down() {
    let rules = fixture("wildcard");
    let (node, counter_key) = matched(
        &rules,
        "test-domain",
        &[("nestedWild", "val1"), ("wild", "goo2")],
    );
    assert_eq!(node.policy, limited(20, Unit::Minute));
    assert_eq!(node.stats_key, "test-domain.nestedWild_val1.wild_goo*");
    assert_eq!(counter_key, "test-domain_nestedWild_val1_wild_goo2");

    // The top-level `wild: foo*` is not visible below nestedWild.
    assert_no_match(
        &rules,
        "test-domain",
        &[("nestedWild", "val1"), ("wild", "foo1")],
    );
    // And nestedWild=val1 alone is an intermediate node without a limit.
    let (parent, _) = matched(&rules, "test-domain", &[("nestedWild", "val1")]);
    assert_eq!(parent.policy, Policy::None);
}

#[test]
fn middle_star_matches_zero_or_more_characters() {
    let rules = fixture("wildcard");
    let mut nodes = Vec::new();
    for value in ["barab", "bar123b", "barb"] {
        let (node, counter_key) = matched(&rules, "test-domain", &[("midWild", value)]);
        assert_eq!(node.stats_key, "test-domain.midWild_bar*b", "{value}");
        assert_eq!(node.policy, limited(20, Unit::Minute), "{value}");
        assert_eq!(counter_key, format!("test-domain_midWild_{value}"));
        nodes.push(node);
    }
    assert!(nodes.windows(2).all(|w| std::ptr::eq(w[0], w[1])));
}

#[test]
fn middle_star_needs_both_prefix_and_suffix() {
    let rules = fixture("wildcard");
    for value in ["bara", "xbarb", "bar", "barbx", "b"] {
        assert_no_match(&rules, "test-domain", &[("midWild", value)]);
    }
}

#[test]
fn multiple_stars_match_segments_in_order() {
    let rules = fixture("wildcard");
    for value in ["foo123bar456baz", "foobarbaz", "foo-bar-bar-baz"] {
        let (node, counter_key) = matched(&rules, "test-domain", &[("multiWild", value)]);
        assert_eq!(node.policy, limited(10, Unit::Minute), "{value}");
        assert_eq!(
            node.stats_key, "test-domain.multiWild_foo*bar*baz",
            "{value}"
        );
        assert_eq!(counter_key, format!("test-domain_multiWild_{value}"));
    }
}

#[test]
fn multiple_stars_reject_missing_or_reordered_segments() {
    let rules = fixture("wildcard");
    for value in [
        "foo123baz",    // `bar` missing
        "foo123bar456", // `baz` missing
        "123bar456baz", // `foo` missing
        "foobazbar",    // out of order
        "bazbarfoo",    // reversed
        "xfoobarbaz",   // does not start with `foo`
        "foobarbazx",   // does not end with `baz`
    ] {
        assert_no_match(&rules, "test-domain", &[("multiWild", value)]);
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture C: shadow mode
// ---------------------------------------------------------------------------------------------

/// Request entries, expected policy, expected `shadow_mode`, expected stats key.
type ShadowCase = (
    &'static [(&'static str, &'static str)],
    Policy,
    bool,
    &'static str,
);

#[test]
fn shadow_mode_belongs_to_the_matched_node_only() {
    let rules = fixture("shadow");
    let cases: [ShadowCase; 4] = [
        (
            &[("key1", "value1"), ("subkey1", "something")],
            limited(5, Unit::Second),
            false,
            "test-domain.key1_value1.subkey1",
        ),
        (
            &[("key1", "value1"), ("subkey1", "subvalue1")],
            limited(10, Unit::Second),
            true,
            "test-domain.key1_value1.subkey1_subvalue1",
        ),
        (
            &[("key2", "something")],
            limited(20, Unit::Minute),
            true,
            "test-domain.key2",
        ),
        (
            &[("key2", "value2")],
            limited(30, Unit::Minute),
            false,
            "test-domain.key2_value2",
        ),
    ];
    for (entries, policy, shadow, stats_key) in cases {
        let (node, _) = matched(&rules, "test-domain", entries);
        assert_eq!(node.policy, policy, "{entries:?}");
        assert_eq!(node.shadow_mode, shadow, "{entries:?}");
        assert_eq!(node.stats_key, stats_key, "{entries:?}");
    }
}

#[test]
fn shadow_parent_is_not_shadowed_by_its_child() {
    let rules = fixture("shadow");
    let (parent, _) = matched(&rules, "test-domain", &[("key1", "value1")]);
    assert!(!parent.shadow_mode);
    assert_eq!(parent.policy, Policy::None);
}

// ---------------------------------------------------------------------------------------------
// share_threshold and wildcard ordering
// ---------------------------------------------------------------------------------------------

#[test]
fn two_domains_in_one_directory_load_in_file_name_order() {
    let rules = fixture("more");
    let domains: Vec<&str> = rules.files().iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(domains, ["share-threshold-test", "wildcard-order"]);
    assert!(rules.files()[0].0.ends_with("share_threshold.yaml"));
    assert!(rules.files()[1].0.ends_with("wildcard_order.yaml"));
}

#[test]
fn share_threshold_counts_every_match_under_the_pattern() {
    let rules = fixture("more");
    let (a, key_a) = matched(&rules, "share-threshold-test", &[("files", "files/a.pdf")]);
    let (b, key_b) = matched(&rules, "share-threshold-test", &[("files", "files/b.csv")]);
    assert!(std::ptr::eq(a, b));
    assert!(a.share_threshold);
    assert_eq!(a.policy, limited(10, Unit::Hour));
    assert_eq!(a.stats_key, "share-threshold-test.files_files/*");
    assert_eq!(key_a, "share-threshold-test_files_files/*");
    assert_eq!(key_b, key_a, "both values share one counter");
    assert_no_match(&rules, "share-threshold-test", &[("files", "other/a.pdf")]);
}

#[test]
fn wildcard_without_share_threshold_counts_each_value() {
    let rules = fixture("more");
    let (a, key_a) = matched(
        &rules,
        "share-threshold-test",
        &[("files_no_share", "files_no_share/1")],
    );
    let (b, key_b) = matched(
        &rules,
        "share-threshold-test",
        &[("files_no_share", "files_no_share/2")],
    );
    assert!(std::ptr::eq(a, b));
    assert!(!a.share_threshold);
    assert_eq!(
        a.stats_key,
        "share-threshold-test.files_no_share_files_no_share/*"
    );
    assert_eq!(
        key_a,
        "share-threshold-test_files%5Fno%5Fshare_files%5Fno%5Fshare/1"
    );
    assert_eq!(
        key_b,
        "share-threshold-test_files%5Fno%5Fshare_files%5Fno%5Fshare/2"
    );
}

#[test]
fn first_matching_wildcard_in_file_order_wins() {
    let rules = fixture("more");
    let rps = |value: &str| -> u32 {
        let (node, _) = matched(&rules, "wildcard-order", &[("path", value)]);
        single_limit(node).requests_per_unit
    };
    // `/api/*` comes before `/api/v1/*` in the file, so it wins even though it is less specific.
    assert_eq!(rps("/api/v1/users"), 2);
    assert_eq!(rps("/api/other"), 2);
    // Both `/api/*` and `*/admin` match; the earlier one wins.
    assert_eq!(rps("/api/admin"), 2);
    // Only the later wildcard matches.
    assert_eq!(rps("/internal/admin"), 5);
    // An exact value beats every wildcard.
    assert_eq!(rps("/api/v1/health"), 4);
    // Nothing else matches: the default.
    assert_eq!(rps("/static/logo.png"), 1);
}

#[test]
fn wildcard_beats_default_and_keeps_runtime_counter() {
    let rules = fixture("more");
    let (node, counter_key) = matched(&rules, "wildcard-order", &[("path", "/api/x")]);
    assert_eq!(node.value.as_deref(), Some("/api/*"));
    assert_eq!(node.stats_key, "wildcard-order.path_/api/*");
    assert_eq!(counter_key, "wildcard-order_path_/api/x");

    let (default, counter_key) = matched(&rules, "wildcard-order", &[("path", "/x")]);
    assert_eq!(default.value, None);
    assert_eq!(default.stats_key, "wildcard-order.path");
    assert_eq!(counter_key, "wildcard-order_path_/x");
}
