//! Settings, declared once in a table and read from, lowest to highest precedence: defaults →
//! envoyproxy/ratelimit's environment variables → settings file (`--config`, TOML) →
//! `SLUICE_*` environment → flags. Validated once at start. The environment is passed in as a
//! map, so tests never touch the process's.
//!
//! - [`table`]: the table, which generates [`Settings`] and [`table::TABLE`].
//! - [`value`]: one parser per kind of value (durations, addresses, paths, choices).
//! - [`cli`]: the command line, generated from the table.
//! - [`upstream`]: upstream's variables — honoured, ignored or refused.
//! - [`docs`]: the Markdown tables in `docs/settings.md` and README, generated (a test
//!   compares them).

pub mod cli;
pub mod docs;
pub mod table;
pub mod upstream;
pub mod value;

pub use crate::store::fallback::FailurePolicy;
pub use table::{Settings, Spec, TABLE};

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use value::Parse;

/// Why the command line or the settings were rejected (exit status 64).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Bad flags (clap's message, first line).
    #[error("{0}")]
    Flags(String),
    /// A setting's value or the settings file is wrong.
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// Which counter store to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Counters in this process (one replica, no set-up).
    Memory,
    /// Counters in Redis (`redis_nodes`, sharded by consistent hashing).
    Redis,
    /// Counters in a Redis Cluster (`redis_nodes` are seed nodes).
    RedisCluster,
    /// Counters in a Sentinel-managed primary (`redis_nodes` are the sentinels).
    RedisSentinel,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where rules come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// The rule directory, polled for changes.
    File,
    /// An xDS server (ADS, state of the world), as Envoy Gateway serves them.
    GrpcXdsSotw,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run the service.
    Serve(Box<Settings>),
    /// Validate a rule directory and exit.
    CheckConfig(PathBuf),
    /// Print the hash of an API key (from the argument, or stdin when `None`) and exit.
    HashKey(Option<String>),
    /// Print this text (help, version) and exit successfully.
    Print(String),
}

/// Where a setting's value came from, for error messages.
#[derive(Debug, Clone)]
enum Source {
    Default,
    Upstream(String),
    File(PathBuf),
    Env(String),
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Upstream(var) => write!(f, "from {var}"),
            Source::File(p) => write!(f, "from {}", p.display()),
            Source::Env(var) => write!(f, "from {var}"),
            Source::Flag(flag) => write!(f, "from --{flag}"),
        }
    }
}

/// The winning text of every setting, with its source.
pub struct Values {
    /// By setting name.
    map: HashMap<&'static str, (String, Source)>,
}

impl Values {
    /// Parses setting `name` with parser `P`; the error names the setting and the source.
    fn parse<P: Parse>(&self, name: &'static str) -> Result<P::Out, SettingsError> {
        let (text, source) = self
            .map
            .get(name)
            .ok_or_else(|| SettingsError::Invalid(format!("{name}: no value")))?;
        P::parse(text).map_err(|reason| {
            // Values that may hold credentials (URLs with passwords, bearer headers) are not
            // quoted: errors reach logs.
            let shown = if SECRET.contains(&name) {
                "(value hidden)".to_owned()
            } else {
                format!("'{}'", shorten(text))
            };
            SettingsError::Invalid(format!("{name}: {shown} ({source}) {reason}"))
        })
    }
}

/// Settings whose values may carry credentials: never quoted in errors.
const SECRET: &[&str] = &["redis_nodes", "xds_headers", "xds_node_metadata"];

/// A URL with any `user:password@` replaced by `***@`, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A value as quoted in an error: at most 80 characters.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 80 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(80).collect::<String>())
    }
}

/// Parses the command line `args` (including the program name) with environment `env`.
pub fn parse<I, T>(args: I, env: &HashMap<String, String>) -> Result<Invocation, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // Started as upstream's binary (`/bin/ratelimit`, Envoy Gateway's command)?
    let as_ratelimit = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "ratelimit");
    let matches = match cli::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Ok(Invocation::Print(e.render().to_string()))
                }
                _ => {
                    let text = e.render().to_string();
                    let first = text.lines().next().unwrap_or("bad arguments");
                    Err(SettingsError::Flags(
                        first.trim_start_matches("error: ").to_owned(),
                    ))
                }
            };
        }
    };
    match cli::interpret(&matches) {
        cli::Parsed::CheckConfig(dir) => Ok(Invocation::CheckConfig(dir)),
        cli::Parsed::HashKey(key) => Ok(Invocation::HashKey(key)),
        cli::Parsed::Serve { flags, file } => {
            load(flags, file, env, as_ratelimit).map(|s| Invocation::Serve(Box::new(s)))
        }
    }
}

/// Resolves every setting from its sources, then validates.
fn load(
    flags: Vec<(&'static str, String)>,
    file: Option<PathBuf>,
    env: &HashMap<String, String>,
    as_ratelimit: bool,
) -> Result<Settings, SettingsError> {
    let mut map: HashMap<&'static str, (String, Source)> = TABLE
        .iter()
        .map(|s| (s.name, (s.default.to_owned(), Source::Default)))
        .collect();
    let derived = upstream::derive(env, as_ratelimit)?;
    for (name, value, from) in derived.values {
        map.insert(name, (value, Source::Upstream(from)));
    }
    if let Some(path) = file.or_else(|| env.get("SLUICE_CONFIG").map(PathBuf::from)) {
        for (name, value) in read_file(&path)? {
            map.insert(name, (value, Source::File(path.clone())));
        }
    }
    // Only our own variables: Kubernetes injects SLUICE_PORT & co. for a Service named sluice.
    for spec in TABLE {
        let var = spec.env();
        if let Some(v) = env.get(&var) {
            map.insert(spec.name, (v.clone(), Source::Env(var)));
        }
    }
    for (name, value) in flags {
        let flag = TABLE
            .iter()
            .find(|s| s.name == name)
            .map_or(name, |s| s.flag);
        map.insert(name, (value, Source::Flag(flag)));
    }
    let mut settings = Settings::from_values(&Values { map })?;
    settings.upstream_notes = derived.notes;
    settings.validate()?;
    Ok(settings)
}

/// The settings file: a TOML table whose keys are setting names (unknown keys rejected, at
/// most 1 MiB).
fn read_file(path: &Path) -> Result<Vec<(&'static str, String)>, SettingsError> {
    let invalid = |reason: String| {
        SettingsError::Invalid(format!("settings file {}: {reason}", path.display()))
    };
    if !path.is_file() {
        return Err(invalid("does not exist or is not a regular file".into()));
    }
    let text =
        crate::rules::read::read_capped(path, 1 << 20).map_err(|e| invalid(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| invalid(e.message().to_owned()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let Some(spec) = TABLE.iter().find(|s| s.name == key) else {
            return Err(invalid(format!("unknown setting '{key}'")));
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(invalid(format!(
                    "{key}: a {} is not a setting value",
                    other.type_str()
                )))
            }
        };
        out.push((spec.name, text));
    }
    Ok(out)
}

impl Settings {
    /// The Redis URLs, trimmed, empty entries dropped.
    pub fn redis_node_list(&self) -> Vec<String> {
        self.redis_nodes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The admin API's bearer token, read from `admin_token_file` (surrounding whitespace
    /// trimmed); `None` when no file is set.
    pub fn admin_token(&self) -> Result<Option<String>, SettingsError> {
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let text = crate::rules::read::read_capped(path, 64 << 10).map_err(|e| {
            SettingsError::Invalid(format!("admin_token_file {}: {e}", path.display()))
        })?;
        let token = text.trim();
        if token.len() < 16 {
            return Err(SettingsError::Invalid(format!(
                "admin_token_file {}: the token must be at least 16 characters",
                path.display()
            )));
        }
        Ok(Some(token.to_owned()))
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |m: &str| Err(SettingsError::Invalid(m.to_owned()));
        if !(0.0..=1.0).contains(&self.near_limit_ratio) {
            return invalid("near_limit_ratio must be between 0 and 1");
        }
        if self.otlp_endpoint.is_some() && !cfg!(feature = "otlp") {
            return invalid("otlp_endpoint is set but this sluice was built without the otlp feature (cargo build --features otlp)");
        }
        if self.authz_keys.is_some() != self.authz_config.is_some() {
            return invalid(
                "authz_keys and authz_config go together: set both to enable ext_authz",
            );
        }
        if self.breaker_max_open_ms < self.breaker_open_ms {
            return invalid("breaker_max_open_ms must not be below breaker_open_ms");
        }
        if self.xds_backoff_max < self.xds_backoff_initial {
            return invalid("xds_backoff_max must not be below xds_backoff_initial");
        }
        if self.grpc_tls && (self.grpc_tls_cert.is_none() || self.grpc_tls_key.is_none()) {
            return invalid("grpc_tls needs grpc_tls_cert and grpc_tls_key");
        }
        if self.xds_client_tls_cert.is_some() != self.xds_client_tls_key.is_some() {
            return invalid("xds_client_tls_cert and xds_client_tls_key go together");
        }
        if self.redis_tls_client_cert.is_some() != self.redis_tls_client_key.is_some() {
            return invalid("redis_tls_client_cert and redis_tls_client_key go together");
        }
        if self.config_type == ConfigType::GrpcXdsSotw && self.xds_server_url.trim().is_empty() {
            return invalid("xds_server_url: config_type grpc_xds_sotw needs an xDS server");
        }
        if !self.prometheus_path.starts_with('/') || self.prometheus_path.len() > 256 {
            return invalid("prometheus_path must start with / (at most 256 bytes)");
        }
        for (name, value) in [
            ("response_header_limit", &self.response_header_limit),
            ("response_header_remaining", &self.response_header_remaining),
            ("response_header_reset", &self.response_header_reset),
        ] {
            if value.is_empty()
                || value.len() > 128
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return Err(SettingsError::Invalid(format!(
                    "{name}: '{}' is not a header name",
                    shorten(value)
                )));
            }
        }
        for (name, zero) in [
            ("fallback_replicas", self.fallback_replicas == 0),
            ("breaker_failures", self.breaker_failures == 0),
            ("breaker_open_ms", self.breaker_open_ms.is_zero()),
            ("rules_poll_ms", self.rules_poll_ms.is_zero()),
            ("overrides_poll_ms", self.overrides_poll_ms.is_zero()),
            ("redis_timeout", self.redis_timeout.is_zero()),
            ("memory_max_keys", self.memory_max_keys == 0),
            ("memory_sweep_secs", self.memory_sweep_secs.is_zero()),
            ("max_descriptors", self.max_descriptors == 0),
            ("max_entries", self.max_entries == 0),
            ("max_value_bytes", self.max_value_bytes == 0),
            ("max_request_bytes", self.max_request_bytes == 0),
            ("rules_max_file_bytes", self.rules_max_file_bytes == 0),
            ("idle_timeout_ms", self.idle_timeout_ms.is_zero()),
            (
                "header_read_timeout_ms",
                self.header_read_timeout_ms.is_zero(),
            ),
            ("keepalive_ms", self.keepalive_ms.is_zero()),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms.is_zero()),
            ("request_timeout_ms", self.request_timeout_ms.is_zero()),
            ("max_connections", self.max_connections == 0),
            ("xds_backoff_initial", self.xds_backoff_initial.is_zero()),
            ("xds_max_message_bytes", self.xds_max_message_bytes == 0),
        ] {
            if zero {
                return Err(SettingsError::Invalid(format!("{name} must be above zero")));
            }
        }
        if self.backend != Backend::Memory {
            let nodes = self.redis_node_list();
            if nodes.is_empty() {
                return invalid("redis_nodes: a Redis backend needs at least one Redis URL");
            }
            for url in nodes {
                if let Err(e) = redis::Client::open(url.as_str()) {
                    return Err(SettingsError::Invalid(format!(
                        "redis_nodes: '{}' is not a Redis URL: {e}",
                        shorten(&redact_url(&url))
                    )));
                }
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(SettingsError::Invalid(format!(
                "log_level '{}' is not a valid filter",
                shorten(&self.log_level)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
