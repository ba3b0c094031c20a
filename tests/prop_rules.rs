//! Property tests over rule parsing: generated rule files — valid shapes with hostile values
//! (huge or negative numbers, unknown units and algorithms, wrong types, deep nesting, odd
//! keys) and arbitrary text — never panic; every refusal names the file and a reason, and a
//! refusal inside the document names the path to the offending field.

use proptest::prelude::*;
use sluice::rules::parse::parse_domain;
use sluice::rules::Rules;

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("4294967295".to_owned()),
        Just("4294967296".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1e400".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("'*'".to_owned()),
        Just("'a*b*'".to_owned()),
        "[a-z_#%*]{1,6}",
        any::<u32>().prop_map(|n| n.to_string()),
    ]
}

fn unit() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("second".to_owned()),
        Just("minute".to_owned()),
        Just("hour".to_owned()),
        Just("day".to_owned()),
        Just("week".to_owned()),
        Just("month".to_owned()),
        Just("year".to_owned()),
        Just("SECOND".to_owned()),
        Just("fortnight".to_owned()),
        scalar(),
    ]
}

fn rate_limit() -> impl Strategy<Value = String> {
    (
        unit(),
        scalar(),
        prop::option::of(prop_oneof![
            Just("fixed_window".to_owned()),
            Just("sliding_window".to_owned()),
            Just("sliding_log".to_owned()),
            Just("token_bucket".to_owned()),
            scalar(),
        ]),
        prop::option::of(scalar()),
        prop::option::of(scalar()),
        any::<bool>(),
    )
        .prop_map(|(unit, rpu, algorithm, burst, name, unlimited)| {
            let mut s = format!("{{unit: {unit}, requests_per_unit: {rpu}");
            if let Some(a) = algorithm {
                s.push_str(&format!(", algorithm: {a}"));
            }
            if let Some(b) = burst {
                s.push_str(&format!(", burst: {b}"));
            }
            if let Some(n) = name {
                s.push_str(&format!(", name: {n}, replaces: [{{name: {n}}}]"));
            }
            if unlimited {
                s.push_str(", unlimited: true");
            }
            s.push('}');
            s
        })
}

fn node(depth: u32) -> BoxedStrategy<String> {
    let leaf = (
        scalar(),
        prop::option::of(scalar()),
        prop::option::of(rate_limit()),
        prop::option::of(scalar()),
    )
        .prop_map(|(key, value, rl, flag)| {
            let mut s = format!("{{key: {key}");
            if let Some(v) = value {
                s.push_str(&format!(", value: {v}"));
            }
            if let Some(r) = rl {
                s.push_str(&format!(", rate_limit: {r}"));
            }
            if let Some(f) = flag {
                s.push_str(&format!(", shadow_mode: {f}, share_threshold: {f}"));
            }
            s
        });
    if depth == 0 {
        return leaf.prop_map(|s| s + "}").boxed();
    }
    (leaf, prop::collection::vec(node(depth - 1), 0..3))
        .prop_map(|(s, children)| {
            if children.is_empty() {
                s + "}"
            } else {
                format!("{s}, descriptors: [{}]}}", children.join(", "))
            }
        })
        .boxed()
}

fn document() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop_oneof![Just("d".to_owned()), scalar()], prop::collection::vec(node(3), 0..4))
            .prop_map(|(domain, nodes)| format!("domain: {domain}\ndescriptors: [{}]\n", nodes.join(", "))),
        1 => any::<String>(),
        1 => "[a-z:\\-\\[\\]{}, \n]{0,80}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_rule_files_parse_or_name_the_field(doc in document()) {
        match parse_domain("t.yaml", &doc) {
            Ok(domain) => {
                // A valid file also builds a rule set without panicking.
                let _ = Rules::from_domains(vec![("t.yaml".into(), domain)]);
            }
            Err(e) => {
                prop_assert_eq!(&e.file, "t.yaml");
                prop_assert!(!e.reason.is_empty(), "no reason: {}", e);
                let shaped = doc.starts_with("domain: ") && doc.contains("descriptors: [{key");
                if shaped && e.reason.contains("must") {
                    prop_assert!(!e.path.is_empty(), "no path: {}", e);
                }
            }
        }
    }
}
