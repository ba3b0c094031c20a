//! The validated rule tree: what a rule file means once it has been parsed.
//!
//! A [`Domain`] is a tree of [`Node`]s. Each level groups its children by descriptor key, and
//! for each key holds the exact-value children, the wildcard children in file order and the
//! default (value-less) child — the three places envoyproxy/ratelimit looks, in that order.

use crate::limiter::unit::Unit;
use hashbrown::HashMap;

/// Algorithms belong to the limiter; re-exported for the rule format.
pub use crate::limiter::algorithm::Algorithm;

/// One limit of a descriptor: `requests_per_unit` hits per `unit`, counted by `algorithm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// `rate_limit.name`: the handle `replaces` refers to; echoed in `current_limit.name`.
    pub name: Option<String>,
    /// Hits admitted per unit; 0 blocks everything, as upstream.
    pub requests_per_unit: u32,
    /// The window (or, for `token_bucket`, the refill period of `requests_per_unit` tokens).
    pub unit: Unit,
    /// How hits are counted.
    pub algorithm: Algorithm,
    /// Token-bucket capacity; equals `requests_per_unit` unless the rule sets `burst`.
    pub burst: u32,
    /// Names of other limits this one switches off when both match one request.
    pub replaces: Vec<String>,
}

impl Limit {
    /// A limit that counts with envoyproxy/ratelimit's fixed window.
    pub fn fixed(requests_per_unit: u32, unit: Unit) -> Limit {
        Limit {
            name: None,
            requests_per_unit,
            unit,
            algorithm: Algorithm::FixedWindow,
            burst: requests_per_unit,
            replaces: Vec::new(),
        }
    }
}

/// What a node says about requests whose descriptor ends on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// No `rate_limit`: an intermediate node, or — without children — a whitelist entry.
    None,
    /// `rate_limit: {unlimited: true}`: always OK, never counted; its `replaces` still apply.
    Unlimited {
        /// Names of limits switched off when this node matches.
        replaces: Vec<String>,
    },
    /// One or more limits; all of them apply.
    Limited(Vec<Limit>),
}

/// A compiled `*` pattern: `*` matches zero or more characters, anywhere in the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern as written (also used as the shared counter value under `share_threshold`).
    pub raw: String,
    /// The literal pieces between the stars; at least two (the value contains a `*`).
    segments: Vec<String>,
}

impl Pattern {
    /// Compiles `raw` if it contains a `*`.
    pub fn new(raw: &str) -> Option<Pattern> {
        if !raw.contains('*') {
            return None;
        }
        Some(Pattern {
            raw: raw.to_owned(),
            segments: raw.split('*').map(str::to_owned).collect(),
        })
    }

    /// Whether `value` starts with the first piece, ends with the last, and holds the middle
    /// pieces in order, without overlaps.
    pub fn matches(&self, value: &str) -> bool {
        let (first, rest) = match self.segments.split_first() {
            Some(split) => split,
            None => return false,
        };
        let (last, middle) = match rest.split_last() {
            Some(split) => split,
            None => return value == first.as_str(),
        };
        let Some(mut remaining) = value.strip_prefix(first.as_str()) else {
            return false;
        };
        for piece in middle {
            match remaining.find(piece.as_str()) {
                Some(at) => remaining = &remaining[at + piece.len()..],
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

/// One descriptor entry of a rule file, with everything under it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The descriptor key this node matches.
    pub key: String,
    /// The value as written: exact value, wildcard pattern, or `None` for the default child.
    pub value: Option<String>,
    /// The limits that apply when a request's descriptor ends here.
    pub policy: Policy,
    /// Evaluate and count, but never deny (status rewritten to OK).
    pub shadow_mode: bool,
    /// A quota-mode OVER_LIMIT makes the overall answer OVER_LIMIT only if all quota
    /// descriptors of the request are over.
    pub quota_mode: bool,
    /// Metrics use the runtime values of every entry (high cardinality; opt-in).
    pub detailed_metric: bool,
    /// Metrics use this level's runtime value.
    pub value_to_metric: bool,
    /// All values matching this wildcard share one counter (keyed by the pattern).
    pub share_threshold: bool,
    /// `domain.key_value.key…` as upstream names the rule in stats (without runtime values).
    pub stats_key: String,
    /// Deeper entries.
    pub children: Level,
    /// `concurrency:`: in-flight slots and a waiting room, beside (or instead of) the limits.
    pub concurrency: Option<std::sync::Arc<crate::concurrency::rule::ConcurrencyRule>>,
}

/// The children of one node (or of a domain's root), grouped by key for lock-free lookup.
#[derive(Debug, Clone, Default)]
pub struct Level {
    /// Children per descriptor key.
    pub by_key: HashMap<String, KeyChildren>,
}

/// All children of one level that share a descriptor key.
#[derive(Debug, Clone, Default)]
pub struct KeyChildren {
    /// `key: k, value: v` children, by value.
    pub exact: HashMap<String, Node>,
    /// `value` with a `*`, in file order: the first match wins.
    pub wildcard: Vec<(Pattern, Node)>,
    /// The child without a value: matches any value, one counter per value.
    pub default: Option<Box<Node>>,
}

/// How a request entry matched a node; decides which value goes into the counter key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    Wildcard,
    Default,
}

impl Level {
    /// The child for one request entry: exact value first, then wildcards in file order, then
    /// the default child.
    pub fn child(&self, key: &str, value: &str) -> Option<(&Node, MatchKind)> {
        let group = self.by_key.get(key)?;
        if let Some(node) = group.exact.get(value) {
            return Some((node, MatchKind::Exact));
        }
        if let Some((_, node)) = group.wildcard.iter().find(|(p, _)| p.matches(value)) {
            return Some((node, MatchKind::Wildcard));
        }
        group.default.as_deref().map(|n| (n, MatchKind::Default))
    }

    /// Every node of this level, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.by_key.values().flat_map(|g| {
            g.exact
                .values()
                .chain(g.wildcard.iter().map(|(_, n)| n))
                .chain(g.default.as_deref())
        })
    }
}

/// One rule file: a domain and its descriptor tree.
#[derive(Debug, Clone)]
pub struct Domain {
    /// The `domain` Envoy sends in each request.
    pub name: String,
    /// The top-level descriptors.
    pub root: Level,
    /// `idempotency:`: requests carrying an idempotency key are charged once per key.
    pub idempotency: Option<Idempotency>,
}

/// A domain's `idempotency:` ([`crate::limiter::once`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The descriptor key of the single-entry descriptor whose value is a request's
    /// idempotency key (that descriptor is not limited itself).
    pub key: String,
    /// How long a repeat is recognised.
    pub ttl: std::time::Duration,
    /// How many repeats one record answers (`None`: all within the ttl).
    pub max_repeats: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::new(s).expect("pattern has a star")
    }

    #[test]
    fn star_matches_zero_or_more_characters() {
        let mid = p("bar*b");
        for v in ["barb", "barab", "bar123b"] {
            assert!(mid.matches(v), "{v}");
        }
        for v in ["bara", "xbarb", "bar", "ba"] {
            assert!(!mid.matches(v), "{v}");
        }
    }

    #[test]
    fn trailing_and_multiple_stars() {
        assert!(p("foo*").matches("foo"));
        assert!(p("foo*").matches("foo1"));
        assert!(!p("foo*").matches("bar"));
        let multi = p("foo*bar*baz");
        assert!(multi.matches("foo123bar456baz"));
        assert!(multi.matches("foobarbaz"));
        assert!(!multi.matches("foo123baz"));
        assert!(!multi.matches("foobazbar"));
        assert!(!multi.matches("foobarba"));
        assert!(p("*").matches(""));
        assert!(p("*x").matches("abcx"));
        assert!(
            !p("ab*ba").matches("aba"),
            "prefix and suffix must not overlap"
        );
    }

    #[test]
    fn no_star_is_not_a_pattern() {
        assert!(Pattern::new("foo").is_none());
    }
}
