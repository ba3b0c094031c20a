//! The ext_authz configuration file (`--authz-config`): where the API key and the model come
//! from, the model → tier table, which models each key tier may use, and the descriptor
//! templates evaluated against the rule files.
//!
//! ```yaml
//! domain: ai_gateway                 # the rule domain the descriptors are checked in
//! api_key: {header: authorization, scheme: Bearer}   # or {header: x-api-key}
//! model: {header: x-model, body_field: model}        # header first, then the JSON body
//! model_tiers: {gpt-4o: premium, gpt-4o-mini: standard, tiny-model: free}
//! tier_models: {free: [tiny-model]}  # optional: models a key tier may use
//! rate_limit_headers: ratelimit      # off | ratelimit | draft10 | all
//! descriptors:                       # one request descriptor per template
//!   - name: USER_MODEL
//!     entries: [{key: user, value: "%user%"}, {key: model, value: "%model%"}]
//!   - name: GLOBAL
//!     entries: [{key: scope, value: global}]
//! precedence: [USER_MODEL, GLOBAL]   # most specific first; default: template order
//! ```
//!
//! Values are literals with `%variable%` parts: `tenant`, `user`, `tier`, `api_key` (the key's
//! id, never the key), `model`, `model_tier`, `method`, `path`. A template whose variables
//! are not all known for a request (no model sent, say) is left out of that request.

use crate::rules::RuleError;
use crate::service::response::HeaderMode;
use hashbrown::HashMap;
use serde::Deserialize;

/// A request fact a template can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Tenant,
    User,
    Tier,
    ApiKey,
    Model,
    ModelTier,
    Method,
    Path,
}

impl Var {
    const ALL: [(&'static str, Var); 8] = [
        ("tenant", Var::Tenant),
        ("user", Var::User),
        ("tier", Var::Tier),
        ("api_key", Var::ApiKey),
        ("model", Var::Model),
        ("model_tier", Var::ModelTier),
        ("method", Var::Method),
        ("path", Var::Path),
    ];

    fn parse(name: &str) -> Option<Var> {
        Var::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// A piece of a template value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Var(Var),
}

/// One descriptor template: its name (the cause reported when it is exceeded) and entries.
#[derive(Debug, Clone)]
pub struct Template {
    /// E.g. `USER_MODEL`.
    pub name: String,
    /// `(key, value parts)`, in order.
    pub entries: Vec<(String, Vec<Part>)>,
}

/// Where the API key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// Header name, lower case (Envoy sends header names in lower case).
    pub header: String,
    /// Scheme before the key (`Bearer`), compared case-insensitively; `None`: the whole value.
    pub scheme: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AuthzConfig {
    /// Rule domain of the descriptors.
    pub domain: String,
    /// Where the key comes from.
    pub api_key: KeySource,
    /// Header carrying the model (lower case), if any.
    pub model_header: Option<String>,
    /// Top-level JSON body field carrying the model, if any (needs Envoy's `with_request_body`).
    pub model_body_field: Option<String>,
    /// Model → model tier.
    pub model_tiers: HashMap<String, String>,
    /// Key tier → models it may use (tiers absent here may use any model).
    pub tier_models: HashMap<String, Vec<String>>,
    /// Rate-limit headers on answers.
    pub headers: HeaderMode,
    /// The templates, in evaluation order.
    pub templates: Vec<Template>,
    /// Template names, most specific first: the first exceeded one is the reported cause.
    pub precedence: Vec<String>,
}

/// The file as written (validated into [`AuthzConfig`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    domain: String,
    #[serde(default)]
    api_key: Option<RawKeySource>,
    #[serde(default)]
    model: Option<RawModel>,
    #[serde(default)]
    model_tiers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    tier_models: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rate_limit_headers: Option<String>,
    descriptors: Vec<RawTemplate>,
    #[serde(default)]
    precedence: Option<Vec<String>>,
}

/// `api_key:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeySource {
    header: String,
    #[serde(default)]
    scheme: Option<String>,
}

/// `model:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    body_field: Option<String>,
}

/// One template as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: String,
    entries: Vec<RawEntry>,
}

/// One template entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    key: String,
    value: String,
}

/// Splits `v-%tier%` into parts; unknown or unclosed `%…%` is an error.
fn parse_value(value: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        if start > 0 {
            parts.push(Part::Literal(rest[..start].to_owned()));
        }
        let after = &rest[start + 1..];
        let end = after
            .find('%')
            .ok_or_else(|| format!("unclosed '%' in '{value}'"))?;
        let name = &after[..end];
        let var = Var::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Var::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown variable '%{name}%' (one of: {})", known.join(", "))
        })?;
        parts.push(Part::Var(var));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    if parts.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(parts)
}

impl AuthzConfig {
    /// Parses and validates the file `file` holding `text`.
    pub fn parse(file: &str, text: &str) -> Result<AuthzConfig, RuleError> {
        let err = |path: String, reason: String| RuleError {
            file: file.to_owned(),
            path,
            reason,
        };
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| err(String::new(), e.to_string()))?;
        if raw.domain.is_empty() {
            return Err(err("domain".into(), "must not be empty".into()));
        }
        let api_key = match raw.api_key {
            None => KeySource {
                header: "authorization".into(),
                scheme: Some("Bearer".into()),
            },
            Some(k) if k.header.is_empty() => {
                return Err(err("api_key.header".into(), "must not be empty".into()))
            }
            Some(k) => KeySource {
                scheme: match k.scheme {
                    Some(s) if s.is_empty() => None,
                    Some(s) => Some(s),
                    None if k.header.eq_ignore_ascii_case("authorization") => Some("Bearer".into()),
                    None => None,
                },
                header: k.header.to_ascii_lowercase(),
            },
        };
        let (model_header, model_body_field) = match raw.model {
            None => (Some("x-model".to_owned()), Some("model".to_owned())),
            Some(m) => (
                m.header
                    .filter(|h| !h.is_empty())
                    .map(|h| h.to_ascii_lowercase()),
                m.body_field.filter(|f| !f.is_empty()),
            ),
        };
        let headers = match raw.rate_limit_headers.as_deref() {
            None => HeaderMode::Ratelimit,
            Some(h) => HeaderMode::parse(h).ok_or_else(|| {
                err(
                    "rate_limit_headers".into(),
                    format!("unknown mode '{h}' (off, ratelimit, draft10 or all)"),
                )
            })?,
        };
        if raw.descriptors.is_empty() {
            return Err(err("descriptors".into(), "at least one template".into()));
        }
        let mut templates = Vec::with_capacity(raw.descriptors.len());
        for (i, t) in raw.descriptors.into_iter().enumerate() {
            if t.name.is_empty() {
                return Err(err(
                    format!("descriptors[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if templates.iter().any(|x: &Template| x.name == t.name) {
                return Err(err(
                    format!("descriptors[{i}].name"),
                    format!("duplicate template name '{}'", t.name),
                ));
            }
            if t.entries.is_empty() {
                return Err(err(
                    format!("descriptors[{i}].entries"),
                    "at least one entry".into(),
                ));
            }
            let mut entries = Vec::with_capacity(t.entries.len());
            for (j, e) in t.entries.into_iter().enumerate() {
                if e.key.is_empty() {
                    return Err(err(
                        format!("descriptors[{i}].entries[{j}].key"),
                        "must not be empty".into(),
                    ));
                }
                let parts = parse_value(&e.value)
                    .map_err(|r| err(format!("descriptors[{i}].entries[{j}].value"), r))?;
                entries.push((e.key, parts));
            }
            templates.push(Template {
                name: t.name,
                entries,
            });
        }
        let precedence = match raw.precedence {
            None => templates.iter().map(|t| t.name.clone()).collect(),
            Some(p) => {
                for (i, name) in p.iter().enumerate() {
                    if !templates.iter().any(|t| &t.name == name) {
                        return Err(err(
                            format!("precedence[{i}]"),
                            format!("no descriptor template named '{name}'"),
                        ));
                    }
                }
                // Templates left out rank last, in template order.
                let mut all = p;
                for t in &templates {
                    if !all.contains(&t.name) {
                        all.push(t.name.clone());
                    }
                }
                all
            }
        };
        Ok(AuthzConfig {
            domain: raw.domain,
            api_key,
            model_header,
            model_body_field,
            model_tiers: raw.model_tiers.into_iter().collect(),
            tier_models: raw.tier_models.into_iter().collect(),
            headers,
            templates,
            precedence,
        })
    }

    /// Whether a key of `tier` may use `model`.
    pub fn tier_allows(&self, tier: &str, model: &str) -> bool {
        self.tier_models
            .get(tier)
            .is_none_or(|models| models.iter().any(|m| m == model))
    }

    /// Rank of a template name in the precedence (lower is more specific).
    pub fn rank(&self, name: &str) -> usize {
        self.precedence
            .iter()
            .position(|n| n == name)
            .unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "
domain: ai
api_key: {header: X-Api-Key}
descriptors:
  - name: USER_MODEL
    entries: [{key: user, value: '%user%'}, {key: model, value: 'm-%model%'}]
  - name: GLOBAL
    entries: [{key: scope, value: global}]
precedence: [GLOBAL]
";

    #[test]
    fn parses_templates_sources_and_precedence() {
        let c = AuthzConfig::parse("a.yaml", OK).expect("valid");
        assert_eq!(
            c.api_key,
            KeySource {
                header: "x-api-key".into(),
                scheme: None
            }
        );
        assert_eq!(c.model_header.as_deref(), Some("x-model"));
        assert_eq!(
            c.templates[0].entries[1].1,
            vec![Part::Literal("m-".into()), Part::Var(Var::Model)]
        );
        assert_eq!(c.precedence, vec!["GLOBAL", "USER_MODEL"]);
        assert_eq!(c.headers, HeaderMode::Ratelimit);
    }

    #[test]
    fn errors_name_file_path_and_reason() {
        for (text, want) in [
            (
                OK.replace("'%user%'", "'%usr%'"),
                "a.yaml: descriptors[0].entries[0].value: unknown variable '%usr%'",
            ),
            (
                OK.replace("'m-%model%'", "'m-%model'"),
                "a.yaml: descriptors[0].entries[1].value: unclosed '%'",
            ),
            (
                OK.replace("[GLOBAL]", "[GLOBL]"),
                "a.yaml: precedence[0]: no descriptor template named 'GLOBL'",
            ),
            (
                OK.replace("name: GLOBAL", "name: USER_MODEL"),
                "a.yaml: descriptors[1].name: duplicate template name",
            ),
            (
                OK.replace("domain: ai", "domian: ai"),
                "a.yaml: unknown field `domian`",
            ),
        ] {
            let e = AuthzConfig::parse("a.yaml", &text)
                .expect_err(want)
                .to_string();
            assert!(e.starts_with(want), "{e}\n want {want}");
        }
    }
}
