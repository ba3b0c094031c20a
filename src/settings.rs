//! Settings: defaults → settings file (`--config`) → `SLUICE_*` environment → flags, validated
//! once at start. The environment is passed in as a map, so tests never touch the process's.

use crate::service::response::HeaderMode;
pub use crate::store::fallback::FailurePolicy;
use clap::{Parser, Subcommand};
use serde::Deserialize;
use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Counters in this process (one replica, no set-up).
    Memory,
    /// Counters in Redis (`redis_nodes`, sharded by consistent hashing).
    Redis,
    /// Counters in a Redis Cluster (`redis_nodes` are seed nodes).
    #[serde(rename = "redis_cluster")]
    RedisCluster,
    /// Counters in a Sentinel-managed primary (`redis_nodes` are the sentinels).
    #[serde(rename = "redis_sentinel")]
    RedisSentinel,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `sluice serve` needs, typed and validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Directory of rule files (one domain per file).
    pub rules_dir: PathBuf,
    /// gRPC listener (ShouldRateLimit, health, reflection).
    pub grpc_addr: SocketAddr,
    /// HTTP listener (admin endpoints, added by later releases).
    pub http_addr: SocketAddr,
    /// Counter store.
    pub backend: Backend,
    /// Rate-limit headers added to responses.
    pub response_headers: HeaderMode,
    /// Global shadow mode: never answer OVER_LIMIT overall.
    pub shadow_mode: bool,
    /// Cap on live in-memory counters.
    pub memory_max_keys: usize,
    /// Seconds between sweeps of expired in-memory counters.
    pub memory_sweep_secs: u64,
    /// Milliseconds between reporting NOT_SERVING and closing the listener on SIGTERM, so
    /// load balancers stop sending first.
    pub shutdown_delay_ms: u64,
    /// Log filter (`info`, `sluice=debug`, …).
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Comma-separated Redis URLs, one per shard (`backend = redis`).
    pub redis_nodes: String,
    /// Deadline of one Redis call: `10ms`, `0.5s` or a number of milliseconds.
    pub redis_timeout: String,
    /// Prepended to every Redis key.
    pub redis_key_prefix: String,
    /// When any descriptor of a request is over its limit, charge none of its counters.
    pub atomic_admission: bool,
    /// The primary's name for `backend = redis_sentinel`.
    pub redis_sentinel_master: String,
    /// PEM file of CA certificates trusted for `rediss://` (empty: the system roots).
    pub redis_tls_ca_file: String,
    /// What answers for keys of an unavailable Redis shard: local, allow or deny.
    pub fallback: FailurePolicy,
    /// Replicas sharing each limit while deciding locally.
    pub fallback_replicas: u32,
    /// Consecutive failures that open a shard's breaker.
    pub breaker_failures: u32,
    /// First wait (ms) before probing an open shard; doubles per failed probe.
    pub breaker_open_ms: u64,
    /// Longest wait (ms) between probes.
    pub breaker_max_open_ms: u64,
    /// How often (ms) the rule directory is checked for changes.
    pub rules_poll_ms: u64,
    /// `near_limit` counts hits above `floor(limit × ratio)`.
    pub near_limit_ratio: f64,
    /// File holding the admin API's bearer token (empty: no token; the admin API then only
    /// works when the HTTP port listens on loopback).
    pub admin_token_file: String,
    /// How often (ms) shared runtime overrides are re-read from Redis.
    pub overrides_poll_ms: u64,
    /// ext_authz keys file (empty: ext_authz off).
    pub authz_keys: String,
    /// ext_authz configuration file (templates, sources, tiers); required with `authz_keys`.
    pub authz_config: String,
    /// Most descriptors one request may carry (more: INVALID_ARGUMENT).
    pub max_descriptors: usize,
    /// Most entries one descriptor may carry.
    pub max_entries: usize,
    /// Longest descriptor entry key or value, in bytes.
    pub max_value_bytes: usize,
    /// Largest encoded request (gRPC message, `/json` body), in bytes.
    pub max_request_bytes: usize,
    /// Largest rule or ext_authz file read, in bytes (a bigger one is an invalid change).
    pub rules_max_file_bytes: u64,
    /// A connection with no request in flight for this long is closed (ms).
    pub idle_timeout_ms: u64,
    /// A new connection must send its first request (HTTP/1 headers, HTTP/2 preface) within this (ms).
    pub header_read_timeout_ms: u64,
    /// HTTP/2 PING interval on both ports (ms); a peer that does not answer within `keepalive_timeout_ms` is dropped.
    pub keepalive_ms: u64,
    /// How long a keepalive PING may go unanswered (ms).
    pub keepalive_timeout_ms: u64,
    /// Longest a request may take from its headers to its answer (ms), body included: a
    /// client that stalls mid-request cannot hold its stream (and what it buffered) for ever.
    pub request_timeout_ms: u64,
    /// Most connections open at once on each port; at the cap a port stops accepting until
    /// one closes (clients wait in the kernel's backlog).
    pub max_connections: usize,
    /// OTLP/gRPC collector for tracing spans, e.g. `http://127.0.0.1:4317` (empty: off; needs
    /// the `otlp` cargo feature).
    pub otlp_endpoint: String,
}

/// Setting names, as keys of the settings file and (upper-cased, `SLUICE_`-prefixed) env vars.
pub const KEYS: &[&str] = &[
    "rules_dir",
    "grpc_addr",
    "http_addr",
    "backend",
    "response_headers",
    "shadow_mode",
    "memory_max_keys",
    "memory_sweep_secs",
    "shutdown_delay_ms",
    "log_level",
    "log_format",
    "redis_nodes",
    "redis_timeout",
    "redis_key_prefix",
    "atomic_admission",
    "redis_sentinel_master",
    "redis_tls_ca_file",
    "fallback",
    "fallback_replicas",
    "breaker_failures",
    "breaker_open_ms",
    "breaker_max_open_ms",
    "rules_poll_ms",
    "near_limit_ratio",
    "admin_token_file",
    "overrides_poll_ms",
    "otlp_endpoint",
    "authz_keys",
    "authz_config",
    "max_descriptors",
    "max_entries",
    "max_value_bytes",
    "max_request_bytes",
    "rules_max_file_bytes",
    "idle_timeout_ms",
    "header_read_timeout_ms",
    "keepalive_ms",
    "keepalive_timeout_ms",
    "request_timeout_ms",
    "max_connections",
];

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

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "Rate-limit service for Envoy")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve(Box<ServeArgs>),
    /// Validate the rule files of a directory; exit non-zero with the errors.
    CheckConfig {
        /// The rule directory.
        dir: PathBuf,
    },
    /// Print the SHA-256 of an API key for the authz keys file (reads stdin without KEY).
    HashKey {
        /// The key (prefer stdin: arguments end up in shell history).
        key: Option<String>,
    },
}

#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// Rule directory [env: SLUICE_RULES_DIR] [default: examples/rules]
    #[arg(long = "rules", value_name = "DIR")]
    rules_dir: Option<String>,
    /// gRPC address [env: SLUICE_GRPC_ADDR] [default: 0.0.0.0:8081]
    #[arg(long, value_name = "ADDR")]
    grpc_addr: Option<String>,
    /// HTTP address [env: SLUICE_HTTP_ADDR] [default: 0.0.0.0:8080]
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<String>,
    /// Counter store: memory | redis | redis_cluster | redis_sentinel [env: SLUICE_BACKEND]
    #[arg(long)]
    backend: Option<String>,
    /// Settings file (TOML) holding any of these settings [env: SLUICE_CONFIG]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// off | ratelimit | draft10 | all [env: SLUICE_RESPONSE_HEADERS]
    #[arg(long)]
    response_headers: Option<String>,
    /// Never answer OVER_LIMIT overall [env: SLUICE_SHADOW_MODE]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    shadow_mode: Option<bool>,
    /// Cap on live in-memory counters [env: SLUICE_MEMORY_MAX_KEYS]
    #[arg(long)]
    memory_max_keys: Option<u64>,
    /// How often expired in-memory counters are reclaimed, s [env: SLUICE_MEMORY_SWEEP_SECS] [default: 5]
    #[arg(long)]
    memory_sweep_secs: Option<u64>,
    /// Delay between NOT_SERVING and closing on SIGTERM, ms [env: SLUICE_SHUTDOWN_DELAY_MS]
    #[arg(long)]
    shutdown_delay_ms: Option<u64>,
    /// Log filter, e.g. info or sluice=debug [env: SLUICE_LOG_LEVEL]
    #[arg(long)]
    log_level: Option<String>,
    /// text | json [env: SLUICE_LOG_FORMAT]
    #[arg(long)]
    log_format: Option<String>,
    /// Redis URLs, comma-separated, one per shard [env: SLUICE_REDIS_NODES]
    #[arg(long, value_name = "URLS")]
    redis_nodes: Option<String>,
    /// Deadline per Redis call, e.g. 10ms [env: SLUICE_REDIS_TIMEOUT] [default: 10ms]
    #[arg(long, value_name = "DURATION")]
    redis_timeout: Option<String>,
    /// Prefix of every Redis key [env: SLUICE_REDIS_KEY_PREFIX] [default: none]
    #[arg(long, value_name = "PREFIX")]
    redis_key_prefix: Option<String>,
    /// Charge none of a request's counters when any is over [env: SLUICE_ATOMIC_ADMISSION]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    atomic_admission: Option<bool>,
    /// Primary name for redis_sentinel [env: SLUICE_REDIS_SENTINEL_MASTER] [default: mymaster]
    #[arg(long, value_name = "NAME")]
    redis_sentinel_master: Option<String>,
    /// CA certificates (PEM) for rediss:// [env: SLUICE_REDIS_TLS_CA_FILE] [default: system]
    #[arg(long, value_name = "FILE")]
    redis_tls_ca_file: Option<String>,
    /// local | allow | deny, for keys of an unavailable shard [env: SLUICE_FALLBACK]
    #[arg(long)]
    fallback: Option<String>,
    /// Replicas sharing each limit in local fallback [env: SLUICE_FALLBACK_REPLICAS] [default: 1]
    #[arg(long)]
    fallback_replicas: Option<u32>,
    /// Consecutive failures opening a shard's breaker [env: SLUICE_BREAKER_FAILURES] [default: 3]
    #[arg(long)]
    breaker_failures: Option<u32>,
    /// First probe wait of an open shard, ms [env: SLUICE_BREAKER_OPEN_MS] [default: 500]
    #[arg(long)]
    breaker_open_ms: Option<u64>,
    /// Longest probe wait, ms [env: SLUICE_BREAKER_MAX_OPEN_MS] [default: 5000]
    #[arg(long)]
    breaker_max_open_ms: Option<u64>,
    /// How often the rule directory is checked for changes, ms [env: SLUICE_RULES_POLL_MS] [default: 1000]
    #[arg(long)]
    rules_poll_ms: Option<u64>,
    /// near_limit counts hits above limit × ratio [env: SLUICE_NEAR_LIMIT_RATIO] [default: 0.8]
    #[arg(long)]
    near_limit_ratio: Option<f64>,
    /// Bearer token file for the admin API [env: SLUICE_ADMIN_TOKEN_FILE] [default: none]
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<String>,
    /// How often shared overrides are re-read from Redis, ms [env: SLUICE_OVERRIDES_POLL_MS] [default: 500]
    #[arg(long)]
    overrides_poll_ms: Option<u64>,
    /// OTLP/gRPC collector for spans (needs the otlp feature) [env: SLUICE_OTLP_ENDPOINT]
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Most descriptors per request [env: SLUICE_MAX_DESCRIPTORS] [default: 128]
    #[arg(long)]
    max_descriptors: Option<u64>,
    /// Most entries per descriptor [env: SLUICE_MAX_ENTRIES] [default: 32]
    #[arg(long)]
    max_entries: Option<u64>,
    /// Longest entry key or value, bytes [env: SLUICE_MAX_VALUE_BYTES] [default: 4096]
    #[arg(long)]
    max_value_bytes: Option<u64>,
    /// Largest request, bytes [env: SLUICE_MAX_REQUEST_BYTES] [default: 1048576]
    #[arg(long)]
    max_request_bytes: Option<u64>,
    /// Largest rule/authz file, bytes [env: SLUICE_RULES_MAX_FILE_BYTES] [default: 8388608]
    #[arg(long)]
    rules_max_file_bytes: Option<u64>,
    /// Close idle connections after, ms [env: SLUICE_IDLE_TIMEOUT_MS] [default: 300000]
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// First request on a connection within, ms [env: SLUICE_HEADER_READ_TIMEOUT_MS] [default: 10000]
    #[arg(long)]
    header_read_timeout_ms: Option<u64>,
    /// HTTP/2 keepalive PING interval, ms [env: SLUICE_KEEPALIVE_MS] [default: 30000]
    #[arg(long)]
    keepalive_ms: Option<u64>,
    /// Keepalive PING answer within, ms [env: SLUICE_KEEPALIVE_TIMEOUT_MS] [default: 10000]
    #[arg(long)]
    keepalive_timeout_ms: Option<u64>,
    /// Longest request, body included, ms [env: SLUICE_REQUEST_TIMEOUT_MS] [default: 30000]
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Most open connections per port [env: SLUICE_MAX_CONNECTIONS] [default: 10000]
    #[arg(long)]
    max_connections: Option<u64>,
    /// ext_authz API keys file; enables Authorization/Check [env: SLUICE_AUTHZ_KEYS]
    #[arg(long, value_name = "FILE")]
    authz_keys: Option<String>,
    /// ext_authz configuration file [env: SLUICE_AUTHZ_CONFIG]
    #[arg(long, value_name = "FILE")]
    authz_config: Option<String>,
}

/// Parses the command line `args` (including the program name) with environment `env`.
pub fn parse<I, T>(args: I, env: &HashMap<String, String>) -> Result<Invocation, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
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
    let args = match cli.command {
        Some(Command::CheckConfig { dir }) => return Ok(Invocation::CheckConfig(dir)),
        Some(Command::HashKey { key }) => return Ok(Invocation::HashKey(key)),
        Some(Command::Serve(args)) => *args,
        None => cli.serve,
    };
    load(&args, env).map(|s| Invocation::Serve(Box::new(s)))
}

fn load(args: &ServeArgs, env: &HashMap<String, String>) -> Result<Settings, SettingsError> {
    let invalid = |e: config::ConfigError| SettingsError::Invalid(e.to_string());
    let mut b = config::Config::builder()
        .set_default("rules_dir", "examples/rules")
        .and_then(|b| b.set_default("grpc_addr", "0.0.0.0:8081"))
        .and_then(|b| b.set_default("http_addr", "0.0.0.0:8080"))
        .and_then(|b| b.set_default("backend", "memory"))
        .and_then(|b| b.set_default("response_headers", "off"))
        .and_then(|b| b.set_default("shadow_mode", false))
        .and_then(|b| b.set_default("memory_max_keys", 10_000_000u64))
        .and_then(|b| b.set_default("memory_sweep_secs", 5u64))
        .and_then(|b| b.set_default("shutdown_delay_ms", 0u64))
        .and_then(|b| b.set_default("log_level", "info"))
        .and_then(|b| b.set_default("log_format", "text"))
        .and_then(|b| b.set_default("redis_nodes", ""))
        .and_then(|b| b.set_default("redis_timeout", "10ms"))
        .and_then(|b| b.set_default("redis_key_prefix", ""))
        .and_then(|b| b.set_default("atomic_admission", false))
        .and_then(|b| b.set_default("redis_sentinel_master", "mymaster"))
        .and_then(|b| b.set_default("redis_tls_ca_file", ""))
        .and_then(|b| b.set_default("fallback", "local"))
        .and_then(|b| b.set_default("fallback_replicas", 1u64))
        .and_then(|b| b.set_default("breaker_failures", 3u64))
        .and_then(|b| b.set_default("breaker_open_ms", 500u64))
        .and_then(|b| b.set_default("breaker_max_open_ms", 5000u64))
        .and_then(|b| b.set_default("rules_poll_ms", 1000u64))
        .and_then(|b| b.set_default("near_limit_ratio", 0.8))
        .and_then(|b| b.set_default("admin_token_file", ""))
        .and_then(|b| b.set_default("overrides_poll_ms", 500u64))
        .and_then(|b| b.set_default("otlp_endpoint", ""))
        .and_then(|b| b.set_default("authz_keys", ""))
        .and_then(|b| b.set_default("authz_config", ""))
        .and_then(|b| b.set_default("max_descriptors", 128u64))
        .and_then(|b| b.set_default("max_entries", 32u64))
        .and_then(|b| b.set_default("max_value_bytes", 4096u64))
        .and_then(|b| b.set_default("max_request_bytes", 1048576u64))
        .and_then(|b| b.set_default("rules_max_file_bytes", 8388608u64))
        .and_then(|b| b.set_default("idle_timeout_ms", 300000u64))
        .and_then(|b| b.set_default("header_read_timeout_ms", 10000u64))
        .and_then(|b| b.set_default("keepalive_ms", 30000u64))
        .and_then(|b| b.set_default("keepalive_timeout_ms", 10000u64))
        .and_then(|b| b.set_default("request_timeout_ms", 30000u64))
        .and_then(|b| b.set_default("max_connections", 10000u64))
        .map_err(invalid)?;
    let file = args
        .config
        .clone()
        .or_else(|| env.get("SLUICE_CONFIG").map(PathBuf::from));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(SettingsError::Invalid(format!(
                "settings file {} does not exist",
                path.display()
            )));
        }
        b = b.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    // Only our own variables: Kubernetes injects SLUICE_PORT & co. for a Service named sluice.
    let ours: config::Map<String, String> = KEYS
        .iter()
        .filter_map(|k| {
            let var = format!("SLUICE_{}", k.to_uppercase());
            env.get(&var).map(|v| (var, v.clone()))
        })
        .collect();
    b = b.add_source(
        config::Environment::with_prefix("SLUICE")
            .prefix_separator("_")
            .try_parsing(true)
            .source(Some(ours)),
    );
    // A slice, so adding a flag never means recounting an array length.
    let overrides: &[(&str, Option<config::Value>)] = &[
        ("rules_dir", args.rules_dir.clone().map(Into::into)),
        ("grpc_addr", args.grpc_addr.clone().map(Into::into)),
        ("http_addr", args.http_addr.clone().map(Into::into)),
        ("backend", args.backend.clone().map(Into::into)),
        (
            "response_headers",
            args.response_headers.clone().map(Into::into),
        ),
        ("shadow_mode", args.shadow_mode.map(Into::into)),
        ("memory_max_keys", args.memory_max_keys.map(Into::into)),
        ("memory_sweep_secs", args.memory_sweep_secs.map(Into::into)),
        ("shutdown_delay_ms", args.shutdown_delay_ms.map(Into::into)),
        ("log_level", args.log_level.clone().map(Into::into)),
        ("log_format", args.log_format.clone().map(Into::into)),
        ("redis_nodes", args.redis_nodes.clone().map(Into::into)),
        ("redis_timeout", args.redis_timeout.clone().map(Into::into)),
        (
            "redis_key_prefix",
            args.redis_key_prefix.clone().map(Into::into),
        ),
        ("atomic_admission", args.atomic_admission.map(Into::into)),
        (
            "redis_sentinel_master",
            args.redis_sentinel_master.clone().map(Into::into),
        ),
        (
            "redis_tls_ca_file",
            args.redis_tls_ca_file.clone().map(Into::into),
        ),
        ("fallback", args.fallback.clone().map(Into::into)),
        ("fallback_replicas", args.fallback_replicas.map(Into::into)),
        ("breaker_failures", args.breaker_failures.map(Into::into)),
        ("breaker_open_ms", args.breaker_open_ms.map(Into::into)),
        (
            "breaker_max_open_ms",
            args.breaker_max_open_ms.map(Into::into),
        ),
        ("rules_poll_ms", args.rules_poll_ms.map(Into::into)),
        ("near_limit_ratio", args.near_limit_ratio.map(Into::into)),
        (
            "admin_token_file",
            args.admin_token_file.clone().map(Into::into),
        ),
        ("overrides_poll_ms", args.overrides_poll_ms.map(Into::into)),
        ("otlp_endpoint", args.otlp_endpoint.clone().map(Into::into)),
        ("authz_keys", args.authz_keys.clone().map(Into::into)),
        ("authz_config", args.authz_config.clone().map(Into::into)),
        ("max_descriptors", args.max_descriptors.map(Into::into)),
        ("max_entries", args.max_entries.map(Into::into)),
        ("max_value_bytes", args.max_value_bytes.map(Into::into)),
        ("max_request_bytes", args.max_request_bytes.map(Into::into)),
        (
            "rules_max_file_bytes",
            args.rules_max_file_bytes.map(Into::into),
        ),
        ("idle_timeout_ms", args.idle_timeout_ms.map(Into::into)),
        (
            "header_read_timeout_ms",
            args.header_read_timeout_ms.map(Into::into),
        ),
        ("keepalive_ms", args.keepalive_ms.map(Into::into)),
        (
            "keepalive_timeout_ms",
            args.keepalive_timeout_ms.map(Into::into),
        ),
        (
            "request_timeout_ms",
            args.request_timeout_ms.map(Into::into),
        ),
        ("max_connections", args.max_connections.map(Into::into)),
    ];
    for (key, value) in overrides {
        if let Some(v) = value {
            b = b.set_override(*key, v.clone()).map_err(invalid)?;
        }
    }
    let settings: Settings = b
        .build()
        .map_err(invalid)?
        .try_deserialize()
        .map_err(invalid)?;
    settings.validate()?;
    Ok(settings)
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
        if self.admin_token_file.is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.admin_token_file).map_err(|e| {
            SettingsError::Invalid(format!("admin_token_file {}: {e}", self.admin_token_file))
        })?;
        let token = text.trim();
        if token.len() < 16 {
            return Err(SettingsError::Invalid(format!(
                "admin_token_file {}: the token must be at least 16 characters",
                self.admin_token_file
            )));
        }
        Ok(Some(token.to_owned()))
    }

    /// The per-call Redis deadline.
    pub fn redis_timeout(&self) -> Result<std::time::Duration, SettingsError> {
        parse_duration(&self.redis_timeout).ok_or_else(|| {
            SettingsError::Invalid(format!(
                "redis_timeout '{}' is not a duration (e.g. 10ms, 0.5s, 25)",
                self.redis_timeout
            ))
        })
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if !(0.0..=1.0).contains(&self.near_limit_ratio) {
            return Err(SettingsError::Invalid(
                "near_limit_ratio must be between 0 and 1".into(),
            ));
        }
        if self.rules_poll_ms == 0 || self.overrides_poll_ms == 0 {
            return Err(SettingsError::Invalid(
                "rules_poll_ms and overrides_poll_ms must be at least 1".into(),
            ));
        }
        if !self.otlp_endpoint.is_empty() && !cfg!(feature = "otlp") {
            return Err(SettingsError::Invalid(
                "otlp_endpoint is set but this sluice was built without the otlp feature (cargo build --features otlp)".into(),
            ));
        }
        if self.authz_keys.is_empty() != self.authz_config.is_empty() {
            return Err(SettingsError::Invalid(
                "authz_keys and authz_config go together: set both to enable ext_authz".into(),
            ));
        }
        if self.fallback_replicas == 0 {
            return Err(SettingsError::Invalid(
                "fallback_replicas must be at least 1".into(),
            ));
        }
        if self.breaker_failures == 0 || self.breaker_open_ms == 0 {
            return Err(SettingsError::Invalid(
                "breaker_failures and breaker_open_ms must be at least 1".into(),
            ));
        }
        if self.breaker_max_open_ms < self.breaker_open_ms {
            return Err(SettingsError::Invalid(
                "breaker_max_open_ms must not be below breaker_open_ms".into(),
            ));
        }
        let timeout = self.redis_timeout()?;
        if timeout.is_zero() {
            return Err(SettingsError::Invalid(
                "redis_timeout must be above zero".into(),
            ));
        }
        if self.backend != Backend::Memory {
            let nodes = self.redis_node_list();
            if nodes.is_empty() {
                return Err(SettingsError::Invalid(
                    "redis_nodes: a Redis backend needs at least one Redis URL".into(),
                ));
            }
            for url in nodes {
                if let Err(e) = redis::Client::open(url.as_str()) {
                    return Err(SettingsError::Invalid(format!(
                        "redis_nodes: '{url}' is not a Redis URL: {e}"
                    )));
                }
            }
        }
        for (name, value) in [
            ("max_descriptors", self.max_descriptors as u64),
            ("max_entries", self.max_entries as u64),
            ("max_value_bytes", self.max_value_bytes as u64),
            ("max_request_bytes", self.max_request_bytes as u64),
            ("rules_max_file_bytes", self.rules_max_file_bytes),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("keepalive_ms", self.keepalive_ms),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("max_connections", self.max_connections as u64),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.memory_max_keys == 0 {
            return Err(SettingsError::Invalid(
                "memory_max_keys must be at least 1".into(),
            ));
        }
        if self.memory_sweep_secs == 0 {
            return Err(SettingsError::Invalid(
                "memory_sweep_secs must be at least 1".into(),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(SettingsError::Invalid(format!(
                "log_level '{}' is not a valid filter",
                self.log_level
            )));
        }
        Ok(())
    }
}

/// `10ms`, `1.5s`, or a bare number of milliseconds.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1e-3)
    };
    let value: f64 = number.trim().parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    std::time::Duration::try_from_secs_f64(value * scale).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let argv = std::iter::once("sluice").chain(args.iter().copied());
        match parse(argv, &env)? {
            Invocation::Serve(s) => Ok(*s),
            other => panic!("expected serve, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let s = serve(&[], &[]).expect("defaults are valid");
        assert_eq!(s.grpc_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(s.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(s.rules_dir, PathBuf::from("examples/rules"));
        assert_eq!(s.backend, Backend::Memory);
        assert_eq!(s.response_headers, HeaderMode::Off);
        assert!(!s.shadow_mode);
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "grpc_addr = \"127.0.0.1:1\"\nhttp_addr = \"127.0.0.1:2\"\nrules_dir = \"/f\"\n",
        )
        .expect("write");
        let file = file.to_string_lossy().to_string();
        let s = serve(
            &["--config", &file, "--grpc-addr", "127.0.0.1:3"],
            &[
                ("SLUICE_GRPC_ADDR", "127.0.0.1:4"),
                ("SLUICE_HTTP_ADDR", "127.0.0.1:5"),
            ],
        )
        .expect("valid");
        assert_eq!(s.grpc_addr.to_string(), "127.0.0.1:3");
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:5");
        assert_eq!(s.rules_dir, PathBuf::from("/f"));
    }

    #[test]
    fn env_twins() {
        let s = serve(
            &[],
            &[
                ("SLUICE_RULES_DIR", "/r"),
                ("SLUICE_SHADOW_MODE", "true"),
                ("SLUICE_RESPONSE_HEADERS", "draft10"),
                ("SLUICE_PORT", "tcp://10.0.0.1:8081"),
            ],
        )
        .expect("valid");
        assert_eq!(s.rules_dir, PathBuf::from("/r"));
        assert!(s.shadow_mode);
        assert_eq!(s.response_headers, HeaderMode::Draft10);
    }

    #[test]
    fn shadow_flag_without_value() {
        assert!(serve(&["--shadow-mode"], &[]).expect("valid").shadow_mode);
        assert!(
            !serve(&["--shadow-mode=false"], &[("SLUICE_SHADOW_MODE", "true")])
                .expect("valid")
                .shadow_mode
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = serve(&["--grpc-addr", "nonsense"], &[]).expect_err("bad addr");
        assert!(e.to_string().contains("grpc_addr"), "{e}");
        let e = serve(&["--response-headers", "maybe"], &[]).expect_err("bad mode");
        assert!(e.to_string().contains("response_headers"), "{e}");
        let e = serve(&[], &[("SLUICE_BACKEND", "etcd")]).expect_err("bad backend");
        assert!(e.to_string().contains("backend"), "{e}");
        assert!(serve(&["--no-such-flag"], &[]).is_err());
    }

    #[test]
    fn redis_settings() {
        let s = serve(
            &[
                "--backend",
                "redis",
                "--redis-nodes",
                "redis://127.0.0.1:1, redis://127.0.0.1:2",
            ],
            &[("SLUICE_REDIS_TIMEOUT", "25ms")],
        )
        .expect("valid");
        assert_eq!(
            s.redis_node_list(),
            ["redis://127.0.0.1:1", "redis://127.0.0.1:2"]
        );
        assert_eq!(
            s.redis_timeout().expect("valid"),
            std::time::Duration::from_millis(25)
        );
        let e = serve(&["--backend", "redis"], &[]).expect_err("no nodes");
        assert!(e.to_string().contains("redis_nodes"), "{e}");
        let e = serve(&["--redis-timeout", "soon"], &[]).expect_err("bad timeout");
        assert!(e.to_string().contains("redis_timeout"), "{e}");
        let e =
            serve(&["--backend", "redis", "--redis-nodes", "http://x"], &[]).expect_err("bad url");
        assert!(e.to_string().contains("redis_nodes"), "{e}");
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "grpc_adr = \"127.0.0.1:1\"\n").expect("write");
        let e = serve(&["--config", &file.to_string_lossy()], &[]).expect_err("typo");
        assert!(e.to_string().contains("grpc_adr"), "{e}");
    }
}
