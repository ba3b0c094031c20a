//! API keys (`--authz-keys`): each key is known only by its SHA-256 hash and maps to a tenant,
//! a user, a tier, optionally the models it may use and per-key limits.
//!
//! ```yaml
//! keys:
//!   - id: ent-key-2          # not secret: the `api_key` descriptor value, shown in logs
//!     sha256: 9f86d0…        # `sluice hash-key` prints it; the key itself is never stored
//!     tenant: enterprise_co
//!     user: ent-user-2
//!     tier: enterprise
//!     models: [gpt-4o]       # optional; absent: any model the tier allows
//!     limits:                # optional: this key's own limit for a template
//!       API_KEY: {requests_per_unit: 40, unit: hour}
//! ```
//!
//! A presented key is hashed and looked up by its digest. The lookup's timing can only reveal
//! something about the digest, which says nothing useful about a key; the final comparison of
//! digests is constant-time all the same.

use crate::rules::unit::Unit;
use crate::rules::RuleError;
use crate::secret::constant_time_eq;
use hashbrown::HashMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Who a key belongs to and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Public id (never the key).
    pub id: String,
    /// The owning tenant.
    pub tenant: String,
    /// The user the key acts for.
    pub user: String,
    /// The plan or tier (`free`, `pro`, `enterprise`, …).
    pub tier: String,
    /// Models this key may use; `None`: any the tier allows.
    pub models: Option<Vec<String>>,
    /// Template name → this key's own limit `(requests_per_unit, unit)`.
    pub limits: HashMap<String, (u32, Unit)>,
}

impl ApiKey {
    /// Whether the key itself permits `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// Every known key, by digest.
#[derive(Debug, Default)]
pub struct Keys {
    /// SHA-256 of the key → who it is; the keys themselves are never held.
    by_digest: HashMap<[u8; 32], Arc<ApiKey>>,
}

/// The file as written (validated into [`Keys`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    keys: Vec<RawKey>,
}

/// One key as written; fields as in [`ApiKey`], `sha256` in hex.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: String,
    sha256: String,
    tenant: String,
    user: String,
    tier: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    limits: std::collections::BTreeMap<String, RawLimit>,
}

/// A per-key limit as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    requests_per_unit: u32,
    unit: String,
}

/// The SHA-256 of `key`, lower-case hex (what `sluice hash-key` prints).
pub fn hash_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Keys {
    /// Parses the keys file `file` holding `text`; `templates` are the template names a
    /// per-key limit may name.
    pub fn parse(file: &str, text: &str, templates: &[String]) -> Result<Keys, RuleError> {
        let err = |path: String, reason: String| RuleError {
            file: file.to_owned(),
            path,
            reason,
        };
        let raw: RawFile =
            serde_yaml::from_str(text).map_err(|e| err(String::new(), e.to_string()))?;
        let mut keys = Keys::default();
        let mut ids: Vec<String> = Vec::with_capacity(raw.keys.len());
        for (i, k) in raw.keys.into_iter().enumerate() {
            let at = |f: &str| format!("keys[{i}].{f}");
            for (field, value) in [
                ("id", &k.id),
                ("tenant", &k.tenant),
                ("user", &k.user),
                ("tier", &k.tier),
            ] {
                if value.is_empty() {
                    return Err(err(at(field), "must not be empty".into()));
                }
            }
            if ids.contains(&k.id) {
                return Err(err(at("id"), format!("duplicate key id '{}'", k.id)));
            }
            let digest = parse_hex(&k.sha256.to_ascii_lowercase()).ok_or_else(|| {
                err(
                    at("sha256"),
                    "expected 64 hex digits (the output of `sluice hash-key`)".into(),
                )
            })?;
            if keys.by_digest.contains_key(&digest) {
                return Err(err(at("sha256"), "the same key is listed twice".into()));
            }
            let mut limits = HashMap::new();
            for (name, l) in k.limits {
                if !templates.contains(&name) {
                    return Err(err(
                        at(&format!("limits.{name}")),
                        format!("no descriptor template named '{name}' in the authz config"),
                    ));
                }
                // Request overrides carry envoy.type.v3.RateLimitUnit, which has no WEEK.
                let unit = Unit::parse(&l.unit)
                    .filter(|u| *u != Unit::Week)
                    .ok_or_else(|| {
                        err(
                            at(&format!("limits.{name}.unit")),
                            format!(
                                "unknown unit '{}' (second, minute, hour, day, month or year)",
                                l.unit
                            ),
                        )
                    })?;
                limits.insert(name, (l.requests_per_unit, unit));
            }
            ids.push(k.id.clone());
            keys.by_digest.insert(
                digest,
                Arc::new(ApiKey {
                    id: k.id,
                    tenant: k.tenant,
                    user: k.user,
                    tier: k.tier,
                    models: k.models,
                    limits,
                }),
            );
        }
        Ok(keys)
    }

    /// The key `presented` stands for, if any.
    pub fn find(&self, presented: &str) -> Option<Arc<ApiKey>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let (stored, key) = self.by_digest.get_key_value(&digest)?;
        constant_time_eq(stored, &digest).then(|| Arc::clone(key))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_by_hash_only() {
        let text = format!(
            "keys:\n  - {{id: k1, sha256: {}, tenant: t, user: u, tier: free, limits: {{API_KEY: {{requests_per_unit: 5, unit: hour}}}}}}\n",
            hash_hex("s3cret")
        );
        let keys = Keys::parse("k.yaml", &text, &["API_KEY".into()]).expect("valid");
        let k = keys.find("s3cret").expect("known key");
        assert_eq!(
            (k.id.as_str(), k.limits["API_KEY"]),
            ("k1", (5, Unit::Hour))
        );
        assert!(keys.find("s3cret ").is_none());
        assert!(keys.find("").is_none());
        assert_eq!(
            hash_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn errors_name_file_path_and_reason() {
        let h = hash_hex("x");
        for (text, want) in [
            ("keys:\n  - {id: a, sha256: abc, tenant: t, user: u, tier: f}\n".to_owned(), "k.yaml: keys[0].sha256: expected 64 hex digits"),
            (format!("keys:\n  - {{id: a, sha256: {h}, tenant: t, user: u, tier: f}}\n  - {{id: a, sha256: {h}, tenant: t, user: u, tier: f}}\n"), "k.yaml: keys[1].id: duplicate key id 'a'"),
            (format!("keys:\n  - {{id: a, sha256: {h}, tenant: '', user: u, tier: f}}\n"), "k.yaml: keys[0].tenant: must not be empty"),
            (format!("keys:\n  - {{id: a, sha256: {h}, tenant: t, user: u, tier: f, limits: {{NOPE: {{requests_per_unit: 1, unit: hour}}}}}}\n"), "k.yaml: keys[0].limits.NOPE: no descriptor template named 'NOPE'"),
            (format!("keys:\n  - {{id: a, sha256: {h}, tenant: t, user: u, tier: f, limits: {{API_KEY: {{requests_per_unit: 1, unit: week}}}}}}\n"), "k.yaml: keys[0].limits.API_KEY.unit: unknown unit 'week'"),
        ] {
            let e = Keys::parse("k.yaml", &text, &["API_KEY".into()]).expect_err(want).to_string();
            assert!(e.starts_with(want), "{e}\n want {want}");
        }
    }
}
