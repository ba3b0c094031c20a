//! Unit tests of `llm_request`: the usage arithmetic, precedence and refusals.

use super::*;

fn ratio(text: &str) -> UsageRatio {
    text.parse().expect("valid ratio")
}

fn config(ratio_text: &str, stream_ms: u64) -> LlmConfig {
    LlmConfig::new(ratio(ratio_text), 256, stream_ms).expect("valid config")
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.insert(*name, value.parse().expect("header value"));
    }
    h
}

fn parse(pairs: &[(&'static str, &str)], body: &str) -> Result<LlmRequest, LlmError> {
    LlmRequest::parse(
        Endpoint::Chat,
        &headers(pairs),
        body.as_bytes(),
        &config("0.5", 0),
    )
}

#[test]
fn ratios_are_exact_decimals_from_0_to_1() {
    assert_eq!(ratio("0.5").of(101), 50);
    assert_eq!(ratio("0.29").of(100), 29); // 0.29 * 100.0 is 28.999… in f64
    assert_eq!(ratio(".25").of(10), 2);
    assert_eq!(ratio("1").of(7), 7);
    assert_eq!(ratio("1.000000").of(7), 7);
    assert_eq!(ratio("0").of(7), 0);
    assert_eq!(ratio("0.000001").of(MAX_TOKENS), 1_000);
    for bad in [
        "",
        ".",
        "1.5",
        "2",
        "-0.5",
        "0.1234567",
        "1e-1",
        " 0.5",
        "0,5",
        "01",
    ] {
        assert!(bad.parse::<UsageRatio>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn prompt_tokens_are_a_quarter_of_the_body_at_least_one() {
    assert_eq!(prompt_tokens(0), 1);
    assert_eq!(prompt_tokens(7), 1);
    assert_eq!(prompt_tokens(8), 2);
    assert_eq!(prompt_tokens(403), 100);
}

#[test]
fn the_body_max_tokens_wins_then_the_header_then_the_default() {
    let body = r#"{"max_tokens": 100, "model": "m1"}"#;
    let r = parse(&[("x-max-tokens", "40")], body).expect("valid");
    assert_eq!((r.max_tokens, r.model.as_str()), (100, "m1"));
    let prompt = body.len() as u64 / 4;
    assert_eq!(
        r.usage,
        Usage {
            prompt,
            completion: 50
        }
    );
    assert_eq!(r.usage.total(), prompt + 50);

    let r = parse(&[("x-max-tokens", "41")], "").expect("valid");
    assert_eq!(
        (r.max_tokens, r.usage.prompt, r.usage.completion),
        (41, 1, 20)
    );
    assert_eq!(r.model, DEFAULT_MODEL);

    let r = parse(&[], r#"{"max_completion_tokens": 9}"#).expect("valid");
    assert_eq!(r.max_tokens, 9);
    let r = parse(&[], "{}").expect("valid");
    assert_eq!((r.max_tokens, r.usage.completion), (256, 128));
}

#[test]
fn a_requested_completion_is_clamped_to_max_tokens() {
    let r = parse(&[("x-completion-tokens", "7")], r#"{"max_tokens": 10}"#);
    assert_eq!(r.expect("valid").usage.completion, 7);
    let r = parse(&[("x-completion-tokens", "70")], r#"{"max_tokens": 10}"#);
    assert_eq!(r.expect("valid").usage.completion, 10);
    let r = parse(&[("x-completion-tokens", "0")], r#"{"max_tokens": 10}"#);
    assert_eq!(r.expect("valid").usage.completion, 0);
}

#[test]
fn the_body_decides_streaming_else_the_header_or_flag() {
    let stream = |pairs: &[(&'static str, &str)], body: &str, flag_ms: u64| {
        let c = config("0.5", flag_ms);
        LlmRequest::parse(Endpoint::Completion, &headers(pairs), body.as_bytes(), &c)
            .expect("valid")
            .stream
    };
    let ms = Duration::from_millis;
    assert_eq!(stream(&[], "{}", 0), None);
    assert_eq!(stream(&[], r#"{"stream": true}"#, 0), Some(ms(0)));
    assert_eq!(stream(&[], r#"{"stream": true}"#, 300), Some(ms(300)));
    assert_eq!(stream(&[], "", 300), Some(ms(300)));
    assert_eq!(stream(&[("x-stream-ms", "40")], "", 0), Some(ms(40)));
    assert_eq!(stream(&[("x-stream-ms", "40")], "", 300), Some(ms(40)));
    assert_eq!(
        stream(&[("x-stream-ms", "40")], r#"{"stream": false}"#, 300),
        None
    );
    assert_eq!(stream(&[], r#"{"stream": null}"#, 0), None);
}

#[test]
fn malformed_input_names_what_is_wrong() {
    let refused = |pairs: &[(&'static str, &str)], body: &str| {
        parse(pairs, body).expect_err("refused").to_string()
    };
    assert!(refused(&[], "{").contains("not JSON"));
    assert!(refused(&[], "[1]").contains("not an array"));
    assert!(refused(&[], "12").contains("not a number"));
    for body in [
        r#"{"max_tokens": 0}"#,
        r#"{"max_tokens": -3}"#,
        r#"{"max_tokens": 1.5}"#,
        r#"{"max_tokens": "9"}"#,
        r#"{"max_tokens": 1000000001}"#,
    ] {
        assert!(
            refused(&[], body).contains("`max_tokens` must be a whole number"),
            "{body}"
        );
    }
    assert!(refused(&[], r#"{"stream": "yes"}"#).contains("`stream`"));
    assert!(refused(&[], r#"{"model": 4}"#).contains("`model`"));
    let long = format!(r#"{{"model": "{}"}}"#, "m".repeat(MAX_MODEL_BYTES + 1));
    assert!(refused(&[], &long).contains("longer than"));
    assert!(refused(&[("x-max-tokens", "many")], "").contains("`x-max-tokens`"));
    assert!(refused(&[("x-max-tokens", "0")], "").contains("from 1 to"));
    assert!(refused(&[("x-completion-tokens", "-1")], "").contains("`x-completion-tokens`"));
    assert!(refused(&[("x-stream-ms", "60001")], "").contains("`x-stream-ms`"));
    let e = parse(&[("x-stream-ms", "soon")], "").expect_err("refused");
    assert_eq!(
        (e.status(), e.param()),
        (StatusCode::BAD_REQUEST, Some("x-stream-ms"))
    );
}

#[test]
fn the_config_is_bounded() {
    assert!(LlmConfig::new(ratio("1"), 0, 0).is_err());
    assert!(LlmConfig::new(ratio("1"), MAX_TOKENS + 1, 0).is_err());
    assert!(LlmConfig::new(ratio("1"), 1, MAX_STREAM_MS + 1).is_err());
    assert!(LlmConfig::new(ratio("1"), MAX_TOKENS, MAX_STREAM_MS).is_ok());
}
