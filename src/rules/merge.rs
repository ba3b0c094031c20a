//! `MERGE_DOMAIN_CONFIG`: several rule files (or xDS resources) defining one domain have their
//! top-level descriptors merged into one tree, as envoyproxy/ratelimit does. Only the top level
//! is merged: a descriptor whose composite key (key and value, or the key alone for a default
//! child) is already defined is a conflict, not a deeper merge.

use crate::rules::model::Level;

/// Moves the top-level descriptors of `from` into `into`; `Err(stats key)` on the first
/// composite key both define (exact value, wildcard pattern, or the default child of a key).
/// Wildcards of `from` go after those of `into`, so the earlier file's patterns match first.
pub(super) fn merge_level(into: &mut Level, from: Level) -> Result<(), String> {
    for (key, group) in from.by_key {
        let target = into.by_key.entry(key).or_default();
        for (value, node) in group.exact {
            if target.exact.contains_key(&value) {
                return Err(node.stats_key);
            }
            target.exact.insert(value, node);
        }
        for (pattern, node) in group.wildcard {
            if target.wildcard.iter().any(|(p, _)| p.raw == pattern.raw) {
                return Err(node.stats_key);
            }
            target.wildcard.push((pattern, node));
        }
        if let Some(node) = group.default {
            if target.default.is_some() {
                return Err(node.stats_key);
            }
            target.default = Some(node);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::rules::parse::parse_domain;
    use crate::rules::{Lookup, Rules};

    fn parsed(files: &[(&str, &str)]) -> Vec<(String, crate::rules::model::Domain)> {
        files
            .iter()
            .map(|(f, t)| (f.to_string(), parse_domain(f, t).expect("valid file")))
            .collect()
    }

    const A: &str = "domain: d\ndescriptors:\n  - key: k1\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: w\n    value: 'a*'\n    rate_limit: {unit: second, requests_per_unit: 1}\n";
    const B: &str = "domain: d\ndescriptors:\n  - key: k2\n    value: v\n    rate_limit: {unit: minute, requests_per_unit: 2}\n  - key: w\n    value: 'ab*'\n    rate_limit: {unit: second, requests_per_unit: 9}\n";

    #[test]
    fn a_second_file_of_a_domain_is_an_error_unless_merging() {
        let err = Rules::from_domains(parsed(&[("a.yaml", A), ("b.yaml", B)]))
            .expect_err("duplicate domain");
        assert_eq!(err.file, "b.yaml");
        assert!(err.reason.contains("duplicate domain 'd'"), "{err}");

        let rules = Rules::from_domains_merged(parsed(&[("a.yaml", A), ("b.yaml", B)]), true)
            .expect("merged");
        assert!(matches!(
            rules.lookup("d", [("k1", "x")]),
            Lookup::Matched { .. }
        ));
        assert!(matches!(
            rules.lookup("d", [("k2", "v")]),
            Lookup::Matched { .. }
        ));
        // The earlier file's wildcard wins for a value both match.
        match rules.lookup("d", [("w", "abc")]) {
            Lookup::Matched { node, .. } => assert_eq!(node.value.as_deref(), Some("a*")),
            other => panic!("{other:?}"),
        }
        assert_eq!(rules.files().len(), 2);
    }

    #[test]
    fn a_composite_key_defined_twice_is_still_an_error() {
        for (twice, key) in [
            (
                "  - key: k1\n    rate_limit: {unit: day, requests_per_unit: 5}\n",
                "d.k1",
            ),
            ("  - key: w\n    value: 'a*'\n", "d.w_a*"),
        ] {
            let c = format!("domain: d\ndescriptors:\n{twice}");
            let err = Rules::from_domains_merged(parsed(&[("a.yaml", A), ("c.yaml", &c)]), true)
                .expect_err("duplicate key");
            assert_eq!(err.file, "c.yaml");
            assert!(
                err.reason
                    .contains(&format!("duplicate descriptor composite key '{key}'")),
                "{err}"
            );
        }
        let exact = "domain: d\ndescriptors:\n  - key: k2\n    value: v\n";
        let err = Rules::from_domains_merged(parsed(&[("b.yaml", B), ("c.yaml", exact)]), true)
            .expect_err("duplicate exact value");
        assert!(err.reason.contains("'d.k2_v'"), "{err}");
    }
}
