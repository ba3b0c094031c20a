//! The `idempotency:` field of a rule file: what it accepts, and every error naming the file,
//! the path inside it and the reason; files of one merged domain must agree on it.

use sluice::rules::parse::parse_domain;
use sluice::rules::{RuleError, Rules};
use std::time::Duration;

fn err(text: &str) -> RuleError {
    match parse_domain("f.yaml", text) {
        Ok(_) => panic!("expected an error for {text}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_err(text: &str, path: &str, reason: &str) {
    let e = err(text);
    assert_eq!(e.file, "f.yaml");
    assert_eq!(e.path, path, "{e:?}");
    assert!(e.reason.contains(reason), "{e:?} should say {reason:?}");
}

#[test]
fn accepted_forms() {
    let d = parse_domain(
        "f.yaml",
        "domain: d\nidempotency: {key: request_id, ttl: 90s}\ndescriptors: []\n",
    )
    .expect("parses");
    let i = d.idempotency.expect("declared");
    assert_eq!(
        (i.key.as_str(), i.ttl),
        ("request_id", Duration::from_secs(90))
    );
    let d = parse_domain(
        "f.yaml",
        "domain: d\nidempotency: {key: k, max_repeats: 3}\n",
    )
    .expect("parses");
    assert_eq!(d.idempotency.expect("declared").max_repeats, Some(3));
    let d = parse_domain("f.yaml", "domain: d\nidempotency: {key: k}\n").expect("parses");
    assert_eq!(
        d.idempotency.expect("declared").ttl,
        Duration::from_secs(600),
        "10 minutes by default"
    );
    let d = parse_domain("f.yaml", "domain: d\ndescriptors: []\n").expect("parses");
    assert!(d.idempotency.is_none());
}

#[test]
fn errors_name_the_path_and_reason() {
    assert_err(
        "domain: d\nidempotency: yes\n",
        "idempotency",
        "must be a map",
    );
    assert_err(
        "domain: d\nidempotency: {ttl: 1m}\n",
        "idempotency.key",
        "must name",
    );
    assert_err(
        "domain: d\nidempotency: {key: ''}\n",
        "idempotency.key",
        "1 to 256 bytes",
    );
    let long = "k".repeat(257);
    assert_err(
        &format!("domain: d\nidempotency: {{key: {long}}}\n"),
        "idempotency.key",
        "1 to 256 bytes",
    );
    for bad in ["0s", "500ms", "25h", "1.5m", "-1m", "soon"] {
        assert_err(
            &format!("domain: d\nidempotency: {{key: k, ttl: '{bad}'}}\n"),
            "idempotency.ttl",
            "from 1s to 24h",
        );
    }
    for bad in ["0", "1000001", "-1", "many"] {
        assert_err(
            &format!("domain: d\nidempotency: {{key: k, max_repeats: {bad}}}\n"),
            "idempotency.max_repeats",
            "",
        );
    }
    assert_err(
        "domain: d\nidempotency: {key: k, scope: all}\n",
        "idempotency.scope",
        "unknown key",
    );
}

#[test]
fn merged_files_must_agree() {
    let a = parse_domain("a.yaml", "domain: d\nidempotency: {key: k, ttl: 1m}\n").expect("a");
    let b = parse_domain("b.yaml", "domain: d\nidempotency: {key: k, ttl: 2m}\n").expect("b");
    let c = parse_domain(
        "c.yaml",
        "domain: d\ndescriptors: [{key: x, rate_limit: {unit: second, requests_per_unit: 1}}]\n",
    )
    .expect("c");
    let e = Rules::from_domains_merged(
        vec![("a.yaml".into(), a.clone()), ("b.yaml".into(), b)],
        true,
    )
    .expect_err("disagreeing files");
    assert_eq!(
        (e.file.as_str(), e.path.as_str()),
        ("b.yaml", "idempotency")
    );
    let merged = Rules::from_domains_merged(vec![("c.yaml".into(), c), ("a.yaml".into(), a)], true)
        .expect("one file declares it");
    let i = merged.domain("d").and_then(|d| d.idempotency.clone());
    assert_eq!(i.map(|i| i.ttl), Some(Duration::from_secs(60)));
}
