//! Settings: precedence, parsing, upstream variables, errors that name the setting.

use super::*;
use crate::service::response::HeaderMode;

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
    assert_eq!(s.redis_timeout, std::time::Duration::from_millis(25));
    let e = serve(&["--backend", "redis"], &[]).expect_err("no nodes");
    assert!(e.to_string().contains("redis_nodes"), "{e}");
    let e = serve(&["--redis-timeout", "soon"], &[]).expect_err("bad timeout");
    assert!(e.to_string().contains("redis_timeout"), "{e}");
    let e = serve(&["--backend", "redis", "--redis-nodes", "http://x"], &[]).expect_err("bad url");
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

#[test]
fn upstream_twins_lose_to_sluice_names() {
    let s = serve(
        &[],
        &[
            ("GRPC_PORT", "9001"),
            ("NEAR_LIMIT_RATIO", "0.5"),
            ("SLUICE_NEAR_LIMIT_RATIO", "0.9"),
            ("REDIS_URL", "127.0.0.1:6379"),
            ("REDIS_SOCKET_TYPE", "tcp"),
        ],
    )
    .expect("valid");
    assert_eq!(s.grpc_addr.to_string(), "0.0.0.0:9001");
    assert_eq!(s.near_limit_ratio, 0.9);
    assert_eq!(s.backend, Backend::Redis);
    assert_eq!(s.redis_node_list(), ["redis://127.0.0.1:6379"]);
    let s = serve(
        &[],
        &[
            ("REDIS_URL", "127.0.0.1:6379"),
            ("SLUICE_BACKEND", "memory"),
        ],
    )
    .expect("valid");
    assert_eq!(s.backend, Backend::Memory);
}

#[test]
fn envoy_gateway_environment() {
    let env: HashMap<String, String> = [
        ("RUNTIME_ROOT", "/data"),
        ("RUNTIME_SUBDIRECTORY", "ratelimit"),
        ("RUNTIME_IGNOREDOTFILES", "true"),
        ("RUNTIME_WATCH_ROOT", "false"),
        ("LOG_LEVEL", "info"),
        ("USE_STATSD", "false"),
        ("CONFIG_TYPE", "GRPC_XDS_SOTW"),
        ("CONFIG_GRPC_XDS_SERVER_URL", "envoy-gateway:18001"),
        ("CONFIG_GRPC_XDS_NODE_ID", "envoy-ratelimit"),
        ("GRPC_SERVER_USE_TLS", "true"),
        ("GRPC_SERVER_TLS_CERT", "/certs/tls.crt"),
        ("GRPC_SERVER_TLS_KEY", "/certs/tls.key"),
        ("GRPC_SERVER_TLS_CA_CERT", "/certs/ca.crt"),
        ("CONFIG_GRPC_XDS_SERVER_USE_TLS", "true"),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "/certs/tls.crt"),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "/certs/tls.key"),
        ("CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "/certs/ca.crt"),
        ("FORCE_START_WITHOUT_INITIAL_CONFIG", "true"),
        ("REDIS_SOCKET_TYPE", "tcp"),
        ("REDIS_URL", "redis.redis-system.svc.cluster.local:6379"),
        ("USE_PROMETHEUS", "true"),
        ("PROMETHEUS_ADDR", ":19001"),
        ("PROMETHEUS_MAPPER_YAML", "/etc/statsd-exporter/conf.yaml"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let s = match parse(["/bin/ratelimit"], &env).expect("valid") {
        Invocation::Serve(s) => *s,
        other => panic!("expected serve, got {other:?}"),
    };
    assert_eq!(s.config_type, ConfigType::GrpcXdsSotw);
    assert_eq!(s.xds_server_url, "envoy-gateway:18001");
    assert_eq!(s.xds_node_id, "envoy-ratelimit");
    assert!(s.grpc_tls && s.xds_use_tls && s.force_start_without_initial_config);
    assert_eq!(s.grpc_tls_client_ca, Some(PathBuf::from("/certs/ca.crt")));
    assert_eq!(s.backend, Backend::Redis);
    assert_eq!(
        s.prometheus_addr.map(|a| a.to_string()),
        Some("0.0.0.0:19001".into())
    );
    assert_eq!(s.debug_addr.map(|a| a.port()), Some(6070));
    assert_eq!(s.rules_dir, PathBuf::from("/data/ratelimit/config"));
    assert_eq!(s.upstream_notes.len(), 1, "{:?}", s.upstream_notes);
}

#[test]
fn refused_upstream_variables_fail_with_the_name() {
    let e = serve(&[], &[("BACKEND_TYPE", "memcache")]).expect_err("refused");
    assert!(e.to_string().contains("BACKEND_TYPE"), "{e}");
    let e = serve(&[], &[("GRPC_PORT", "http")]).expect_err("bad port");
    assert!(
        e.to_string().contains("grpc_addr") && e.to_string().contains("GRPC_PORT"),
        "{e}"
    );
}

#[test]
fn durations_are_typed() {
    let s = serve(&["--rules-poll-ms", "250", "--memory-sweep-secs", "2"], &[]).expect("valid");
    assert_eq!(s.rules_poll_ms, std::time::Duration::from_millis(250));
    assert_eq!(s.memory_sweep_secs, std::time::Duration::from_secs(2));
    let s = serve(&["--request-timeout-ms", "1.5s"], &[]).expect("valid");
    assert_eq!(s.request_timeout_ms, std::time::Duration::from_millis(1500));
}

#[test]
fn every_setting_has_a_flag_env_and_file_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for spec in TABLE {
        if spec.default.is_empty() || spec.name == "backend" {
            continue;
        }
        let flag = format!("--{}={}", spec.flag, spec.default);
        serve(&[&flag], &[]).unwrap_or_else(|e| panic!("{flag}: {e}"));
        serve(&[], &[(&spec.env(), spec.default)])
            .unwrap_or_else(|e| panic!("{}: {e}", spec.env()));
        let file = dir.path().join("s.toml");
        std::fs::write(&file, format!("{} = \"{}\"\n", spec.name, spec.default)).expect("write");
        serve(&["--config", &file.to_string_lossy()], &[])
            .unwrap_or_else(|e| panic!("file {}: {e}", spec.name));
    }
}
