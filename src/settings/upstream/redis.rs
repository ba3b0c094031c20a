//! Upstream's Redis variables → `backend`, `redis_nodes` and the TLS files.

use super::{refuse, set, Derived, Reader};
use crate::settings::SettingsError;

pub(super) fn redis(r: &Reader, out: &mut Derived) -> Result<(), SettingsError> {
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
        // Without BACKEND_TYPE or REDIS_URL the memory store stays: say so if Redis was meant.
        for var in ["REDIS_SOCKET_TYPE", "REDIS_TYPE", "REDIS_AUTH", "REDIS_TLS"] {
            if r.get(var).is_some() {
                out.notes.push(format!("{var} is set but ignored: no REDIS_URL or BACKEND_TYPE, so counters stay in memory"));
            }
        }
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
            if tls {
                return Err(refuse(
                    "REDIS_TLS",
                    "true",
                    "with REDIS_TYPE=SENTINEL sluice cannot reach the primary over TLS yet",
                ));
            }
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
                // Like the TCP form: "pass" or "user:pass" (split at the first colon).
                let pass = auth
                    .map(|a| match a.split_once(':') {
                        Some((user, pass)) => {
                            format!("?user={}&pass={}", encode(user), encode(pass))
                        }
                        None => format!("?pass={}", encode(a)),
                    })
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
