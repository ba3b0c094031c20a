//! xDS `RateLimitConfig` resources → one [`Rules`] snapshot, through the same validation as
//! rule files.
//!
//! Each resource is decoded, rebuilt as the YAML tree a rule file with the same content would
//! parse to (as envoyproxy/ratelimit turns each resource into its YAML config struct), and
//! handed to [`parse_domain_value`] under the file name `xds:<resource name>`. So an xDS
//! resource is valid exactly when the equivalent rule file is, and every error names the
//! resource, the path inside it (`descriptors[0].rate_limit.unit`, the proto field names) and
//! the reason. The whole response then goes through [`Rules::from_domains_merged`]: one domain
//! per resource unless `merge_domains`.
//!
//! Upstream's quirks carry over unchanged: the unit is written by its enum name, so `UNKNOWN`
//! is accepted only together with `unlimited: true` and is otherwise "invalid rate limit unit
//! 'UNKNOWN'"; a unit number the enum does not know is invalid the same way; an empty `value`
//! is the default child. Zero resources are valid and mean "no domains".
//!
//! Bounds, besides the gRPC message size the client enforces before anything is decoded:
//! the number of resources, each resource's encoded size (`rules_max_file_bytes`, as a file),
//! prost's recursion limit while decoding, and [`MAX_DEPTH`] descriptor levels (deeper than a
//! rule file can nest within YAML's recursion limit).

use crate::rules::parse::parse_domain_value;
use crate::rules::{RuleError, Rules};
use crate::xds::proto::{
    RateLimitConfig, RateLimitDescriptor, RateLimitPolicy, RateLimitUnit, TYPE_URL,
};
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct};
use prost::Message;
use serde_yaml::{Mapping, Value};

/// Descriptor levels a resource may nest (a rule file's YAML cannot nest deeper either).
pub const MAX_DEPTH: usize = 64;

/// What one response may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Resources per response (domains); more is rejected before any is decoded.
    pub max_resources: usize,
    /// Encoded bytes per resource: `rules_max_file_bytes`, the cap of one rule file.
    pub max_resource_bytes: u64,
    /// `MERGE_DOMAIN_CONFIG`: resources sharing a domain are merged instead of rejected.
    pub merge_domains: bool,
}

/// Validates every resource of one response and builds the snapshot they describe.
/// CPU-bound (decoding and parsing up to a message's worth of rules): callers run it on the
/// blocking pool.
pub fn to_rules(resources: &[Any], bounds: &Bounds) -> Result<Rules, RuleError> {
    if resources.len() > bounds.max_resources {
        return Err(RuleError {
            file: "xds".into(),
            path: "resources".into(),
            reason: format!(
                "{} resources, more than the {} allowed",
                resources.len(),
                bounds.max_resources
            ),
        });
    }
    let mut parsed = Vec::with_capacity(resources.len());
    for (i, any) in resources.iter().enumerate() {
        let (file, config) = decode(i, any, bounds.max_resource_bytes)?;
        let doc = config_value(&file, &config)?;
        parsed.push((file.clone(), parse_domain_value(&file, &doc)?));
    }
    Rules::from_domains_merged(parsed, bounds.merge_domains)
}

/// Decodes resource `i`, returning its error label (`xds:<name>`) with it.
fn decode(i: usize, any: &Any, max_bytes: u64) -> Result<(String, RateLimitConfig), RuleError> {
    let unnamed = format!("xds:resources[{i}]");
    let err = |file: &str, reason: String| RuleError {
        file: file.to_owned(),
        path: String::new(),
        reason,
    };
    if any.type_url != TYPE_URL {
        return Err(err(
            &unnamed,
            format!(
                "resource of type '{}', expected '{TYPE_URL}'",
                truncate(&any.type_url, 200)
            ),
        ));
    }
    if any.value.len() as u64 > max_bytes {
        return Err(err(
            &unnamed,
            format!(
                "resource of {} bytes, larger than rules_max_file_bytes ({max_bytes} bytes)",
                any.value.len()
            ),
        ));
    }
    let config = RateLimitConfig::decode(any.value.as_slice())
        .map_err(|e| err(&unnamed, format!("cannot decode RateLimitConfig: {e}")))?;
    let name = if config.name.is_empty() {
        &config.domain
    } else {
        &config.name
    };
    let file = if name.is_empty() {
        unnamed
    } else {
        format!("xds:{name}")
    };
    Ok((file, config))
}

/// The YAML tree of the rule file equivalent to `config`.
fn config_value(file: &str, config: &RateLimitConfig) -> Result<Value, RuleError> {
    let mut root = Mapping::new();
    root.insert("domain".into(), config.domain.clone().into());
    if !config.descriptors.is_empty() {
        root.insert(
            "descriptors".into(),
            descriptors_value(file, &config.descriptors, "descriptors", 1)?,
        );
    }
    Ok(Value::Mapping(root))
}

fn descriptors_value(
    file: &str,
    items: &[RateLimitDescriptor],
    path: &str,
    depth: usize,
) -> Result<Value, RuleError> {
    if depth > MAX_DEPTH {
        return Err(RuleError {
            file: file.to_owned(),
            path: path.to_owned(),
            reason: format!("descriptors nested more than {MAX_DEPTH} levels deep"),
        });
    }
    let mut seq = Vec::with_capacity(items.len());
    for (i, d) in items.iter().enumerate() {
        let mut m = Mapping::new();
        m.insert("key".into(), d.key.clone().into());
        if !d.value.is_empty() {
            m.insert("value".into(), d.value.clone().into());
        }
        if let Some(policy) = &d.rate_limit {
            m.insert("rate_limit".into(), policy_value(policy));
        }
        if !d.descriptors.is_empty() {
            let here = format!("{path}[{i}].descriptors");
            m.insert(
                "descriptors".into(),
                descriptors_value(file, &d.descriptors, &here, depth + 1)?,
            );
        }
        for (flag, set) in [
            ("shadow_mode", d.shadow_mode),
            ("detailed_metric", d.detailed_metric),
            ("quota_mode", d.quota_mode),
        ] {
            if set {
                m.insert(flag.into(), true.into());
            }
        }
        if let Some(meta) = &d.metadata {
            m.insert("metadata".into(), struct_value(meta));
        }
        seq.push(Value::Mapping(m));
    }
    Ok(Value::Sequence(seq))
}

fn policy_value(p: &RateLimitPolicy) -> Value {
    let mut m = Mapping::new();
    // By enum name, as upstream does: `UNKNOWN` then fails validation unless unlimited.
    let unit = match RateLimitUnit::try_from(p.unit) {
        Ok(u) => u.as_str_name().to_owned(),
        Err(_) => p.unit.to_string(),
    };
    m.insert("unit".into(), unit.into());
    m.insert(
        "requests_per_unit".into(),
        u64::from(p.requests_per_unit).into(),
    );
    if p.unlimited {
        m.insert("unlimited".into(), true.into());
    }
    if !p.name.is_empty() {
        m.insert("name".into(), p.name.clone().into());
    }
    if !p.replaces.is_empty() {
        let replaces = p
            .replaces
            .iter()
            .map(|r| {
                let mut item = Mapping::new();
                item.insert("name".into(), r.name.clone().into());
                Value::Mapping(item)
            })
            .collect();
        m.insert("replaces".into(), Value::Sequence(replaces));
    }
    Value::Mapping(m)
}

/// A `google.protobuf.Struct` as the YAML map a rule file's `metadata` would hold. Depth is
/// bounded by prost's recursion limit at decode time.
fn struct_value(s: &Struct) -> Value {
    let mut keys: Vec<&String> = s.fields.keys().collect();
    keys.sort();
    let mut m = Mapping::new();
    for k in keys {
        let kind = s.fields.get(k).and_then(|v| v.kind.as_ref());
        m.insert(k.clone().into(), kind_value(kind));
    }
    Value::Mapping(m)
}

fn kind_value(kind: Option<&Kind>) -> Value {
    match kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => (*n).into(),
        Some(Kind::StringValue(s)) => s.clone().into(),
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::StructValue(s)) => struct_value(s),
        Some(Kind::ListValue(l)) => Value::Sequence(
            l.values
                .iter()
                .map(|v| kind_value(v.kind.as_ref()))
                .collect(),
        ),
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
