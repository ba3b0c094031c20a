//! Runtime overrides: an operator's temporary limit for a rule or for one descriptor value,
//! set through the admin API without a deploy (the emergency quota increase), with an expiry.
//!
//! - this module: what an override is ([`Override`], [`Target`]) and the immutable
//!   [`OverrideSet`] the hot path consults.
//! - [`doc`]: the JSON documents of the admin API and of the shared store, parsed with errors
//!   that name the field.
//! - [`registry`]: [`registry::Overrides`], the live set: set, clear, list, and the poll that
//!   keeps replicas in step through Redis.
//!
//! A descriptor override (every entry with its value) wins over a rule override; either
//! replaces all the limits of the matched rule with one. The counter key stays the rule's, so
//! raising a limit keeps what was already used in the current window.

pub mod doc;
pub mod registry;

use crate::rules::model::Algorithm;
use crate::rules::unit::Unit;
use hashbrown::HashMap;

/// What an override applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every descriptor a rule matches, named by its stats key as `/rlconfig` prints it
    /// (`domain.key_value.key`).
    Rule(String),
    /// Exactly one descriptor: these entries, in order, with these values.
    Descriptor {
        /// The request's domain.
        domain: String,
        /// `(key, value)` entries.
        entries: Vec<(String, String)>,
    },
}

impl Target {
    /// The key this override is stored and looked up under.
    pub fn id(&self) -> String {
        match self {
            Target::Rule(stats_key) => rule_id(stats_key),
            Target::Descriptor { domain, entries } => descriptor_id(
                domain,
                entries.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        }
    }
}

/// Appends `<byte length>:<text>`: no value can forge a boundary, whatever it contains.
fn push_part(id: &mut String, text: &str) {
    use std::fmt::Write;
    let _ = write!(id, "{}:", text.len());
    id.push_str(text);
}

/// `r` + the stats key, length-prefixed.
fn rule_id(stats_key: &str) -> String {
    let mut id = String::with_capacity(8 + stats_key.len());
    id.push('r');
    push_part(&mut id, stats_key);
    id
}

/// `d` + the domain and every key and value, each length-prefixed.
pub fn descriptor_id<'e>(
    domain: &str,
    entries: impl Iterator<Item = (&'e str, &'e str)>,
) -> String {
    let mut id = String::with_capacity(64);
    id.push('d');
    push_part(&mut id, domain);
    for (k, v) in entries {
        push_part(&mut id, k);
        push_part(&mut id, v);
    }
    id
}

/// The limit an override imposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideLimit {
    /// Let everything through, uncounted.
    Unlimited,
    /// One limit instead of the rule's.
    Limited {
        /// Hits per unit.
        requests_per_unit: u32,
        /// The window.
        unit: Unit,
        /// How to count; `None` keeps the rule's (so its counter carries on).
        algorithm: Option<Algorithm>,
        /// Token-bucket capacity; `None` means `requests_per_unit`.
        burst: Option<u32>,
    },
}

/// One runtime override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// What it applies to.
    pub target: Target,
    /// What it imposes.
    pub limit: OverrideLimit,
    /// When it stops applying, in ms since the epoch (shared between replicas, so wall time).
    pub expires_at_ms: u64,
    /// When it was set (ms since the epoch), for listings.
    pub created_at_ms: u64,
    /// Why (free text from the operator), for listings and audits.
    pub reason: String,
}

impl Override {
    /// Whether it still applies at `now_ms`.
    pub fn active(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

/// An immutable set of overrides; replaced whole on every change (readers never lock).
#[derive(Debug, Default)]
pub struct OverrideSet {
    /// Overrides by [`Target::id`].
    by_id: HashMap<String, Override>,
}

impl OverrideSet {
    /// A set of `overrides` (a later one with the same target wins).
    pub fn new(overrides: impl IntoIterator<Item = Override>) -> OverrideSet {
        OverrideSet {
            by_id: overrides.into_iter().map(|o| (o.target.id(), o)).collect(),
        }
    }

    /// Whether there is no override at all (the hot path skips everything then).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The active override for a rule, by its stats key.
    pub fn for_rule(&self, stats_key: &str, now_ms: u64) -> Option<&Override> {
        self.get(&rule_id(stats_key), now_ms)
    }

    /// The active override for exactly this descriptor.
    pub fn for_descriptor<'e>(
        &self,
        domain: &str,
        entries: impl Iterator<Item = (&'e str, &'e str)>,
        now_ms: u64,
    ) -> Option<&Override> {
        self.get(&descriptor_id(domain, entries), now_ms)
    }

    fn get(&self, id: &str, now_ms: u64) -> Option<&Override> {
        self.by_id.get(id).filter(|o| o.active(now_ms))
    }

    /// Every override (active or not), sorted by id for stable listings.
    pub fn all(&self) -> Vec<&Override> {
        let mut all: Vec<(&String, &Override)> = self.by_id.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter().map(|(_, o)| o).collect()
    }

    /// Iterates over `(id, override)` pairs in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Override)> {
        self.by_id.iter().map(|(id, o)| (id.as_str(), o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(target: Target, expires_at_ms: u64) -> Override {
        Override {
            target,
            limit: OverrideLimit::Limited {
                requests_per_unit: 5,
                unit: Unit::Minute,
                algorithm: None,
                burst: None,
            },
            expires_at_ms,
            created_at_ms: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn finds_rules_and_descriptors_until_they_expire() {
        let set = OverrideSet::new([
            limited(Target::Rule("api.tenant".into()), 1_000),
            limited(
                Target::Descriptor {
                    domain: "api".into(),
                    entries: vec![("tenant".into(), "acme".into())],
                },
                2_000,
            ),
        ]);
        assert!(set.for_rule("api.tenant", 999).is_some());
        assert!(set.for_rule("api.tenant", 1_000).is_none(), "expired");
        assert!(set.for_rule("api.user", 0).is_none());
        let acme = [("tenant", "acme")];
        assert!(set.for_descriptor("api", acme.into_iter(), 1_500).is_some());
        assert!(set.for_descriptor("web", acme.into_iter(), 0).is_none());
        let other = [("tenant", "other")];
        assert!(set.for_descriptor("api", other.into_iter(), 0).is_none());
    }

    #[test]
    fn ids_do_not_collide_across_entry_boundaries() {
        let a = descriptor_id("d", [("a_b", "c")].into_iter());
        let b = descriptor_id("d", [("a", "b_c")].into_iter());
        assert_ne!(a, b);
        assert_ne!(rule_id("d.a"), descriptor_id("d", [("a", "")].into_iter()));
        // A value holding what looks like a boundary cannot become two entries.
        let forged = descriptor_id("d", [("user", "u"), ("model", "m1:x1:y")].into_iter());
        let real = descriptor_id("d", [("user", "u"), ("model", "m"), ("x", "y")].into_iter());
        assert_ne!(forged, real);
    }
}
