//! `POST /json`: envoyproxy/ratelimit's HTTP form of ShouldRateLimit. The body is a protojson
//! `RateLimitRequest`, the answer a protojson `RateLimitResponse` with status 200 (OK), 429
//! (OVER_LIMIT) or 400 (bad input, with the field named); 503 if the store cannot answer.
//!
//! protojson is mapped by hand for the few messages involved: field names in lowerCamelCase or
//! as in the proto, enums by name or number, 64-bit integers as numbers or strings, unknown
//! fields rejected; output in lowerCamelCase with default values left out.

use crate::admin::{error, AdminState};
use crate::store::Store;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Handles one `/json` call.
pub async fn handle<S: Store>(State(st): State<Arc<AdminState<S>>>, body: Bytes) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    if !st.config_loaded() {
        let e = crate::service::error::ServiceError::NoConfig;
        st.limiter.calls().failed(&e);
        return crate::admin::control::from_service(&e);
    }
    match st.limiter.should_rate_limit(&req, None).await {
        Ok(resp) => {
            let status = match Code::try_from(resp.overall_code) {
                Ok(Code::Ok) => StatusCode::OK,
                Ok(Code::OverLimit) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                render_response(&resp).to_string(),
            )
                .into_response()
        }
        Err(e) => crate::admin::control::from_service(&e),
    }
}

/// A JSON object's fields, looked up by proto name or lowerCamelCase JSON name.
struct Fields<'a> {
    /// The object.
    map: &'a Map<String, Value>,
    /// Where it sits in the body (`descriptors[0].limit`), for error messages.
    path: String,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, path: &str, known: &[&str]) -> Result<Fields<'a>, String> {
        let Value::Object(map) = value else {
            return Err(format!("{}: expected an object", display(path)));
        };
        for k in map.keys() {
            if !known.iter().any(|n| *n == k || camel(n) == *k) {
                return Err(format!("{}: unknown field", join(path, k)));
            }
        }
        for n in known {
            let c = camel(n);
            if c != *n && map.contains_key(*n) && map.contains_key(&c) {
                return Err(format!("{}: given twice (as {n} and {c})", join(path, n)));
            }
        }
        Ok(Fields {
            map,
            path: path.to_owned(),
        })
    }

    fn get(&self, name: &str) -> Option<(&'a Value, String)> {
        let camel = camel(name);
        self.map
            .get(name)
            .or_else(|| self.map.get(&camel))
            .filter(|v| !v.is_null())
            .map(|v| (v, join(&self.path, name)))
    }

    fn string(&self, name: &str) -> Result<String, String> {
        match self.get(name) {
            None => Ok(String::new()),
            Some((Value::String(s), _)) => Ok(s.clone()),
            Some((_, at)) => Err(format!("{at}: expected a string")),
        }
    }

    fn uint(&self, name: &str, max: u64) -> Result<Option<u64>, String> {
        let Some((v, at)) = self.get(name) else {
            return Ok(None);
        };
        let n = match v {
            // protojson also takes an integral number written as `1e2` or `100.0`.
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                    .map(|f| f as u64)
            }),
            Value::String(s) => s.parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(format!("{at}: expected an integer from 0 to {max}")),
        }
    }

    fn bool(&self, name: &str) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(false),
            Some((Value::Bool(b), _)) => Ok(*b),
            Some((_, at)) => Err(format!("{at}: expected true or false")),
        }
    }

    fn array(&self, name: &str) -> Result<&'a [Value], String> {
        match self.get(name) {
            None => Ok(&[]),
            Some((Value::Array(items), _)) => Ok(items),
            Some((_, at)) => Err(format!("{at}: expected an array")),
        }
    }
}

/// `hits_addend` → `hitsAddend`.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "body"
    } else {
        path
    }
}

/// Parses a protojson `RateLimitRequest`; the error names the field.
pub fn parse_request(body: &[u8]) -> Result<RateLimitRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let f = Fields::new(&value, "", &["domain", "descriptors", "hits_addend"])?;
    let mut req = RateLimitRequest {
        domain: f.string("domain")?,
        hits_addend: f
            .uint("hits_addend", u64::from(u32::MAX))?
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        ..Default::default()
    };
    for (i, d) in f.array("descriptors")?.iter().enumerate() {
        req.descriptors
            .push(descriptor(d, &format!("descriptors[{i}]"))?);
    }
    Ok(req)
}

fn descriptor(value: &Value, path: &str) -> Result<RateLimitDescriptor, String> {
    let f = Fields::new(
        value,
        path,
        &["entries", "limit", "hits_addend", "is_negative_hits"],
    )?;
    let mut d = RateLimitDescriptor {
        hits_addend: f
            .uint("hits_addend", u64::MAX)?
            .map(|value| UInt64Value { value }),
        is_negative_hits: f.bool("is_negative_hits")?,
        ..Default::default()
    };
    for (j, e) in f.array("entries")?.iter().enumerate() {
        let ef = Fields::new(e, &format!("{path}.entries[{j}]"), &["key", "value"])?;
        d.entries.push(Entry {
            key: ef.string("key")?,
            value: ef.string("value")?,
        });
    }
    if let Some((limit, at)) = f.get("limit") {
        let lf = Fields::new(limit, &at, &["requests_per_unit", "unit"])?;
        let unit = match lf.get("unit") {
            None => 0,
            Some((Value::String(name), _)) => RateLimitUnit::from_str_name(name)
                .map(|u| u as i32)
                .ok_or_else(|| format!("{at}.unit: unknown unit '{name}'"))?,
            Some((Value::Number(n), _)) => n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| format!("{at}.unit: expected a unit name or number"))?,
            Some(_) => return Err(format!("{at}.unit: expected a unit name or number")),
        };
        d.limit = Some(RateLimitOverride {
            requests_per_unit: lf
                .uint("requests_per_unit", u64::from(u32::MAX))?
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            unit,
        });
    }
    Ok(d)
}

/// Renders a `RateLimitResponse` as protojson (lowerCamelCase, defaults omitted).
pub fn render_response(resp: &RateLimitResponse) -> Value {
    let mut out = Map::new();
    if resp.overall_code != 0 {
        out.insert("overallCode".into(), json!(code_name(resp.overall_code)));
    }
    if !resp.statuses.is_empty() {
        let statuses: Vec<Value> = resp.statuses.iter().map(status).collect();
        out.insert("statuses".into(), Value::Array(statuses));
    }
    for (name, headers) in [
        ("responseHeadersToAdd", &resp.response_headers_to_add),
        ("requestHeadersToAdd", &resp.request_headers_to_add),
    ] {
        if !headers.is_empty() {
            let list: Vec<Value> = headers
                .iter()
                .map(|h| json!({"key": h.key, "value": h.value}))
                .collect();
            out.insert(name.into(), Value::Array(list));
        }
    }
    Value::Object(out)
}

fn code_name(code: i32) -> &'static str {
    Code::try_from(code).map_or("UNKNOWN", |c| c.as_str_name())
}

fn status(s: &DescriptorStatus) -> Value {
    let mut out = Map::new();
    if s.code != 0 {
        out.insert("code".into(), json!(code_name(s.code)));
    }
    if let Some(limit) = &s.current_limit {
        out.insert("currentLimit".into(), rate_limit(limit));
    }
    if s.limit_remaining != 0 {
        out.insert("limitRemaining".into(), json!(s.limit_remaining));
    }
    if let Some(d) = &s.duration_until_reset {
        out.insert(
            "durationUntilReset".into(),
            json!(duration(d.seconds, d.nanos)),
        );
    }
    Value::Object(out)
}

fn rate_limit(l: &RateLimit) -> Value {
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
    let mut out = Map::new();
    if !l.name.is_empty() {
        out.insert("name".into(), json!(l.name));
    }
    if l.requests_per_unit != 0 {
        out.insert("requestsPerUnit".into(), json!(l.requests_per_unit));
    }
    if l.unit != 0 {
        let name = Unit::try_from(l.unit).map_or("UNKNOWN", |u| u.as_str_name());
        out.insert("unit".into(), json!(name));
    }
    Value::Object(out)
}

/// protojson's Duration: seconds with 0, 3, 6 or 9 fractional digits and an `s`.
fn duration(seconds: i64, nanos: i32) -> String {
    if nanos == 0 {
        format!("{seconds}s")
    } else if nanos % 1_000_000 == 0 {
        format!("{seconds}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{seconds}.{:06}s", nanos / 1_000)
    } else {
        format!("{seconds}.{nanos:09}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_field_spellings_and_names_bad_fields() {
        let req = parse_request(
            br#"{"domain":"api","hitsAddend":2,"descriptors":[{"entries":[{"key":"a","value":"b"}],
                "limit":{"requests_per_unit":5,"unit":"MINUTE"},"hits_addend":"3"}]}"#,
        )
        .expect("valid");
        assert_eq!(req.hits_addend, 2);
        let exp = parse_request(br#"{"hitsAddend":1e2}"#).expect("integral exponent");
        assert_eq!(exp.hits_addend, 100);
        assert_eq!(
            req.descriptors[0].hits_addend,
            Some(UInt64Value { value: 3 })
        );
        let limit = req.descriptors[0].limit.expect("limit");
        assert_eq!((limit.requests_per_unit, limit.unit), (5, 2));
        for (body, want) in [
            (r#"{"domain":1}"#, "domain: expected a string"),
            (r#"{"domian":"x"}"#, "domian: unknown field"),
            (
                r#"{"descriptors":[{"entries":[{"key":"a","valu":"b"}]}]}"#,
                "descriptors[0].entries[0].valu: unknown field",
            ),
            (
                r#"{"descriptors":[{"limit":{"unit":"FORTNIGHT"}}]}"#,
                "descriptors[0].limit.unit: unknown unit",
            ),
            (r#"{"hits_addend":-1}"#, "hits_addend: expected an integer"),
            (r#"{"hits_addend":1.5}"#, "hits_addend: expected an integer"),
            (
                r#"{"hits_addend":1,"hitsAddend":2}"#,
                "hits_addend: given twice",
            ),
            ("[1]", "body: expected an object"),
            ("{", "body is not JSON"),
        ] {
            let got = parse_request(body.as_bytes()).expect_err(body);
            assert!(got.starts_with(want), "{body}: {got}");
        }
    }

    #[test]
    fn durations_as_protojson() {
        assert_eq!(duration(60, 0), "60s");
        assert_eq!(duration(1, 500_000_000), "1.500s");
        assert_eq!(duration(0, 1_000), "0.000001s");
        assert_eq!(duration(0, 7), "0.000000007s");
    }
}
