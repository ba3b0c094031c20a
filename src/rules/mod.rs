//! Rule files: envoyproxy/ratelimit's YAML format, loaded from a directory, validated, and
//! indexed for lock-free matching.
//!
//! - [`unit`]: time units.
//! - [`model`]: the validated tree (domains, nodes, limits, wildcard patterns).
//! - [`parse`]: YAML → [`model::Domain`], with file/path/reason errors; `parse_calendar` and
//!   `parse_concurrency` read a limit's calendar window and a node's `concurrency:` map.
//! - [`read`]: reading files safely (regular files only, never blocking, size-capped).
//! - [`reload`]: hot reload (poll + SIGHUP), keeping the last good rules on error.
//! - `merge`: several files of one domain merged (`MERGE_DOMAIN_CONFIG`, [`LoadOptions`]).
//! - this module: [`Rules`] (all domains of a directory) and [`Rules::lookup`].

mod merge;
pub mod model;
pub mod parse;
mod parse_calendar;
mod parse_concurrency;
pub mod parse_idempotency;
pub mod read;
pub mod reload;
/// Units belong to the limiter; re-exported where the rule format always found them.
pub use crate::limiter::unit;

use crate::keys::CounterBase;
use hashbrown::HashMap;
use model::{Domain, MatchKind, Node};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a rule file (or the rule directory) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The file (or directory) at fault.
    pub file: String,
    /// Where inside the file, e.g. `descriptors[1].rate_limit.unit`; empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.reason)
        }
    }
}

/// Why loading a rule directory failed: the operating system (retry later, the files may be
/// fine) or the files themselves (an invalid change, rejected until the files change).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Listing the directory or reading a file failed (EMFILE, EACCES, EIO, a file removed
    /// mid-swap): not counted as `config_load_error`; the reloader retries at the next poll.
    #[error("{0}")]
    Io(RuleError),
    /// A file is invalid: unparsable, too big, not UTF-8, or not a regular file at read time.
    #[error("{0}")]
    Invalid(RuleError),
}

impl LoadError {
    /// The file, path and reason, whichever kind this is.
    pub fn into_rule_error(self) -> RuleError {
        match self {
            LoadError::Io(e) | LoadError::Invalid(e) => e,
        }
    }

    /// A file's read error, classified.
    pub fn from_read(path: &Path, e: read::ReadError) -> LoadError {
        let err = RuleError {
            file: path.display().to_string(),
            path: String::new(),
            reason: e.to_string(),
        };
        if e.is_io() {
            LoadError::Io(err)
        } else {
            LoadError::Invalid(err)
        }
    }
}

/// Every domain loaded from the rule directory: an immutable snapshot.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Domains by name.
    domains: HashMap<String, Domain>,
    /// The file each domain came from, sorted by file name (for listings).
    files: Vec<(String, String)>,
}

/// The result of matching one request descriptor against the rules.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// No rule file has this domain.
    UnknownDomain,
    /// The descriptor matches no node, or stops above or goes below the configured depth.
    NoMatch,
    /// The node matched by the descriptor's last entry.
    Matched {
        /// The node; its `policy` says what applies.
        node: &'a Node,
        /// `domain_k1_v1_…_kN_vN` with runtime values (patterns under `share_threshold`).
        counter_key: CounterBase,
        /// Entries matched; the rest are the concurrency rule's request attributes.
        matched: usize,
    },
}

/// How a rule directory (or any other source of rule files) becomes one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// `rules_max_file_bytes`: a bigger file is invalid, so memory stays bounded.
    pub max_file_bytes: u64,
    /// `MERGE_DOMAIN_CONFIG`: several files may define one domain; their top-level
    /// descriptors are merged (a composite key defined twice is still an error). Off, a domain
    /// defined twice is an error, as upstream's default.
    pub merge_domains: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            max_file_bytes: read::DEFAULT_MAX_FILE_BYTES,
            merge_domains: false,
        }
    }
}

impl Rules {
    /// Builds a snapshot from parsed files, rejecting a domain defined twice.
    pub fn from_domains(parsed: Vec<(String, Domain)>) -> Result<Rules, RuleError> {
        Rules::from_domains_merged(parsed, false)
    }

    /// Builds a snapshot from parsed files. With `merge`, files sharing a domain have their
    /// top-level descriptors merged (upstream's `MERGE_DOMAIN_CONFIG`): a descriptor whose
    /// composite key (key and value, or key alone for a default) another file of the domain
    /// already defines is an error naming the later file; deeper levels are never merged.
    /// Without `merge`, a domain defined twice is an error.
    pub fn from_domains_merged(
        parsed: Vec<(String, Domain)>,
        merge: bool,
    ) -> Result<Rules, RuleError> {
        let mut rules = Rules::default();
        for (file, domain) in parsed {
            if let Some(existing) = rules.domains.get_mut(&domain.name) {
                if !merge {
                    return Err(RuleError {
                        file,
                        path: "domain".into(),
                        reason: format!("duplicate domain '{}' in config file", domain.name),
                    });
                }
                match (&existing.idempotency, domain.idempotency) {
                    (Some(a), Some(b)) if *a != b => {
                        return Err(RuleError {
                            file,
                            path: "idempotency".into(),
                            reason: format!(
                                "domain '{}' declares another idempotency in an earlier file",
                                domain.name
                            ),
                        })
                    }
                    (None, Some(b)) => existing.idempotency = Some(b),
                    _ => {}
                }
                merge::merge_level(&mut existing.root, domain.root).map_err(|stats_key| RuleError {
                    file: file.clone(),
                    path: "descriptors".into(),
                    reason: format!(
                        "duplicate descriptor composite key '{stats_key}' (merging domain '{}' from several files)",
                        domain.name
                    ),
                })?;
                rules.files.push((file, domain.name));
                continue;
            }
            rules.files.push((file, domain.name.clone()));
            rules.domains.insert(domain.name.clone(), domain);
        }
        Ok(rules)
    }

    /// Loads every rule file in `dir`: one domain per file. Names starting with `.` (including
    /// a ConfigMap's `..data` and `..2024_…` entries) and directories are skipped; symlinks are
    /// followed, so a ConfigMap mount works as is. Files are capped at the default
    /// [`read::DEFAULT_MAX_FILE_BYTES`]; blocking (see [`Rules::load_dir_capped`]).
    pub fn load_dir(dir: &Path) -> Result<Rules, RuleError> {
        Rules::load_dir_capped(dir, read::DEFAULT_MAX_FILE_BYTES)
            .map_err(LoadError::into_rule_error)
    }

    /// [`Rules::load_dir`] with a per-file size cap, telling I/O failures from invalid files.
    /// FIFOs, sockets and devices are skipped with a warning and never opened for a blocking
    /// read; a file bigger than `max_file_bytes` is invalid. Blocking: run it on the blocking
    /// pool.
    pub fn load_dir_capped(dir: &Path, max_file_bytes: u64) -> Result<Rules, LoadError> {
        Rules::load_dir_with(
            dir,
            LoadOptions {
                max_file_bytes,
                merge_domains: false,
            },
        )
    }

    /// [`Rules::load_dir_capped`] with every [`LoadOptions`] (domain merging). Blocking.
    pub fn load_dir_with(dir: &Path, options: LoadOptions) -> Result<Rules, LoadError> {
        let mut parsed = Vec::new();
        for path in rule_files(dir)? {
            let file = path.display().to_string();
            let text = read::read_capped(&path, options.max_file_bytes)
                .map_err(|e| LoadError::from_read(&path, e))?;
            parsed.push((
                file.clone(),
                parse::parse_domain(&file, &text).map_err(LoadError::Invalid)?,
            ));
        }
        Rules::from_domains_merged(parsed, options.merge_domains).map_err(LoadError::Invalid)
    }

    /// The domain named `name`.
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.get(name)
    }

    /// One line per limit, upstream's `/rlconfig` format:
    /// `<stats key>: unit=<UNIT> requests_per_unit=<n>, shadow_mode: <b>, quota_mode: <b>`,
    /// plus `, algorithm: <a>` for limits that do not count with the fixed window,
    /// `, calendar: true` (and `, utc_offset: ±HH:MM` when not UTC) for calendar windows (and a
    /// `concurrency …` line per concurrency rule); an unlimited rule prints as upstream's,
    /// `unit=UNKNOWN requests_per_unit=0`; sorted.
    pub fn describe(&self) -> Vec<String> {
        fn walk(level: &model::Level, out: &mut Vec<String>) {
            for node in level.nodes() {
                let flags = format!(
                    "shadow_mode: {}, quota_mode: {}",
                    node.shadow_mode, node.quota_mode
                );
                if let Some(c) = &node.concurrency {
                    out.push(format!("{}: {}, {flags}", node.stats_key, c.describe()));
                }
                match &node.policy {
                    model::Policy::None => {}
                    // upstream keeps an unlimited limit with unit UNKNOWN and prints it so.
                    model::Policy::Unlimited { .. } => out.push(format!(
                        "{}: unit=UNKNOWN requests_per_unit=0, {flags}",
                        node.stats_key
                    )),
                    model::Policy::Limited(limits) => {
                        for l in limits {
                            let mut line = format!(
                                "{}: unit={} requests_per_unit={}, {flags}",
                                node.stats_key, l.unit, l.requests_per_unit
                            );
                            match l.algorithm {
                                model::Algorithm::FixedWindow => {}
                                model::Algorithm::CalendarWindow(c) => {
                                    line.push_str(", calendar: true");
                                    if c.offset_minutes() != 0 {
                                        line.push_str(&format!(", utc_offset: {c}"));
                                    }
                                }
                                a => line.push_str(&format!(", algorithm: {a}")),
                            }
                            out.push(line);
                        }
                    }
                }
                walk(&node.children, out);
            }
        }
        let mut out = Vec::new();
        for d in self.domains.values() {
            walk(&d.root, &mut out);
        }
        out.sort();
        out
    }

    /// The node whose stats key (`domain.key_value.key…`, as `/rlconfig` prints it) is `key`.
    pub fn node_by_stats_key(&self, key: &str) -> Option<&Node> {
        fn find<'a>(level: &'a model::Level, key: &str) -> Option<&'a Node> {
            level.nodes().find_map(|n| {
                if n.stats_key == key {
                    Some(n)
                } else if key.starts_with(n.stats_key.as_str()) {
                    find(&n.children, key)
                } else {
                    None
                }
            })
        }
        // Domain names may hold dots themselves: try every domain the key starts with.
        self.domains
            .values()
            .filter(|d| key.len() > d.name.len() && key.starts_with(d.name.as_str()))
            .filter(|d| key.as_bytes().get(d.name.len()) == Some(&b'.'))
            .find_map(|d| find(&d.root, key))
    }

    /// `(file, domain)` pairs in file-name order.
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    /// Matches one descriptor (its `(key, value)` entries, in order) in `domain`.
    ///
    /// Each entry descends one level: exact value, then wildcards in file order, then the
    /// default child. Only the node reached by the last entry can carry a limit — except that
    /// entries after a node with `concurrency:` whose keys that rule names as request
    /// attributes (`fair_by`, `weight_by`, `lease_id`) end the match there: they describe the
    /// request, and are neither matched nor part of the counter key.
    pub fn lookup<'a, 'e, I>(&'a self, domain: &str, entries: I) -> Lookup<'a>
    where
        I: IntoIterator<Item = (&'e str, &'e str)>,
    {
        let Some(d) = self.domains.get(domain) else {
            return Lookup::UnknownDomain;
        };
        let mut level = &d.root;
        let mut node: Option<&Node> = None;
        let mut counter_key = CounterBase::new(domain);
        let mut matched = 0usize;
        let mut entries = entries.into_iter();
        while let Some((key, value)) = entries.next() {
            if let Some(c) = node.and_then(|n| n.concurrency.as_deref()) {
                if c.is_attribute(key) {
                    // The rest must be attributes too, each named once.
                    let mut seen = [false; 3];
                    let mut mark = |k: &str| {
                        let at = [&c.fair_by, &c.weight_by, &c.lease_id]
                            .iter()
                            .position(|a| a.as_deref() == Some(k));
                        match at {
                            Some(i) if !seen[i] => {
                                seen[i] = true;
                                true
                            }
                            _ => false,
                        }
                    };
                    if !mark(key) || !entries.all(|(k, _)| mark(k)) {
                        return Lookup::NoMatch;
                    }
                    break;
                }
            }
            let Some((child, kind)) = level.child(key, value) else {
                return Lookup::NoMatch;
            };
            let counted_value = match (kind, child.share_threshold, &child.value) {
                (MatchKind::Wildcard, true, Some(pattern)) => pattern.as_str(),
                _ => value,
            };
            counter_key.push_entry(key, counted_value);
            level = &child.children;
            node = Some(child);
            matched += 1;
        }
        match node {
            Some(node) => Lookup::Matched {
                node,
                counter_key,
                matched,
            },
            None => Lookup::NoMatch,
        }
    }
}

/// The files of a rule directory that hold rules, sorted by name. Only metadata is read here.
fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let dir_err = |reason: String| {
        LoadError::Io(RuleError {
            file: dir.display().to_string(),
            path: String::new(),
            reason,
        })
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| dir_err(format!("cannot read rule directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| dir_err(format!("cannot list rule directory: {e}")))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symlinks: a ConfigMap's `config.yaml -> ..data/config.yaml`.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => files.push(path),
            Ok(meta) if meta.is_dir() => {}
            // A FIFO would block a read forever, `/dev/zero` would never end: never read them.
            Ok(meta) => tracing::warn!(
                file = %path.display(),
                kind = read::kind(meta.file_type()),
                "skipping a rule directory entry that is not a regular file"
            ),
            // A dangling symlink mid-swap: skip it; the next reload sees the new target.
            Err(_) => {}
        }
    }
    files.sort();
    Ok(files)
}
