//! The settings table: every setting declared once — name (settings-file key; `SLUICE_` + upper
//! case is its environment variable), parser, default, flag, upstream twin, help line. The
//! `Settings` struct, the command line, the file and environment readers and the docs tables
//! are all generated from it, so they cannot drift apart.

use super::value::*;
use super::{SettingsError, Values};

/// One row of the table, as the readers and the docs see it.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Field and settings-file key.
    pub name: &'static str,
    /// Long flag, without `--`.
    pub flag: &'static str,
    /// Value placeholder (`ADDR`, `DURATION`, …).
    pub hint: &'static str,
    /// Whether the flag may be given without a value (booleans).
    pub switch: bool,
    /// Default, as text the parser accepts (empty: none).
    pub default: &'static str,
    /// envoyproxy/ratelimit's variable(s) feeding this setting (empty: none).
    pub upstream: &'static str,
    /// One line for `--help` and the docs.
    pub help: &'static str,
}

impl Spec {
    /// The environment variable: `SLUICE_` + the name in upper case.
    pub fn env(&self) -> String {
        format!("SLUICE_{}", self.name.to_ascii_uppercase())
    }
}

/// Generates `Settings`, [`TABLE`] and the typed conversion from the rows below.
macro_rules! settings {
    ($( $(#[doc = $doc:literal])+ $name:ident: $p:ty = $default:literal,
        flag $flag:literal, up $up:literal, $help:literal; )*) => {
        /// Everything `sluice serve` needs, typed and validated (generated from the settings
        /// table in `src/settings/table.rs`).
        #[derive(Debug, Clone)]
        pub struct Settings {
            $( $(#[doc = $doc])+ pub $name: <$p as Parse>::Out, )*
            /// envoyproxy/ratelimit variables that were set but are not implemented and do not
            /// change decisions: logged once at start, so the operator knows.
            pub upstream_notes: Vec<String>,
        }

        /// Every setting, in documentation order.
        pub const TABLE: &[Spec] = &[ $( Spec {
            name: stringify!($name),
            flag: $flag,
            hint: <$p as Parse>::HINT,
            switch: <$p as Parse>::SWITCH,
            default: $default,
            upstream: $up,
            help: $help,
        } ),* ];

        impl Settings {
            /// Parses every setting from its winning source.
            pub(super) fn from_values(v: &Values) -> Result<Settings, SettingsError> {
                Ok(Settings {
                    $( $name: v.parse::<$p>(stringify!($name))?, )*
                    upstream_notes: Vec::new(),
                })
            }
        }
    };
}

settings! {
    // ---- listeners
    /// Where rules are read from when `config_type = file`.
    rules_dir: Path = "examples/rules", flag "rules",
        up "RUNTIME_ROOT, RUNTIME_SUBDIRECTORY, RUNTIME_APPDIRECTORY",
        "rule directory, one domain per file";
    /// gRPC listener: ShouldRateLimit, ext_authz, health, reflection.
    grpc_addr: Addr = "0.0.0.0:8081", flag "grpc-addr", up "GRPC_HOST, GRPC_PORT",
        "gRPC (ShouldRateLimit, ext_authz, health, reflection)";
    /// HTTP listener: `/healthcheck`, `/json`, `/rlconfig`, `/metrics`, `/admin/*`.
    http_addr: Addr = "0.0.0.0:8080", flag "http-addr", up "HOST, PORT",
        "HTTP: /healthcheck, /json, /rlconfig, /metrics, /admin/*";
    /// Upstream's debug port (`/rlconfig`, `/stats`), read by `egctl x config ratelimit`.
    debug_addr: OptAddr = "", flag "debug-addr", up "DEBUG_HOST, DEBUG_PORT",
        "debug port: /rlconfig, /stats (off; 0.0.0.0:6070 when run as ratelimit)";
    /// A metrics-only listener, where Envoy Gateway scrapes (`:19001`).
    prometheus_addr: OptAddr = "", flag "prometheus-addr",
        up "USE_PROMETHEUS, PROMETHEUS_ADDR", "metrics-only listener (off)";
    /// The path metrics are served on at `prometheus_addr`.
    prometheus_path: Text = "/metrics", flag "prometheus-path", up "PROMETHEUS_PATH",
        "path of the metrics-only listener";
    /// TLS on the gRPC port (Envoy Gateway always turns it on).
    grpc_tls: Bool = "false", flag "grpc-tls", up "GRPC_SERVER_USE_TLS",
        "serve gRPC over TLS";
    /// Server certificate chain (PEM), re-read when it changes.
    grpc_tls_cert: OptPath = "", flag "grpc-tls-cert", up "GRPC_SERVER_TLS_CERT",
        "server certificate (PEM)";
    /// Server key (PEM: RSA PKCS#1 or PKCS#8, EC).
    grpc_tls_key: OptPath = "", flag "grpc-tls-key", up "GRPC_SERVER_TLS_KEY",
        "server key (PEM: PKCS#1, PKCS#8 or EC)";
    /// CA certificates clients must present a certificate from (mutual TLS).
    grpc_tls_client_ca: OptPath = "", flag "grpc-tls-client-ca",
        up "GRPC_CLIENT_TLS_CACERT, GRPC_SERVER_TLS_CA_CERT",
        "require client certificates from this CA (none: no client auth)";
    /// A name the client certificate must carry as SAN.
    grpc_tls_client_san: OptText = "", flag "grpc-tls-client-san", up "GRPC_CLIENT_TLS_SAN",
        "SAN required in client certificates";

    // ---- where rules come from
    /// `file` (the rule directory) or `grpc_xds_sotw` (an xDS server).
    config_type: ConfigTypeChoice = "file", flag "config-type", up "CONFIG_TYPE",
        "file or grpc_xds_sotw";
    /// How often the rule directory is checked for changes.
    rules_poll_ms: Millis = "1000", flag "rules-poll-ms", up "",
        "how often the rule directory is checked for changes";
    /// Largest rule, xDS resource or ext_authz file, in bytes.
    rules_max_file_bytes: Int<u64> = "8388608", flag "rules-max-file-bytes", up "",
        "largest rule or ext_authz file (bytes); a bigger one is an invalid change";
    /// Merge files (or xDS resources) of the same domain instead of rejecting them.
    merge_domain_config: Bool = "false", flag "merge-domain-config", up "MERGE_DOMAIN_CONFIG",
        "merge rule files of the same domain";
    /// Serve before the first xDS config arrives (ShouldRateLimit then answers UNKNOWN).
    force_start_without_initial_config: Bool = "false", flag "force-start-without-initial-config",
        up "FORCE_START_WITHOUT_INITIAL_CONFIG", "serve before the first xDS config";
    /// The xDS (ADS) server.
    xds_server_url: Text = "localhost:18000", flag "xds-server-url",
        up "CONFIG_GRPC_XDS_SERVER_URL", "xDS server, host:port";
    /// The node id sent to the xDS server (its snapshots are keyed by it).
    xds_node_id: Text = "default", flag "xds-node-id", up "CONFIG_GRPC_XDS_NODE_ID",
        "xDS node id";
    /// Node metadata sent to the xDS server.
    xds_node_metadata: Pairs = "", flag "xds-node-metadata", up "CONFIG_GRPC_XDS_NODE_METADATA",
        "xDS node metadata, k=v,k2=v2";
    /// Extra gRPC headers on the xDS stream.
    xds_headers: HeaderPairs = "", flag "xds-headers",
        up "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "extra xDS request headers, k:v,k2:v2";
    /// TLS to the xDS server.
    xds_use_tls: Bool = "false", flag "xds-use-tls", up "CONFIG_GRPC_XDS_SERVER_USE_TLS",
        "TLS to the xDS server";
    /// Client certificate presented to the xDS server (mutual TLS).
    xds_client_tls_cert: OptPath = "", flag "xds-client-tls-cert",
        up "CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "client certificate for the xDS server (PEM)";
    /// Key of that client certificate.
    xds_client_tls_key: OptPath = "", flag "xds-client-tls-key",
        up "CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "client key for the xDS server (PEM)";
    /// CA certificates the xDS server's certificate must chain to (none: the system roots).
    xds_server_tls_ca: OptPath = "", flag "xds-server-tls-ca",
        up "CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "CA for the xDS server's certificate";
    /// The name the xDS server's certificate must carry (default: the URL's host).
    xds_server_tls_san: OptText = "", flag "xds-server-tls-san",
        up "CONFIG_GRPC_XDS_SERVER_TLS_SAN", "expected xDS server name";
    /// First wait before reconnecting a broken xDS stream (doubles, with jitter).
    xds_backoff_initial: Millis = "10s", flag "xds-backoff-initial",
        up "XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "first xDS reconnect wait";
    /// Longest wait between xDS reconnects.
    xds_backoff_max: Millis = "60s", flag "xds-backoff-max",
        up "XDS_CLIENT_BACKOFF_MAX_INTERVAL", "longest xDS reconnect wait";
    /// Largest xDS response accepted, in bytes.
    xds_max_message_bytes: Int<usize> = "4194304", flag "xds-max-message-bytes",
        up "XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES", "largest xDS response (bytes)";

    // ---- counter store
    /// Where counters live.
    backend: BackendChoice = "memory", flag "backend", up "BACKEND_TYPE, REDIS_TYPE, REDIS_URL",
        "counter store: memory, redis, redis_cluster, redis_sentinel";
    /// Comma-separated Redis URLs: shards, cluster seeds or sentinels.
    redis_nodes: Text = "", flag "redis-nodes",
        up "REDIS_URL, REDIS_SOCKET_TYPE, REDIS_AUTH, REDIS_TLS",
        "comma-separated redis://, rediss:// or redis+unix:// URLs";
    /// Deadline of one Redis call (Envoy's own deadline is typically 20 ms).
    redis_timeout: Millis = "10ms", flag "redis-timeout", up "",
        "deadline of one Redis call";
    /// Prepended to every Redis key.
    redis_key_prefix: Text = "", flag "redis-key-prefix", up "CACHE_KEY_PREFIX",
        "prefix of every Redis key";
    /// The primary's name for `redis_sentinel`.
    redis_sentinel_master: Text = "mymaster", flag "redis-sentinel-master",
        up "REDIS_URL (first entry)", "primary name for redis_sentinel";
    /// CA certificates trusted for `rediss://` (none: the system roots).
    redis_tls_ca_file: OptPath = "", flag "redis-tls-ca-file", up "REDIS_TLS_CACERT",
        "CA certificates (PEM) for rediss://";
    /// Client certificate presented to Redis over TLS.
    redis_tls_client_cert: OptPath = "", flag "redis-tls-client-cert",
        up "REDIS_TLS_CLIENT_CERT", "client certificate (PEM) for rediss://";
    /// Key of that client certificate.
    redis_tls_client_key: OptPath = "", flag "redis-tls-client-key",
        up "REDIS_TLS_CLIENT_KEY", "client key (PEM) for rediss://";
    /// When any descriptor of a request is over its limit, charge none of its counters.
    atomic_admission: Bool = "false", flag "atomic-admission",
        up "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT",
        "charge none of a request's counters when any is over";
    /// What answers for keys of an unavailable Redis shard.
    fallback: FallbackChoice = "local", flag "fallback", up "",
        "keys of an unavailable Redis shard: local, allow, deny";
    /// Replicas sharing each limit while deciding locally.
    fallback_replicas: Int<u32> = "1", flag "fallback-replicas", up "",
        "replicas sharing each limit in local fallback";
    /// Consecutive failures that open a shard's breaker.
    breaker_failures: Int<u32> = "3", flag "breaker-failures", up "",
        "consecutive failures opening a shard's breaker";
    /// First wait before probing an open shard; doubles per failed probe.
    breaker_open_ms: Millis = "500", flag "breaker-open-ms", up "",
        "first wait before probing an open shard";
    /// Longest wait between probes.
    breaker_max_open_ms: Millis = "5000", flag "breaker-max-open-ms", up "",
        "longest wait between probes";
    /// Cap on live in-memory counters (and slot tables).
    memory_max_keys: Int<usize> = "10000000", flag "memory-max-keys", up "",
        "cap on live in-memory counters";
    /// How often expired in-memory counters are reclaimed (bare numbers: seconds).
    memory_sweep_secs: Secs = "5", flag "memory-sweep-secs", up "",
        "how often expired in-memory counters are reclaimed";
    /// How often shared runtime overrides are re-read from Redis.
    overrides_poll_ms: Millis = "500", flag "overrides-poll-ms", up "",
        "how often runtime overrides are re-read from Redis";

    // ---- decisions and answers
    /// Rate-limit headers added to responses.
    response_headers: HeadersChoice = "off", flag "response-headers",
        up "LIMIT_RESPONSE_HEADERS_ENABLED", "off, ratelimit, draft10, all";
    /// Name of the limit header in `ratelimit` mode.
    response_header_limit: Text = "RateLimit-Limit", flag "response-header-limit",
        up "LIMIT_LIMIT_HEADER", "limit header name";
    /// Name of the remaining header in `ratelimit` mode.
    response_header_remaining: Text = "RateLimit-Remaining", flag "response-header-remaining",
        up "LIMIT_REMAINING_HEADER", "remaining header name";
    /// Name of the reset header in `ratelimit` mode.
    response_header_reset: Text = "RateLimit-Reset", flag "response-header-reset",
        up "LIMIT_RESET_HEADER", "reset header name";
    /// Global shadow mode: never answer OVER_LIMIT overall.
    shadow_mode: Bool = "false", flag "shadow-mode", up "SHADOW_MODE",
        "never answer OVER_LIMIT overall";
    /// `near_limit` counts hits above `floor(limit × ratio)`.
    near_limit_ratio: Float = "0.8", flag "near-limit-ratio", up "NEAR_LIMIT_RATIO",
        "near_limit counts hits above floor(limit × ratio)";

    // ---- operations
    /// Log filter (`info`, `sluice=debug`, …).
    log_level: Text = "info", flag "log-level", up "LOG_LEVEL", "log filter";
    /// `text` or `json`.
    log_format: LogFormatChoice = "text", flag "log-format", up "LOG_FORMAT", "text or json";
    /// OTLP/gRPC collector for tracing spans (needs the `otlp` cargo feature).
    otlp_endpoint: OptText = "", flag "otlp-endpoint",
        up "TRACING_ENABLED, OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTLP/gRPC collector for spans (otlp feature)";
    /// File holding the admin API's bearer token (none: the admin API works only on a
    /// loopback HTTP port).
    admin_token_file: OptPath = "", flag "admin-token-file", up "",
        "bearer token file for /admin/*";
    /// ext_authz API keys file (none: ext_authz off).
    authz_keys: OptPath = "", flag "authz-keys", up "",
        "ext_authz API keys file; enables Authorization/Check";
    /// ext_authz configuration file; goes with `authz_keys`.
    authz_config: OptPath = "", flag "authz-config", up "", "ext_authz configuration file";
    /// Time between reporting NOT_SERVING and closing the listener on SIGTERM, so load
    /// balancers stop sending first.
    shutdown_delay_ms: Millis = "0", flag "shutdown-delay-ms", up "",
        "on SIGTERM, time between NOT_SERVING and closing";

    // ---- bounds
    /// Most descriptors one request may carry (more: INVALID_ARGUMENT).
    max_descriptors: Int<usize> = "128", flag "max-descriptors", up "",
        "most descriptors per request";
    /// Most entries one descriptor may carry.
    max_entries: Int<usize> = "32", flag "max-entries", up "", "most entries per descriptor";
    /// Longest domain, entry key or value, in bytes.
    max_value_bytes: Int<usize> = "4096", flag "max-value-bytes", up "",
        "longest domain, entry key or value (bytes)";
    /// Largest encoded request (gRPC message, `/json` body), in bytes.
    max_request_bytes: Int<usize> = "1048576", flag "max-request-bytes", up "",
        "largest encoded request (bytes)";
    /// A connection with no request in flight for this long is closed.
    idle_timeout_ms: Millis = "300000", flag "idle-timeout-ms", up "",
        "close connections idle this long";
    /// A new connection must send its first request within this.
    header_read_timeout_ms: Millis = "10000", flag "header-read-timeout-ms", up "",
        "first request (or TLS handshake) on a connection within";
    /// HTTP/2 PING interval on both ports.
    keepalive_ms: Millis = "30000", flag "keepalive-ms", up "", "HTTP/2 keepalive PING interval";
    /// How long a keepalive PING may go unanswered.
    keepalive_timeout_ms: Millis = "10000", flag "keepalive-timeout-ms", up "",
        "keepalive PING answer within";
    /// Longest a request may take, body included: a client stalling mid-request cannot hold
    /// its stream (and what it buffered) for ever.
    request_timeout_ms: Millis = "30000", flag "request-timeout-ms", up "",
        "longest request, body included";
    /// Most connections open at once on each port; at the cap a port stops accepting.
    max_connections: Int<usize> = "10000", flag "max-connections", up "",
        "most open connections per port";
}
