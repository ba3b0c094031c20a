//! envoyproxy/ratelimit's environment variables, so that an unchanged upstream Deployment (or
//! Envoy Gateway's) runs sluice: each variable is honoured (mapped onto a sluice setting),
//! ignored (logged once: it does not change decisions), or refused at start (ignoring it would
//! change decisions). [`UPSTREAM`] is that table; [`derive`] applies it. A `SLUICE_*` variable,
//! the settings file or a flag wins over any of these.

use super::value::{Bool, Parse};
use super::SettingsError;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

/// What sluice does with one upstream variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Mapped onto a sluice setting (named in the note).
    Honoured,
    /// Logged once at start and otherwise ignored.
    Ignored,
    /// Start-up fails with the reason, when set as the note says.
    Refused,
}

/// One upstream variable: name, treatment, note for the docs.
pub type UpVar = (&'static str, Treatment, &'static str);

use Treatment::{Honoured as H, Ignored as I, Refused as R};

/// Every upstream variable sluice knows, in upstream's groups.
pub const UPSTREAM: &[UpVar] = &[
    ("HOST", H, "`http_addr` host"),
    ("PORT", H, "`http_addr` port"),
    ("GRPC_HOST", H, "`grpc_addr` host"),
    ("GRPC_PORT", H, "`grpc_addr` port"),
    ("DEBUG_HOST", H, "`debug_addr` host"),
    (
        "DEBUG_PORT",
        H,
        "`debug_addr` port (6070 by default when run as `ratelimit`)",
    ),
    ("GRPC_UDS", R, "when set: sluice listens on TCP only"),
    (
        "GRPC_MAX_CONNECTION_AGE",
        I,
        "connections end by idle timeout and keepalive instead",
    ),
    ("GRPC_MAX_CONNECTION_AGE_GRACE", I, "as above"),
    ("GRPC_SERVER_USE_TLS", H, "`grpc_tls`"),
    (
        "GRPC_SERVER_TLS_CERT",
        H,
        "`grpc_tls_cert` (re-read on change)",
    ),
    (
        "GRPC_SERVER_TLS_KEY",
        H,
        "`grpc_tls_key` (PKCS#1, PKCS#8, EC)",
    ),
    (
        "GRPC_CLIENT_TLS_CACERT",
        H,
        "`grpc_tls_client_ca`: client certificates verified",
    ),
    (
        "GRPC_SERVER_TLS_CA_CERT",
        H,
        "Envoy Gateway's name for the same (`GRPC_CLIENT_TLS_CACERT` wins)",
    ),
    ("GRPC_CLIENT_TLS_SAN", H, "`grpc_tls_client_san`"),
    ("CONFIG_TYPE", H, "`config_type`: `FILE` or `GRPC_XDS_SOTW`"),
    (
        "FORCE_START_WITHOUT_INITIAL_CONFIG",
        H,
        "`force_start_without_initial_config`",
    ),
    ("MERGE_DOMAIN_CONFIG", H, "`merge_domain_config`"),
    (
        "HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED",
        I,
        "health follows serving, not config",
    ),
    (
        "RUNTIME_ROOT",
        H,
        "`rules_dir` = root/subdirectory/appdirectory",
    ),
    ("RUNTIME_SUBDIRECTORY", H, "as above"),
    ("RUNTIME_APPDIRECTORY", H, "as above (default `config`)"),
    (
        "RUNTIME_IGNOREDOTFILES",
        H,
        "sluice always skips dot files (`false` is logged as ignored)",
    ),
    (
        "RUNTIME_WATCH_ROOT",
        H,
        "both modes work: the directory's contents are polled, symlink swaps included",
    ),
    ("CONFIG_GRPC_XDS_SERVER_URL", H, "`xds_server_url`"),
    ("CONFIG_GRPC_XDS_NODE_ID", H, "`xds_node_id`"),
    ("CONFIG_GRPC_XDS_NODE_METADATA", H, "`xds_node_metadata`"),
    (
        "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS",
        H,
        "`xds_headers`",
    ),
    ("CONFIG_GRPC_XDS_SERVER_USE_TLS", H, "`xds_use_tls`"),
    (
        "CONFIG_GRPC_XDS_CLIENT_TLS_CERT",
        H,
        "`xds_client_tls_cert`",
    ),
    ("CONFIG_GRPC_XDS_CLIENT_TLS_KEY", H, "`xds_client_tls_key`"),
    (
        "CONFIG_GRPC_XDS_SERVER_TLS_CACERT",
        H,
        "`xds_server_tls_ca`",
    ),
    ("CONFIG_GRPC_XDS_SERVER_TLS_SAN", H, "`xds_server_tls_san`"),
    (
        "CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL",
        I,
        "reconnects follow the backoff settings",
    ),
    (
        "XDS_CLIENT_BACKOFF_INITIAL_INTERVAL",
        H,
        "`xds_backoff_initial`",
    ),
    ("XDS_CLIENT_BACKOFF_MAX_INTERVAL", H, "`xds_backoff_max`"),
    (
        "XDS_CLIENT_BACKOFF_RANDOM_FACTOR",
        I,
        "sluice always adds up to 50 % jitter",
    ),
    ("XDS_CLIENT_BACKOFF_JITTER", I, "as above"),
    (
        "XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES",
        H,
        "`xds_max_message_bytes`",
    ),
    (
        "BACKEND_TYPE",
        H,
        "`redis` → a Redis `backend`; `memcache` refused",
    ),
    (
        "REDIS_SOCKET_TYPE",
        H,
        "`tcp` or `unix` (builds `redis_nodes`)",
    ),
    (
        "REDIS_TYPE",
        H,
        "`SINGLE`, `CLUSTER`, `SENTINEL` → `backend`",
    ),
    (
        "REDIS_URL",
        H,
        "`redis_nodes` (and the sentinel primary's name); sets the Redis backend",
    ),
    (
        "REDIS_AUTH",
        H,
        "password or user:password in `redis_nodes` (refused with `SENTINEL`)",
    ),
    ("REDIS_TLS", H, "`rediss://` URLs"),
    ("REDIS_TLS_CACERT", H, "`redis_tls_ca_file`"),
    ("REDIS_TLS_CLIENT_CERT", H, "`redis_tls_client_cert`"),
    ("REDIS_TLS_CLIENT_KEY", H, "`redis_tls_client_key`"),
    (
        "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION",
        R,
        "when `true`: sluice always verifies",
    ),
    ("REDIS_SENTINEL_AUTH", R, "when set: not supported"),
    (
        "REDIS_TIMEOUT",
        I,
        "upstream's dial timeout; sluice's per-call deadline is `redis_timeout`",
    ),
    ("REDIS_POOL_SIZE", I, "one multiplexed connection per node"),
    ("REDIS_POOL_ON_EMPTY_BEHAVIOR", I, "as above"),
    (
        "REDIS_PIPELINE_WINDOW",
        I,
        "one script call per shard per request already",
    ),
    ("REDIS_PIPELINE_LIMIT", I, "as above"),
    ("REDIS_CLUSTER_PIPELINE_PARALLELISM", I, "as above"),
    (
        "REDIS_HEALTH_CHECK_ACTIVE_CONNECTION",
        I,
        "breakers probe failed nodes",
    ),
    (
        "REDIS_STARTUP_INITIAL_INTERVAL",
        I,
        "sluice starts without Redis and falls back locally",
    ),
    ("REDIS_STARTUP_MAX_INTERVAL", I, "as above"),
    ("REDIS_STARTUP_MAX_ELAPSED_TIME", I, "as above"),
    (
        "REDIS_PERSECOND",
        R,
        "when `true`: per-second limits would live elsewhere",
    ),
    (
        "REDIS_PERSECOND_*",
        I,
        "unused unless `REDIS_PERSECOND=true`",
    ),
    (
        "MEMCACHE_*",
        I,
        "unused (`BACKEND_TYPE=memcache` is refused)",
    ),
    ("CACHE_KEY_PREFIX", H, "`redis_key_prefix`"),
    ("EXPIRATION_JITTER_MAX_SECONDS", I, "no effect on decisions"),
    (
        "LOCAL_CACHE_SIZE_IN_BYTES",
        I,
        "over-limit answers come from the store",
    ),
    ("NEAR_LIMIT_RATIO", H, "`near_limit_ratio`"),
    (
        "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT",
        H,
        "`atomic_admission`",
    ),
    ("SHADOW_MODE", H, "`shadow_mode`"),
    ("QUOTA_MODE", R, "when `true`: not supported"),
    (
        "RESPONSE_DYNAMIC_METADATA",
        I,
        "no dynamic metadata is sent",
    ),
    (
        "LIMIT_RESPONSE_HEADERS_ENABLED",
        H,
        "`response_headers = ratelimit`",
    ),
    ("LIMIT_LIMIT_HEADER", H, "`response_header_limit`"),
    ("LIMIT_REMAINING_HEADER", H, "`response_header_remaining`"),
    ("LIMIT_RESET_HEADER", H, "`response_header_reset`"),
    ("LOG_LEVEL", H, "`log_level` (`warning` → `warn`)"),
    ("LOG_FORMAT", H, "`log_format`"),
    (
        "USE_PROMETHEUS",
        H,
        "`prometheus_addr` = `PROMETHEUS_ADDR` (default `:9090`)",
    ),
    ("PROMETHEUS_ADDR", H, "as above"),
    ("PROMETHEUS_PATH", H, "`prometheus_path`"),
    (
        "PROMETHEUS_MAPPER_YAML",
        I,
        "series already carry the mapped names",
    ),
    (
        "PROMETHEUS_RESPONSE_TIME_AS_MILLISECONDS",
        I,
        "response time is in seconds",
    ),
    (
        "USE_STATSD",
        I,
        "when `true`: no statsd sink; metrics are on `/metrics`",
    ),
    ("STATSD_HOST", I, "as above"),
    ("STATSD_PORT", I, "as above"),
    ("USE_DOG_STATSD", I, "as above"),
    ("USE_DOG_STATSD_MOGRIFIERS", I, "as above"),
    ("EXTRA_TAGS", I, "no extra labels"),
    ("STATS_FLUSH_INTERVAL", I, "Prometheus is pulled"),
    ("DISABLE_STATS", I, "metrics are always on"),
    (
        "TRACING_ENABLED",
        H,
        "with `OTEL_EXPORTER_OTLP_ENDPOINT`: `otlp_endpoint` (otlp build)",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        H,
        "as above (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` wins)",
    ),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", H, "as above"),
    (
        "TRACING_EXPORTER_PROTOCOL",
        I,
        "sluice exports OTLP over gRPC",
    ),
    ("TRACING_SERVICE_NAME", I, "spans name the service `sluice`"),
    ("TRACING_SERVICE_NAMESPACE", I, "as above"),
    ("TRACING_SERVICE_INSTANCE_ID", I, "as above"),
    ("TRACING_SAMPLING_RATE", I, "every span is exported"),
];

/// Setting values derived from upstream variables, and what to log.
#[derive(Debug, Default)]
pub struct Derived {
    /// (setting name, value text, the variable(s) it came from).
    pub values: Vec<(&'static str, String, String)>,
    /// One line per ignored variable that was set.
    pub notes: Vec<String>,
}

/// Reads `env` the way envoyproxy/ratelimit would. `as_ratelimit`: started under upstream's
/// binary name, so upstream's debug port and rule directory are the defaults.
pub fn derive(env: &HashMap<String, String>, as_ratelimit: bool) -> Result<Derived, SettingsError> {
    let r = Reader {
        env,
        read: RefCell::new(BTreeSet::new()),
    };
    let mut out = Derived::default();
    listeners(&r, as_ratelimit, &mut out)?;
    config_source(&r, as_ratelimit, &mut out)?;
    redis(&r, &mut out)?;
    behaviour(&r, &mut out)?;
    observability(&r, &mut out)?;
    // Everything marked ignored that is set, and that the functions above did not handle.
    for (name, treatment, why) in UPSTREAM {
        if *treatment != Treatment::Ignored {
            continue;
        }
        let set: Vec<&str> = match name.strip_suffix('*') {
            Some(prefix) => {
                let mut vars: Vec<&str> = env
                    .iter()
                    .filter(|(k, v)| k.starts_with(prefix) && !v.trim().is_empty())
                    .map(|(k, _)| k.as_str())
                    .collect();
                vars.sort_unstable();
                vars
            }
            None => match env.get(*name) {
                Some(v) if !v.trim().is_empty() => vec![*name],
                _ => Vec::new(),
            },
        };
        for var in set {
            if r.read.borrow().contains(var) {
                continue;
            }
            out.notes.push(format!("{var} is set but ignored: {why}"));
        }
    }
    Ok(out)
}

/// Reads variables (trimmed, empty = unset), remembering which were looked at.
struct Reader<'a> {
    /// The process environment, injected.
    env: &'a HashMap<String, String>,
    /// Variables read by the mapping (so the generic "ignored" pass skips them).
    read: RefCell<BTreeSet<String>>,
}

impl Reader<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.read.borrow_mut().insert(name.to_owned());
        self.env
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, SettingsError> {
        self.get(name)
            .map(|v| {
                Bool::parse(v).map_err(|e| SettingsError::Invalid(format!("{name}: '{v}' {e}")))
            })
            .transpose()
    }
}

fn set(out: &mut Derived, name: &'static str, value: impl Into<String>, from: &str) {
    out.values.push((name, value.into(), from.to_owned()));
}

fn refuse(var: &str, value: &str, why: &str) -> SettingsError {
    SettingsError::Invalid(format!("{var}={value} is not supported: {why}"))
}

/// `host` and `port` as an address text (IPv6 hosts bracketed).
fn join(host: &str, port: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn listeners(r: &Reader, as_ratelimit: bool, out: &mut Derived) -> Result<(), SettingsError> {
    for (host_var, port_var, setting, port) in [
        ("HOST", "PORT", "http_addr", "8080"),
        ("GRPC_HOST", "GRPC_PORT", "grpc_addr", "8081"),
        ("DEBUG_HOST", "DEBUG_PORT", "debug_addr", "6070"),
    ] {
        let (host, p) = (r.get(host_var), r.get(port_var));
        if host.is_some() || p.is_some() {
            let addr = join(host.unwrap_or("0.0.0.0"), p.unwrap_or(port));
            set(out, setting, addr, &format!("{host_var}/{port_var}"));
        } else if setting == "debug_addr" && as_ratelimit {
            set(out, setting, "0.0.0.0:6070", "upstream default");
        }
    }
    if let Some(uds) = r.get("GRPC_UDS") {
        return Err(refuse(
            "GRPC_UDS",
            uds,
            "sluice serves gRPC on TCP only (GRPC_HOST/GRPC_PORT)",
        ));
    }
    if let Some(tls) = r.flag("GRPC_SERVER_USE_TLS")? {
        set(out, "grpc_tls", tls.to_string(), "GRPC_SERVER_USE_TLS");
    }
    for (var, setting) in [
        ("GRPC_SERVER_TLS_CERT", "grpc_tls_cert"),
        ("GRPC_SERVER_TLS_KEY", "grpc_tls_key"),
        ("GRPC_CLIENT_TLS_SAN", "grpc_tls_client_san"),
    ] {
        if let Some(v) = r.get(var) {
            set(out, setting, v, var);
        }
    }
    let ca = r
        .get("GRPC_SERVER_TLS_CA_CERT")
        .map(|v| (v, "GRPC_SERVER_TLS_CA_CERT"));
    if let Some((v, var)) = r
        .get("GRPC_CLIENT_TLS_CACERT")
        .map(|v| (v, "GRPC_CLIENT_TLS_CACERT"))
        .or(ca)
    {
        set(out, "grpc_tls_client_ca", v, var);
    }
    Ok(())
}

fn config_source(r: &Reader, as_ratelimit: bool, out: &mut Derived) -> Result<(), SettingsError> {
    let (root, sub, app) = (
        r.get("RUNTIME_ROOT"),
        r.get("RUNTIME_SUBDIRECTORY"),
        r.get("RUNTIME_APPDIRECTORY"),
    );
    if root.is_some() || sub.is_some() || app.is_some() || as_ratelimit {
        let mut dir = std::path::PathBuf::from(root.unwrap_or("/srv/runtime_data/current"));
        if let Some(sub) = sub {
            dir.push(sub);
        }
        dir.push(app.unwrap_or("config"));
        set(
            out,
            "rules_dir",
            dir.to_string_lossy(),
            "RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY",
        );
    }
    if r.flag("RUNTIME_IGNOREDOTFILES")? == Some(false) {
        out.notes.push("RUNTIME_IGNOREDOTFILES=false is ignored: sluice always skips dot files and directories (Kubernetes' ..data)".into());
    }
    r.flag("RUNTIME_WATCH_ROOT")?;
    if let Some(t) = r.get("CONFIG_TYPE") {
        set(out, "config_type", t.to_ascii_lowercase(), "CONFIG_TYPE");
    }
    for (var, setting) in [
        (
            "FORCE_START_WITHOUT_INITIAL_CONFIG",
            "force_start_without_initial_config",
        ),
        ("MERGE_DOMAIN_CONFIG", "merge_domain_config"),
        ("CONFIG_GRPC_XDS_SERVER_USE_TLS", "xds_use_tls"),
    ] {
        if let Some(v) = r.flag(var)? {
            set(out, setting, v.to_string(), var);
        }
    }
    for (var, setting) in [
        ("CONFIG_GRPC_XDS_SERVER_URL", "xds_server_url"),
        ("CONFIG_GRPC_XDS_NODE_ID", "xds_node_id"),
        ("CONFIG_GRPC_XDS_NODE_METADATA", "xds_node_metadata"),
        ("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "xds_headers"),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "xds_client_tls_cert"),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "xds_client_tls_key"),
        ("CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "xds_server_tls_ca"),
        ("CONFIG_GRPC_XDS_SERVER_TLS_SAN", "xds_server_tls_san"),
        ("XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "xds_backoff_initial"),
        ("XDS_CLIENT_BACKOFF_MAX_INTERVAL", "xds_backoff_max"),
    ] {
        if let Some(v) = r.get(var) {
            set(out, setting, v, var);
        }
    }
    // 0 means "gRPC's default" upstream: keep sluice's bound then.
    if let Some(v) = r
        .get("XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES")
        .filter(|v| *v != "0")
    {
        set(
            out,
            "xds_max_message_bytes",
            v,
            "XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES",
        );
    }
    Ok(())
}

fn redis(r: &Reader, out: &mut Derived) -> Result<(), SettingsError> {
    let backend = r.get("BACKEND_TYPE").map(str::to_ascii_lowercase);
    match backend.as_deref() {
        None | Some("redis") => {}
        Some(other) => {
            return Err(refuse(
                "BACKEND_TYPE",
                other,
                "sluice stores counters in memory or Redis (SLUICE_BACKEND)",
            ));
        }
    }
    if r.flag("REDIS_PERSECOND")? == Some(true) {
        return Err(refuse(
            "REDIS_PERSECOND",
            "true",
            "sluice keeps every counter in one store; remove it to share one Redis",
        ));
    }
    if r.flag("REDIS_TLS_SKIP_HOSTNAME_VERIFICATION")? == Some(true) {
        return Err(refuse(
            "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION",
            "true",
            "sluice always verifies the Redis server's name; use a certificate for it",
        ));
    }
    if let Some(v) = r.get("REDIS_SENTINEL_AUTH") {
        let _ = v;
        return Err(refuse(
            "REDIS_SENTINEL_AUTH",
            "…",
            "put the password in the sentinel URLs (SLUICE_REDIS_NODES=redis://:pass@host:26379)",
        ));
    }
    for (var, setting) in [
        ("REDIS_TLS_CACERT", "redis_tls_ca_file"),
        ("REDIS_TLS_CLIENT_CERT", "redis_tls_client_cert"),
        ("REDIS_TLS_CLIENT_KEY", "redis_tls_client_key"),
        ("CACHE_KEY_PREFIX", "redis_key_prefix"),
    ] {
        if let Some(v) = r.get(var) {
            set(out, setting, v, var);
        }
    }
    let url = r.get("REDIS_URL");
    let socket = r.get("REDIS_SOCKET_TYPE").map(str::to_ascii_lowercase);
    let kind = r.get("REDIS_TYPE").map(str::to_ascii_lowercase);
    let auth = r.get("REDIS_AUTH");
    let tls = r.flag("REDIS_TLS")?.unwrap_or(false);
    if backend.is_none() && url.is_none() {
        return Ok(());
    }
    let url = url.unwrap_or("/var/run/nutcracker/ratelimit.sock");
    let mut entries: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let from = "BACKEND_TYPE/REDIS_TYPE/REDIS_URL";
    match kind.as_deref().unwrap_or("single") {
        "single" => set(out, "backend", "redis", from),
        "cluster" => set(out, "backend", "redis_cluster", from),
        "sentinel" => {
            if auth.is_some() {
                return Err(refuse(
                    "REDIS_AUTH",
                    "…",
                    "with REDIS_TYPE=SENTINEL sluice cannot authenticate to the primary yet",
                ));
            }
            if entries.len() < 2 {
                return Err(SettingsError::Invalid("REDIS_URL: with REDIS_TYPE=SENTINEL it must be 'primary-name,host:port[,host:port…]'".into()));
            }
            let master = entries.remove(0);
            set(out, "redis_sentinel_master", master, "REDIS_URL");
            set(out, "backend", "redis_sentinel", from);
        }
        other => {
            return Err(SettingsError::Invalid(format!(
                "REDIS_TYPE: '{other}' must be SINGLE, CLUSTER or SENTINEL"
            )));
        }
    }
    let userinfo = auth.map(|a| match a.split_once(':') {
        Some((user, pass)) => format!("{}:{}@", encode(user), encode(pass)),
        None => format!(":{}@", encode(a)),
    });
    let nodes: Vec<String> = entries
        .iter()
        .map(|e| {
            if e.contains("://") {
                return (*e).to_owned();
            }
            // Upstream's default socket type is unix, but `host:port` can only mean TCP.
            let unix = match socket.as_deref() {
                Some("unix") => true,
                Some(_) => false,
                None => e.starts_with('/'),
            };
            if unix {
                let pass = auth
                    .map(|a| format!("?pass={}", encode(a.rsplit(':').next().unwrap_or(a))))
                    .unwrap_or_default();
                format!("redis+unix://{e}{pass}")
            } else {
                let scheme = if tls { "rediss" } else { "redis" };
                format!("{scheme}://{}{e}", userinfo.clone().unwrap_or_default())
            }
        })
        .collect();
    set(out, "redis_nodes", nodes.join(","), "REDIS_URL");
    Ok(())
}

/// Percent-encodes what may not appear raw in a URL's userinfo.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn behaviour(r: &Reader, out: &mut Derived) -> Result<(), SettingsError> {
    if r.flag("QUOTA_MODE")? == Some(true) {
        return Err(refuse(
            "QUOTA_MODE",
            "true",
            "quota mode is not implemented",
        ));
    }
    for (var, setting) in [
        ("SHADOW_MODE", "shadow_mode"),
        (
            "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT",
            "atomic_admission",
        ),
    ] {
        if let Some(v) = r.flag(var)? {
            set(out, setting, v.to_string(), var);
        }
    }
    if let Some(v) = r.flag("LIMIT_RESPONSE_HEADERS_ENABLED")? {
        set(
            out,
            "response_headers",
            if v { "ratelimit" } else { "off" },
            "LIMIT_RESPONSE_HEADERS_ENABLED",
        );
    }
    for (var, setting) in [
        ("NEAR_LIMIT_RATIO", "near_limit_ratio"),
        ("LIMIT_LIMIT_HEADER", "response_header_limit"),
        ("LIMIT_REMAINING_HEADER", "response_header_remaining"),
        ("LIMIT_RESET_HEADER", "response_header_reset"),
    ] {
        if let Some(v) = r.get(var) {
            set(out, setting, v, var);
        }
    }
    if r.flag("RESPONSE_DYNAMIC_METADATA")? == Some(true) {
        out.notes.push(
            "RESPONSE_DYNAMIC_METADATA=true is ignored: sluice sends no dynamic metadata".into(),
        );
    }
    Ok(())
}

fn observability(r: &Reader, out: &mut Derived) -> Result<(), SettingsError> {
    if let Some(level) = r.get("LOG_LEVEL") {
        let level = match level.to_ascii_lowercase().as_str() {
            "warning" => "warn".to_owned(),
            "fatal" | "panic" => "error".to_owned(),
            l => l.to_owned(),
        };
        set(out, "log_level", level, "LOG_LEVEL");
    }
    if let Some(v) = r.get("LOG_FORMAT") {
        set(out, "log_format", v.to_ascii_lowercase(), "LOG_FORMAT");
    }
    let path = r.get("PROMETHEUS_PATH");
    let addr = r.get("PROMETHEUS_ADDR");
    if r.flag("USE_PROMETHEUS")? == Some(true) {
        set(
            out,
            "prometheus_addr",
            addr.unwrap_or(":9090"),
            "USE_PROMETHEUS/PROMETHEUS_ADDR",
        );
        if let Some(p) = path {
            set(out, "prometheus_path", p, "PROMETHEUS_PATH");
        }
    }
    if r.flag("USE_STATSD")? == Some(true) {
        out.notes.push("USE_STATSD=true is ignored: sluice has no statsd sink; scrape /metrics (USE_PROMETHEUS)".into());
    }
    let endpoint = r
        .get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| r.get("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if r.flag("TRACING_ENABLED")? == Some(true) {
        match endpoint {
            Some(e) if cfg!(feature = "otlp") => {
                set(out, "otlp_endpoint", e, "OTEL_EXPORTER_OTLP_ENDPOINT")
            }
            Some(_) => out.notes.push(
                "TRACING_ENABLED=true is ignored: this sluice was built without the otlp feature"
                    .into(),
            ),
            None => out
                .notes
                .push("TRACING_ENABLED=true is ignored: no OTEL_EXPORTER_OTLP_ENDPOINT".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn value<'a>(d: &'a Derived, name: &str) -> Option<&'a str> {
        d.values
            .iter()
            .rev()
            .find(|(n, _, _)| *n == name)
            .map(|(_, v, _)| v.as_str())
    }

    #[test]
    fn redis_urls() {
        let d = derive(
            &env(&[
                ("REDIS_SOCKET_TYPE", "tcp"),
                ("REDIS_URL", "redis:6379"),
                ("REDIS_AUTH", "u:p@ss"),
            ]),
            false,
        )
        .expect("valid");
        assert_eq!(
            value(&d, "redis_nodes"),
            Some("redis://u:p%40ss@redis:6379")
        );
        assert_eq!(value(&d, "backend"), Some("redis"));
        let d = derive(
            &env(&[
                ("REDIS_TYPE", "sentinel"),
                ("REDIS_URL", "mymaster,a:26379,b:26379"),
                ("REDIS_TLS", "true"),
            ]),
            false,
        )
        .expect("valid");
        assert_eq!(value(&d, "redis_sentinel_master"), Some("mymaster"));
        assert_eq!(
            value(&d, "redis_nodes"),
            Some("rediss://a:26379,rediss://b:26379")
        );
        let d = derive(
            &env(&[("REDIS_TYPE", "CLUSTER"), ("REDIS_URL", "a:1,b:2")]),
            false,
        )
        .expect("valid");
        assert_eq!(value(&d, "backend"), Some("redis_cluster"));
        assert!(derive(&env(&[]), false).expect("valid").values.is_empty());
        assert!(derive(&env(&[("BACKEND_TYPE", "memcache")]), false).is_err());
        assert!(derive(&env(&[("REDIS_PERSECOND", "true")]), false).is_err());
    }

    #[test]
    fn listeners_and_notes() {
        let d = derive(
            &env(&[
                ("GRPC_HOST", "::"),
                ("PORT", "9000"),
                ("USE_STATSD", "true"),
                ("REDIS_POOL_SIZE", "5"),
                ("MEMCACHE_HOST_PORT", "x:1"),
            ]),
            true,
        )
        .expect("valid");
        assert_eq!(value(&d, "grpc_addr"), Some("[::]:8081"));
        assert_eq!(value(&d, "http_addr"), Some("0.0.0.0:9000"));
        assert_eq!(value(&d, "debug_addr"), Some("0.0.0.0:6070"));
        assert_eq!(
            value(&d, "rules_dir"),
            Some("/srv/runtime_data/current/config")
        );
        assert_eq!(d.notes.len(), 3, "{:?}", d.notes);
    }

    #[test]
    fn every_variable_read_is_documented() {
        let r = Reader {
            env: &HashMap::new(),
            read: RefCell::new(BTreeSet::new()),
        };
        let mut out = Derived::default();
        listeners(&r, false, &mut out).expect("ok");
        config_source(&r, false, &mut out).expect("ok");
        redis(&r, &mut out).expect("ok");
        behaviour(&r, &mut out).expect("ok");
        observability(&r, &mut out).expect("ok");
        for var in r.read.borrow().iter() {
            assert!(
                UPSTREAM.iter().any(|(n, _, _)| n == var),
                "{var} is read but not in UPSTREAM"
            );
        }
    }
}
