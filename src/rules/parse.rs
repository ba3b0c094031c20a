//! Parsing and validating one rule file (envoyproxy/ratelimit's YAML format plus sluice's
//! extensions) into a [`Domain`].
//!
//! The YAML is read into a generic tree first, so every error can name the path inside the file
//! (`descriptors[2].rate_limit.unit`) as well as the reason.

use crate::rules::model::{Algorithm, Domain, KeyChildren, Level, Limit, Node, Pattern, Policy};
use crate::rules::unit::Unit;
use crate::rules::RuleError;
use serde_yaml::{Mapping, Value};

/// Keys a rule file may contain at the top level.
const ROOT_KEYS: &[&str] = &["domain", "descriptors", "idempotency"];
/// Keys a descriptor may contain (upstream's plus `rate_limits`).
const DESCRIPTOR_KEYS: &[&str] = &[
    "key",
    "value",
    "rate_limit",
    "rate_limits",
    "descriptors",
    "shadow_mode",
    "quota_mode",
    "detailed_metric",
    "value_to_metric",
    "share_threshold",
    "metadata",
    "concurrency",
];
/// Keys a `rate_limit` may contain (upstream's plus `algorithm`, `burst` and the calendar
/// window's `calendar` and `utc_offset`, read by `parse_calendar`).
const LIMIT_KEYS: &[&str] = &[
    "unit",
    "requests_per_unit",
    "unlimited",
    "name",
    "replaces",
    "algorithm",
    "burst",
    "calendar",
    "utc_offset",
];

/// Parses the text of one rule file. `file` only labels errors.
pub fn parse_domain(file: &str, text: &str) -> Result<Domain, RuleError> {
    let p = Parser { file };
    let doc: Value = serde_yaml::from_str(text)
        .map_err(|e| p.err("", format!("error loading config file: {e}")))?;
    parse_domain_value(file, &doc)
}

/// Validates one rule file already read into a YAML tree — the entry point for sources that
/// build the tree themselves (xDS resources, [`crate::xds::convert`]), so they go through the
/// very same checks as files. `file` only labels errors.
pub fn parse_domain_value(file: &str, doc: &Value) -> Result<Domain, RuleError> {
    let p = Parser { file };
    let empty = Mapping::new();
    let root = match doc {
        Value::Null => &empty,
        Value::Mapping(m) => m,
        _ => {
            return Err(p.err(
                "",
                "config file must be a map with 'domain' and 'descriptors'",
            ))
        }
    };
    p.check_keys(root, "", ROOT_KEYS)?;
    let domain = match root.get("domain") {
        None | Some(Value::Null) => String::new(),
        Some(v) => p.scalar(v, "domain")?,
    };
    if domain.is_empty() {
        return Err(p.err("domain", "config file cannot have empty domain"));
    }
    let root_level = p.level(root.get("descriptors"), "descriptors", &domain)?;
    let idempotency = p.idempotency(root.get("idempotency"))?;
    Ok(Domain {
        name: domain,
        root: root_level,
        idempotency,
    })
}

/// A parsed `rate_limit` map.
enum Parsed {
    /// `unlimited: true`, possibly replacing other limits.
    Unlimited { replaces: Vec<String> },
    /// A counted limit.
    Limit(Limit),
}

/// Carries the file name into every error.
pub(super) struct Parser<'a> {
    pub(super) file: &'a str,
}

impl Parser<'_> {
    pub(super) fn err(&self, path: &str, reason: impl Into<String>) -> RuleError {
        RuleError {
            file: self.file.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// Rejects keys that are not strings or not in `allowed`.
    pub(super) fn check_keys(
        &self,
        map: &Mapping,
        path: &str,
        allowed: &[&str],
    ) -> Result<(), RuleError> {
        for key in map.keys() {
            let Value::String(k) = key else {
                return Err(self.err(
                    path,
                    format!("config error, key is not of type string: {}", show(key)),
                ));
            };
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(
                    &join(path, k),
                    format!(
                        "config error, unknown key '{k}' (expected one of: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A string, integer or boolean, as a string (upstream accepts all three for values).
    pub(super) fn scalar(&self, v: &Value, path: &str) -> Result<String, RuleError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            other => Err(self.err(
                path,
                format!("must be a string, integer or boolean, not {}", show(other)),
            )),
        }
    }

    fn boolean(&self, map: &Mapping, key: &str, path: &str) -> Result<bool, RuleError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.err(
                &join(path, key),
                format!("must be true or false, not {}", show(other)),
            )),
        }
    }

    pub(super) fn u32_field(
        &self,
        map: &Mapping,
        key: &str,
        path: &str,
    ) -> Result<Option<u32>, RuleError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
                Some(v) => Ok(Some(v)),
                None => Err(self.err(
                    &join(path, key),
                    format!("must be an integer from 0 to {}, not {n}", u32::MAX),
                )),
            },
            Some(other) => Err(self.err(
                &join(path, key),
                format!(
                    "must be an integer from 0 to {}, not {}",
                    u32::MAX,
                    show(other)
                ),
            )),
        }
    }

    /// Items of a list of maps (`descriptors`, `replaces`, `rate_limits`).
    fn maps<'v>(&self, v: Option<&'v Value>, path: &str) -> Result<Vec<&'v Mapping>, RuleError> {
        let items = match v {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                return Err(self.err(path, format!("must be a list, not {}", show(other))))
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Mapping(m) => Ok(m),
                other => Err(self.err(
                    &format!("{path}[{i}]"),
                    format!(
                        "config error, yaml file contains list of type other than map: {}",
                        show(other)
                    ),
                )),
            })
            .collect()
    }

    /// Parses a `descriptors` list into a level; `parent` is the composite key so far.
    fn level(&self, v: Option<&Value>, path: &str, parent: &str) -> Result<Level, RuleError> {
        let mut level = Level::default();
        for (i, map) in self.maps(v, path)?.into_iter().enumerate() {
            let here = format!("{path}[{i}]");
            let node = self.node(map, &here, parent)?;
            let composite = node.stats_key.clone();
            let group: &mut KeyChildren = level.by_key.entry(node.key.clone()).or_default();
            let duplicate = match node.value.clone() {
                None => group.default.replace(Box::new(node)).is_some(),
                Some(value) => match Pattern::new(&value) {
                    Some(pattern) => {
                        let dup = group.wildcard.iter().any(|(p, _)| p.raw == value);
                        if !dup {
                            group.wildcard.push((pattern, node));
                        }
                        dup
                    }
                    None => group.exact.insert(value, node).is_some(),
                },
            };
            if duplicate {
                return Err(self.err(
                    &here,
                    format!("duplicate descriptor composite key '{composite}'"),
                ));
            }
        }
        Ok(level)
    }

    fn node(&self, map: &Mapping, path: &str, parent: &str) -> Result<Node, RuleError> {
        self.check_keys(map, path, DESCRIPTOR_KEYS)?;
        let key = match map.get("key") {
            None | Some(Value::Null) => String::new(),
            Some(v) => self.scalar(v, &join(path, "key"))?,
        };
        if key.is_empty() {
            return Err(self.err(&join(path, "key"), "descriptor has empty key"));
        }
        // Upstream treats an empty value like no value: the default child.
        let value = match map.get("value") {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.scalar(v, &join(path, "value"))?).filter(|v| !v.is_empty()),
        };
        let stats_key = match &value {
            Some(v) => format!("{parent}.{key}_{v}"),
            None => format!("{parent}.{key}"),
        };
        let share_threshold = self.boolean(map, "share_threshold", path)?;
        if share_threshold && !value.as_deref().is_some_and(|v| v.contains('*')) {
            return Err(self.err(
                &join(path, "share_threshold"),
                "share_threshold can only be used with a wildcard value (one containing '*')",
            ));
        }
        if let Some(m) = map.get("metadata") {
            if !matches!(m, Value::Mapping(_) | Value::Null) {
                return Err(self.err(&join(path, "metadata"), "must be a map"));
            }
        }
        let policy = self.policy(map, path)?;
        let concurrency = match map.get("concurrency") {
            None | Some(Value::Null) => None,
            Some(v) => Some(std::sync::Arc::new(
                self.concurrency(v, &join(path, "concurrency"))?,
            )),
        };
        let children = self.level(
            map.get("descriptors"),
            &join(path, "descriptors"),
            &stats_key,
        )?;
        if let Some(c) = &concurrency {
            if let Some(k) = children.by_key.keys().find(|k| c.is_attribute(k)) {
                return Err(self.err(
                    &join(path, "concurrency"),
                    format!(
                        "'{k}' is both a request attribute of this concurrency rule and a child descriptor key"
                    ),
                ));
            }
        }
        Ok(Node {
            key,
            value,
            policy,
            shadow_mode: self.boolean(map, "shadow_mode", path)?,
            quota_mode: self.boolean(map, "quota_mode", path)?,
            detailed_metric: self.boolean(map, "detailed_metric", path)?,
            value_to_metric: self.boolean(map, "value_to_metric", path)?,
            share_threshold,
            stats_key,
            children,
            concurrency,
        })
    }

    /// `rate_limit` (upstream: one limit, or unlimited) and/or `rate_limits` (a list).
    fn policy(&self, map: &Mapping, path: &str) -> Result<Policy, RuleError> {
        let single = match map.get("rate_limit") {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                return Err(self.err(
                    &join(path, "rate_limit"),
                    format!("must be a map, not {}", show(other)),
                ))
            }
        };
        let list = self.maps(map.get("rate_limits"), &join(path, "rate_limits"))?;
        if single.is_some() && !list.is_empty() {
            return Err(self.err(
                path,
                "use either 'rate_limit' (one limit) or 'rate_limits' (a list), not both",
            ));
        }
        if let Some(m) = single {
            return match self.limit(m, &join(path, "rate_limit"), true)? {
                Parsed::Unlimited { replaces } => Ok(Policy::Unlimited { replaces }),
                Parsed::Limit(limit) => Ok(Policy::Limited(vec![limit])),
            };
        }
        if list.is_empty() {
            return Ok(Policy::None);
        }
        let mut limits = Vec::with_capacity(list.len());
        for (i, m) in list.into_iter().enumerate() {
            // `unlimited` is rejected inside a list, so every item is a limit.
            if let Parsed::Limit(limit) =
                self.limit(m, &format!("{path}.rate_limits[{i}]"), false)?
            {
                limits.push(limit);
            }
        }
        Ok(Policy::Limited(limits))
    }

    /// One `rate_limit` map.
    fn limit(&self, m: &Mapping, path: &str, unlimited_allowed: bool) -> Result<Parsed, RuleError> {
        self.check_keys(m, path, LIMIT_KEYS)?;
        let unlimited = self.boolean(m, "unlimited", path)?;
        let unit_text = match m.get("unit") {
            None | Some(Value::Null) => String::new(),
            Some(v) => self.scalar(v, &join(path, "unit"))?,
        };
        let unit = Unit::parse(&unit_text);
        if unlimited {
            if !unlimited_allowed {
                return Err(self.err(
                    &join(path, "unlimited"),
                    "unlimited is only allowed in 'rate_limit', not in a 'rate_limits' list",
                ));
            }
            if unit.is_some() {
                return Err(self.err(
                    &join(path, "unit"),
                    "should not specify rate limit unit when unlimited",
                ));
            }
            self.no_calendar(m, path)?;
            // Upstream honours (and validates) the `replaces` of an unlimited limit too.
            let replaces = self.replaces(m, path, self.name(m, path)?.as_deref())?;
            return Ok(Parsed::Unlimited { replaces });
        }
        let Some(unit) = unit else {
            return Err(self.err(
                &join(path, "unit"),
                format!(
                    "invalid rate limit unit '{unit_text}' (expected second, minute, hour, day, week, month or year)"
                ),
            ));
        };
        let requests_per_unit = self.u32_field(m, "requests_per_unit", path)?.unwrap_or(0);
        let name = self.name(m, path)?;
        let algorithm = match m.get("algorithm") {
            None | Some(Value::Null) => Algorithm::FixedWindow,
            Some(v) => {
                let text = self.scalar(v, &join(path, "algorithm"))?;
                Algorithm::parse(&text).ok_or_else(|| {
                    self.err(
                        &join(path, "algorithm"),
                        format!(
                            "unknown algorithm '{text}' (expected fixed_window, sliding_window, sliding_log or token_bucket)"
                        ),
                    )
                })?
            }
        };
        let burst = match self.u32_field(m, "burst", path)? {
            Some(_) if algorithm != Algorithm::TokenBucket => {
                return Err(self.err(
                    &join(path, "burst"),
                    "burst only applies to algorithm: token_bucket",
                ))
            }
            Some(b) => b,
            None => requests_per_unit,
        };
        let algorithm = self.calendar(m, path, unit, algorithm)?;
        let replaces = self.replaces(m, path, name.as_deref())?;
        Ok(Parsed::Limit(Limit {
            name,
            requests_per_unit,
            unit,
            algorithm,
            burst,
            replaces,
        }))
    }

    /// A limit's `name`; empty counts as none.
    fn name(&self, m: &Mapping, path: &str) -> Result<Option<String>, RuleError> {
        match m.get("name") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Ok(Some(self.scalar(v, &join(path, "name"))?).filter(|n| !n.is_empty())),
        }
    }

    /// A limit's `replaces`: non-empty names, none equal to the limit's own `name`.
    fn replaces(
        &self,
        m: &Mapping,
        path: &str,
        name: Option<&str>,
    ) -> Result<Vec<String>, RuleError> {
        let mut replaces = Vec::new();
        let replaces_path = join(path, "replaces");
        for (i, r) in self
            .maps(m.get("replaces"), &replaces_path)?
            .into_iter()
            .enumerate()
        {
            let item = format!("{replaces_path}[{i}]");
            self.check_keys(r, &item, &["name"])?;
            let target = match r.get("name") {
                None | Some(Value::Null) => String::new(),
                Some(v) => self.scalar(v, &join(&item, "name"))?,
            };
            if target.is_empty() {
                return Err(self.err(&item, "should not have an empty replaces entry"));
            }
            if name == Some(target.as_str()) {
                return Err(self.err(&item, "replaces should not contain name of same descriptor"));
            }
            replaces.push(target);
        }
        Ok(replaces)
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A short rendering of a YAML value for error messages.
pub(super) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Mapping(_) => "a map".to_owned(),
        Value::Sequence(_) => "a list".to_owned(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_else(|_| "?".to_owned()),
    }
}
