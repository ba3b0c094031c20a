//! The JSON of runtime overrides: what the admin API accepts and what replicas share.
//!
//! An admin request names its target as `{"rule": "api.tenant"}` (a rule's stats key, as
//! `/rlconfig` prints it) or `{"domain": "api", "descriptor": [{"key": "tenant", "value":
//! "acme"}]}` (exactly one descriptor), then the limit: `"requests_per_unit"` + `"unit"`
//! (+ optional `"algorithm"`, `"burst"`) or `"unlimited": true`, a `"ttl_seconds"` and an
//! optional `"reason"`. The stored document has `"expires_at_ms"`/`"created_at_ms"` instead of
//! the TTL. Every error names the field at fault.

use crate::overrides::{Override, OverrideLimit, Target};
use crate::rules::model::Algorithm;
use crate::rules::unit::Unit;
use serde_json::{json, Map, Value};

/// The longest override: an emergency measure, not a second rule file.
pub const MAX_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// Why a document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    /// The body is not a JSON object.
    #[error("body is not a JSON object: {0}")]
    NotJson(String),
    /// One field is missing or wrong.
    #[error("{field}: {reason}")]
    Field {
        /// The field, e.g. `descriptor[0].value`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn field_err(field: &str, reason: impl Into<String>) -> DocError {
    DocError::Field {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a body into a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, DocError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DocError::NotJson("expected an object".into())),
        Err(e) => Err(DocError::NotJson(e.to_string())),
    }
}

/// Rejects fields outside `allowed` (a typo such as `ttl` must not be silently ignored).
fn only(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), DocError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(field_err(
            k,
            format!("unknown field (expected one of: {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn string<'a>(map: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, DocError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(field_err(field, "expected a string")),
    }
}

fn non_empty<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a str, DocError> {
    match string(map, field)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(field_err(field, "must not be empty")),
        None => Err(field_err(field, "required")),
    }
}

fn integer(map: &Map<String, Value>, field: &str, max: u64) -> Result<Option<u64>, DocError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(field_err(
                field,
                format!("expected an integer from 0 to {max}"),
            )),
        },
    }
}

fn u32_field(map: &Map<String, Value>, field: &str) -> Result<Option<u32>, DocError> {
    Ok(integer(map, field, u64::from(u32::MAX))?.and_then(|n| u32::try_from(n).ok()))
}

/// The target of a request: `rule`, or `domain` + `descriptor`.
pub fn target(map: &Map<String, Value>) -> Result<Target, DocError> {
    if let Some(rule) = string(map, "rule")? {
        if map.contains_key("domain") || map.contains_key("descriptor") {
            return Err(field_err(
                "rule",
                "give either rule or domain + descriptor, not both",
            ));
        }
        if rule.is_empty() {
            return Err(field_err("rule", "must not be empty"));
        }
        return Ok(Target::Rule(rule.to_owned()));
    }
    let domain = non_empty(map, "domain").map_err(|e| match e {
        DocError::Field { reason, .. } if reason == "required" => field_err(
            "domain",
            "required (or name a rule with \"rule\": \"<stats key>\")",
        ),
        e => e,
    })?;
    let entries = match map.get("descriptor") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => return Err(field_err("descriptor", "must not be empty")),
        Some(_) => return Err(field_err("descriptor", "expected an array of {key, value}")),
        None => return Err(field_err("descriptor", "required")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, item) in entries.iter().enumerate() {
        let at = |f: &str| format!("descriptor[{i}].{f}");
        let Value::Object(e) = item else {
            return Err(field_err(
                &format!("descriptor[{i}]"),
                "expected {key, value}",
            ));
        };
        only(e, &["key", "value"]).map_err(|err| match err {
            DocError::Field { field, reason } => field_err(&at(&field), reason),
            other => other,
        })?;
        let key = non_empty(e, "key").map_err(|_| field_err(&at("key"), "required, non-empty"))?;
        let value = non_empty(e, "value").map_err(|_| {
            field_err(
                &at("value"),
                "required, non-empty (to cover every value, name the rule with \"rule\")",
            )
        })?;
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(Target::Descriptor {
        domain: domain.to_owned(),
        entries: out,
    })
}

/// Fields that name a target.
const TARGET_FIELDS: [&str; 3] = ["rule", "domain", "descriptor"];
/// Fields of a limit.
const LIMIT_FIELDS: [&str; 5] = [
    "requests_per_unit",
    "unit",
    "algorithm",
    "burst",
    "unlimited",
];

/// A body that only names a target (clear, usage, reset).
pub fn parse_target(body: &[u8]) -> Result<Target, DocError> {
    let map = object(body)?;
    only(&map, &TARGET_FIELDS)?;
    target(&map)
}

/// An admin request to set an override, at `now_ms`.
pub fn parse_set(body: &[u8], now_ms: u64) -> Result<Override, DocError> {
    let map = object(body)?;
    let allowed: Vec<&str> = TARGET_FIELDS
        .iter()
        .chain(&LIMIT_FIELDS)
        .chain(&["ttl_seconds", "reason"])
        .copied()
        .collect();
    only(&map, &allowed)?;
    let ttl = match integer(&map, "ttl_seconds", MAX_TTL_SECONDS)? {
        Some(0) => return Err(field_err("ttl_seconds", "must be at least 1")),
        Some(ttl) => ttl,
        None => {
            return Err(field_err(
                "ttl_seconds",
                "required: overrides always expire",
            ))
        }
    };
    let reason = string(&map, "reason")?.unwrap_or_default();
    if reason.len() > 1024 {
        return Err(field_err("reason", "at most 1024 bytes"));
    }
    Ok(Override {
        target: target(&map)?,
        limit: limit(&map)?,
        expires_at_ms: now_ms.saturating_add(ttl * 1000),
        created_at_ms: now_ms,
        reason: reason.to_owned(),
    })
}

/// The limit fields of a set request or a stored document.
fn limit(map: &Map<String, Value>) -> Result<OverrideLimit, DocError> {
    let unlimited = match map.get("unlimited") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(field_err("unlimited", "expected true or false")),
    };
    if unlimited {
        if let Some(f) = ["requests_per_unit", "unit", "algorithm", "burst"]
            .into_iter()
            .find(|f| map.contains_key(*f))
        {
            return Err(field_err(f, "not allowed with \"unlimited\": true"));
        }
        return Ok(OverrideLimit::Unlimited);
    }
    let requests_per_unit = u32_field(map, "requests_per_unit")?
        .ok_or_else(|| field_err("requests_per_unit", "required (or \"unlimited\": true)"))?;
    let unit_name = non_empty(map, "unit")?;
    let unit = Unit::parse(unit_name).ok_or_else(|| {
        field_err(
            "unit",
            format!("unknown unit '{unit_name}' (second, minute, hour, day, week, month or year)"),
        )
    })?;
    let algorithm = match string(map, "algorithm")? {
        None => None,
        Some(a) => Some(Algorithm::parse(a).ok_or_else(|| {
            let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
            field_err(
                "algorithm",
                format!("unknown algorithm '{a}' (one of: {})", names.join(", ")),
            )
        })?),
    };
    let burst = match u32_field(map, "burst")? {
        Some(0) => return Err(field_err("burst", "must be at least 1")),
        b => b,
    };
    Ok(OverrideLimit::Limited {
        requests_per_unit,
        unit,
        algorithm,
        burst,
    })
}

/// The document of `o` (stored in Redis, listed by the admin API).
pub fn to_doc(o: &Override) -> Value {
    let mut doc = Map::new();
    match &o.target {
        Target::Rule(rule) => {
            doc.insert("rule".into(), json!(rule));
        }
        Target::Descriptor { domain, entries } => {
            doc.insert("domain".into(), json!(domain));
            let entries: Vec<Value> = entries
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            doc.insert("descriptor".into(), Value::Array(entries));
        }
    }
    match o.limit {
        OverrideLimit::Unlimited => {
            doc.insert("unlimited".into(), json!(true));
        }
        OverrideLimit::Limited {
            requests_per_unit,
            unit,
            algorithm,
            burst,
        } => {
            doc.insert("requests_per_unit".into(), json!(requests_per_unit));
            doc.insert("unit".into(), json!(unit.name().to_ascii_lowercase()));
            if let Some(a) = algorithm {
                doc.insert("algorithm".into(), json!(a.name()));
            }
            if let Some(b) = burst {
                doc.insert("burst".into(), json!(b));
            }
        }
    }
    doc.insert("expires_at_ms".into(), json!(o.expires_at_ms));
    doc.insert("created_at_ms".into(), json!(o.created_at_ms));
    doc.insert("reason".into(), json!(o.reason));
    Value::Object(doc)
}

/// Parses a stored document.
pub fn from_doc(text: &str) -> Result<Override, DocError> {
    let map = object(text.as_bytes())?;
    let expires_at_ms = integer(&map, "expires_at_ms", u64::MAX)?
        .ok_or_else(|| field_err("expires_at_ms", "required"))?;
    Ok(Override {
        target: target(&map)?,
        limit: limit(&map)?,
        expires_at_ms,
        created_at_ms: integer(&map, "created_at_ms", u64::MAX)?.unwrap_or(0),
        reason: string(&map, "reason")?.unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match parse_set(body.as_bytes(), 1_000) {
            Ok(o) => panic!("accepted {body}: {o:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_set_request_round_trips_through_its_document() {
        let body = r#"{"domain":"api","descriptor":[{"key":"tenant","value":"acme"}],
            "requests_per_unit":1000,"unit":"MINUTE","ttl_seconds":60,"reason":"INC-1"}"#;
        let o = parse_set(body.as_bytes(), 5_000).expect("valid");
        assert_eq!(o.expires_at_ms, 65_000);
        let back = from_doc(&to_doc(&o).to_string()).expect("own document");
        assert_eq!(back, o);
        let rule = parse_set(
            br#"{"rule":"api.tenant","unlimited":true,"ttl_seconds":1}"#,
            0,
        )
        .expect("valid");
        assert_eq!(rule.limit, OverrideLimit::Unlimited);
        assert_eq!(from_doc(&to_doc(&rule).to_string()), Ok(rule));
    }

    #[test]
    fn errors_name_the_field() {
        let t = r#""domain":"api","descriptor":[{"key":"tenant","value":"acme"}]"#;
        for (body, expect) in [
            ("[]".to_owned(), "body is not a JSON object"),
            ("{".to_owned(), "body is not a JSON object"),
            (format!(r#"{{{t},"unit":"minute","ttl_seconds":5}}"#), "requests_per_unit: required"),
            (format!(r#"{{{t},"requests_per_unit":-1,"unit":"minute","ttl_seconds":5}}"#), "requests_per_unit: expected an integer"),
            (format!(r#"{{{t},"requests_per_unit":1,"unit":"fortnight","ttl_seconds":5}}"#), "unit: unknown unit 'fortnight'"),
            (format!(r#"{{{t},"requests_per_unit":1,"unit":"minute"}}"#), "ttl_seconds: required"),
            (format!(r#"{{{t},"requests_per_unit":1,"unit":"minute","ttl_seconds":99999999}}"#), "ttl_seconds: expected an integer from 0 to 2592000"),
            (format!(r#"{{{t},"requests_per_unit":1,"unit":"minute","ttl":5}}"#), "ttl: unknown field"),
            (format!(r#"{{{t},"unlimited":true,"unit":"minute","ttl_seconds":5}}"#), "unit: not allowed"),
            (format!(r#"{{{t},"requests_per_unit":1,"unit":"minute","algorithm":"leaky","ttl_seconds":5}}"#), "algorithm: unknown algorithm 'leaky'"),
            (r#"{"domain":"api","descriptor":[{"key":"tenant"}],"unlimited":true,"ttl_seconds":5}"#.to_owned(), "descriptor[0].value: required"),
            (r#"{"domain":"api","descriptor":[],"unlimited":true,"ttl_seconds":5}"#.to_owned(), "descriptor: must not be empty"),
            (r#"{"descriptor":[{"key":"a","value":"b"}],"unlimited":true,"ttl_seconds":5}"#.to_owned(), "domain: required"),
            (r#"{"rule":"api.a","domain":"api","unlimited":true,"ttl_seconds":5}"#.to_owned(), "rule: give either"),
        ] {
            let got = err(&body);
            assert!(got.starts_with(expect), "{body}\n  got:  {got}\n  want: {expect}…");
        }
    }
}
