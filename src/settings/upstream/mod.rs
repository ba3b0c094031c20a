//! envoyproxy/ratelimit's environment variables, so that an unchanged upstream Deployment (or
//! Envoy Gateway's) runs sluice: each variable is honoured (mapped onto a sluice setting),
//! ignored (logged once: it does not change decisions), or refused at start (ignoring it would
//! change decisions). [`UPSTREAM`] is that table; [`derive`] applies it. A `SLUICE_*` variable,
//! the settings file or a flag wins over any of these.
//!
//! - [`table`]: the table itself.
//! - [`redis`]: the Redis variables.

mod redis;
mod table;

pub use table::{Treatment, UpVar, UPSTREAM};

use super::value::{Bool, Parse};
use super::SettingsError;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

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
    redis::redis(&r, &mut out)?;
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
pub(super) struct Reader<'a> {
    /// The process environment, injected.
    env: &'a HashMap<String, String>,
    /// Variables read by the mapping (so the generic "ignored" pass skips them).
    read: RefCell<BTreeSet<String>>,
}

impl Reader<'_> {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.read.borrow_mut().insert(name.to_owned());
        self.env
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn flag(&self, name: &str) -> Result<Option<bool>, SettingsError> {
        self.get(name)
            .map(|v| {
                Bool::parse(v).map_err(|e| SettingsError::Invalid(format!("{name}: '{v}' {e}")))
            })
            .transpose()
    }
}

pub(super) fn set(out: &mut Derived, name: &'static str, value: impl Into<String>, from: &str) {
    out.values.push((name, value.into(), from.to_owned()));
}

pub(super) fn refuse(var: &str, value: &str, why: &str) -> SettingsError {
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
            // Upstream's level is its own logs': libraries (h2, hyper, rustls, redis) stay at
            // info instead of flooding the log at debug.
            l @ ("debug" | "trace") => format!("info,sluice={l}"),
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
mod tests;
