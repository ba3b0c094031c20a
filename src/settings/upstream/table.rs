//! The table of envoyproxy/ratelimit's variables and what sluice does with each (rendered in
//! docs/settings.md and README by [`crate::settings::docs`]).

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
    ("REDIS_TLS", H, "`rediss://` URLs (refused with `SENTINEL`)"),
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
