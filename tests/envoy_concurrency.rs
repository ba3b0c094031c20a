//! In-flight limits through a real Envoy 1.40, configured by `deploy/envoy/envoy-concurrency.yaml`
//! (unchanged but for its ports), asking the real sluice binary serving `deploy/envoy/rules`
//! (memory store), in front of a slow upstream (`sluice-bench upstream`, each request as late as
//! its `x-delay-ms` header says): a user's 4th concurrent request is refused with 429 while 3
//! are in flight (`/`, queue 0), and its stream-done release frees nothing; once the 3 finish,
//! their releases have freed all 3 slots; on `/jobs` (queue 1) the 4th waits and is served when
//! one of the 3 finishes, and a 5th finds the queue full.
//!
//! Nothing here waits a fixed time to see a result: the tests poll sluice's `/metrics` (slots
//! held, waiters, releases) with a bound. The upstream delays only keep requests in flight long
//! enough to act while they are; each test checks that they still were.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::envoy::{
    http_get, http_request, listener_addr, logs, render_template, start_envoy, start_sluice,
    start_upstream, Proc, Response, WAIT,
};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

const TEMPLATE: &str = "deploy/envoy/envoy-concurrency.yaml";
/// sluice's stats keys of the two rules in `deploy/envoy/rules/inflight.yaml`.
const API_RULE: &str = "inflight.route_api.user";
const JOBS_RULE: &str = "inflight.route_jobs.user";
/// How long a request that must stay in flight takes upstream: enough to send a few requests
/// through Envoy meanwhile (each test checks it was), short enough to keep the tests quick.
const HOLD_MS: &str = "800";

/// Envoy on the template, sluice and the slow upstream; every process stops when it is dropped.
struct Inflight {
    envoy: Proc,
    sluice: Proc,
    upstream: Proc,
    /// Envoy's listener `ingress`.
    listener: SocketAddr,
    /// Envoy's admin port.
    admin: SocketAddr,
    /// sluice's HTTP port (`/metrics`).
    sluice_http: SocketAddr,
    /// Logs and the rendered config; declared last so it is removed after the processes stop.
    _dir: tempfile::TempDir,
}

impl Inflight {
    async fn start() -> Inflight {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut upstream, upstream_addr) = start_upstream(dir.path()).await;
        let (mut sluice, sluice_grpc, sluice_http) =
            start_sluice(dir.path(), &["--rules", "deploy/envoy/rules"]).await;
        // The filter's timeout stays as shipped (12s): it must outlast the queue_timeout.
        let config = render_template(
            TEMPLATE,
            &[
                ("LISTEN_PORT", "0".to_owned()),
                ("ADMIN_PORT", "0".to_owned()),
                ("SLUICE_PORT", sluice_grpc.port().to_string()),
                ("BACKEND_PORT", upstream_addr.port().to_string()),
            ],
        );
        let (mut envoy, admin) =
            start_envoy(dir.path(), &config, &mut [&mut sluice, &mut upstream]).await;
        let listener = listener_addr(admin, "ingress")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[&mut envoy, &mut sluice])));
        Inflight {
            envoy,
            sluice,
            upstream,
            listener,
            admin,
            sluice_http,
            _dir: dir,
        }
    }

    /// Every process's log, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- envoy log ---\n{}\n--- sluice log ---\n{}\n--- upstream log ---\n{}",
            self.envoy.log(),
            self.sluice.log(),
            self.upstream.log()
        )
    }

    /// `GET path` through Envoy as `user`, answered `delay_ms` late by the upstream.
    async fn get(&self, path: &str, user: &str, delay_ms: &str) -> Response {
        request(self.listener, path, user, delay_ms)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// The same, on its own task: a request that stays in flight while the test goes on.
    fn spawn_get(&self, path: &str, user: &str, delay_ms: &str) -> JoinHandle<Response> {
        let (listener, path, user, delay) = (
            self.listener,
            path.to_owned(),
            user.to_owned(),
            delay_ms.to_owned(),
        );
        tokio::spawn(async move {
            request(listener, &path, &user, &delay)
                .await
                .unwrap_or_else(|e| panic!("{path} as {user}: {e}"))
        })
    }

    /// The value of one series of sluice's `/metrics`, e.g.
    /// `sluice_concurrency_queued{rule="inflight.route_jobs.user"}`; absent: 0.
    async fn metric(&self, series: &str) -> f64 {
        let r = http_get(self.sluice_http, "/metrics", &[])
            .await
            .unwrap_or_else(|e| panic!("/metrics: {e}\n{}", self.logs()));
        r.body
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(name, _)| *name == series)
            .map_or(0.0, |(_, v)| v.trim().parse().unwrap_or(f64::NAN))
    }

    /// Polls `series` until it reads `value`; panics after [`WAIT`] with what it read.
    async fn wait_metric(&self, series: &str, value: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.metric(series).await;
            if now == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} = {now} after {WAIT:?}, expected {value}\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// A counter of the ratelimit filter, `cluster.backend.ratelimit.<name>`: one count per
    /// request-time decision (`ok`, `over_limit`, `error`, `failure_mode_allowed`).
    async fn filter_stat(&self, name: &str) -> u64 {
        support::envoy::envoy_stat(self.admin, &format!("cluster.backend.ratelimit.{name}"))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Every decision Envoy applied came from sluice: `ok` and `over_limit` as expected, and no
    /// call failed (a failed call would let the request through: fail open).
    async fn assert_decisions(&self, ok: u64, over_limit: u64) {
        for (name, expected) in [
            ("ok", ok),
            ("over_limit", over_limit),
            ("error", 0),
            ("failure_mode_allowed", 0),
        ] {
            assert_eq!(
                self.filter_stat(name).await,
                expected,
                "cluster.backend.ratelimit.{name}\n{}",
                self.logs()
            );
        }
    }

    fn assert_served(&self, r: &Response, what: &str) {
        assert_eq!(r.status, 200, "{what}: {r:?}\n{}", self.logs());
        assert_eq!(r.body, "ok", "{what}: {r:?}");
    }

    fn assert_refused(&self, r: &Response, what: &str) {
        assert_eq!(r.status, 429, "{what}: {r:?}\n{}", self.logs());
        assert_eq!(
            r.header("x-envoy-ratelimited"),
            Some("true"),
            "{what}: {r:?}"
        );
        assert_ne!(r.body, "ok", "the upstream must not see it: {r:?}");
    }
}

async fn request(
    listener: SocketAddr,
    path: &str,
    user: &str,
    delay_ms: &str,
) -> Result<Response, String> {
    http_request(
        listener,
        "GET",
        path,
        &[("x-user", user), ("x-delay-ms", delay_ms)],
        None,
    )
    .await
}

/// `sluice_concurrency_<name>{rule="<rule>"<extra>}`.
fn series(name: &str, rule: &str, extra: &str) -> String {
    format!("sluice_concurrency_{name}{{rule=\"{rule}\"{extra}}}")
}

/// Asserts every request of `holders` is still in flight (the test acted while they were).
fn assert_in_flight(holders: &[JoinHandle<Response>], stack: &Inflight, what: &str) {
    assert!(
        holders.iter().all(|h| !h.is_finished()),
        "a request holding a slot finished before {what}: the machine is too slow for \
         HOLD_MS ({HOLD_MS} ms)\n{}",
        stack.logs()
    );
}

async fn finish(holders: Vec<JoinHandle<Response>>, stack: &Inflight, what: &str) {
    for (i, h) in holders.into_iter().enumerate() {
        let r = h.await.expect("request task");
        stack.assert_served(&r, &format!("{what} {i}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_fourth_request_is_refused_and_its_release_frees_nothing() {
    let stack = Inflight::start().await;
    let in_flight = series("in_flight", API_RULE, "");

    // alice: 3 slow requests take the 3 slots of `/`.
    let holders: Vec<_> = (0..3)
        .map(|_| stack.spawn_get("/", "alice", HOLD_MS))
        .collect();
    stack.wait_metric(&in_flight, 3.0).await;

    // The 4th is refused at once (queue 0): 429 from Envoy, the upstream never sees it.
    let fourth = stack.get("/", "alice", "0").await;
    stack.assert_refused(&fourth, "alice's 4th request");
    // Envoy makes the stream-done call for the refused request too, releasing its lease id,
    // which holds no slot: a stray release, nothing freed.
    let stray = series("releases_total", API_RULE, ",result=\"stray\"");
    stack.wait_metric(&stray, 1.0).await;
    assert_eq!(stack.metric(&in_flight).await, 3.0, "{}", stack.logs());
    // So a 5th is refused too: the refused request did not free a holder's slot.
    let fifth = stack.get("/", "alice", "0").await;
    stack.assert_refused(&fifth, "alice's 5th request, after the 4th's release");
    // Another user has slots of their own.
    let bob = stack.get("/", "bob", "0").await;
    stack.assert_served(&bob, "bob while alice is full");
    assert_in_flight(&holders, &stack, "the 5th request was refused");

    finish(holders, &stack, "alice's holder").await;
    stack.wait_metric(&stray, 2.0).await;
    // The holders' and bob's releases free their slots: released 4, nothing held.
    let released = series("releases_total", API_RULE, ",result=\"released\"");
    stack.wait_metric(&released, 4.0).await;
    stack.wait_metric(&in_flight, 0.0).await;

    // All 3 slots are back: 3 concurrent requests are served again.
    let again: Vec<_> = (0..3).map(|_| stack.spawn_get("/", "alice", "0")).collect();
    finish(again, &stack, "alice after the releases").await;
    stack.wait_metric(&released, 7.0).await;

    // 3 + bob + 3 admitted, 2 refused; no call failed open.
    stack.assert_decisions(7, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_waits_for_a_slot_and_gets_it_when_one_finishes() {
    let stack = Inflight::start().await;
    let in_flight = series("in_flight", JOBS_RULE, "");
    let queued = series("queued", JOBS_RULE, "");

    // carol: one short and two long jobs take the 3 slots of /jobs.
    let short = stack.spawn_get("/jobs", "carol", HOLD_MS);
    let long: Vec<_> = (0..2)
        .map(|_| stack.spawn_get("/jobs", "carol", "5000"))
        .collect();
    stack.wait_metric(&in_flight, 3.0).await;

    // The 4th waits (queue 1): sluice holds Envoy's call, the client has no answer yet.
    let waiter = stack.spawn_get("/jobs", "carol", "0");
    stack.wait_metric(&queued, 1.0).await;
    assert!(!waiter.is_finished(), "{}", stack.logs());
    // A 5th finds the queue full: refused at once.
    let fifth = stack.get("/jobs", "carol", "0").await;
    stack.assert_refused(&fifth, "carol's 5th job, queue full");
    assert_eq!(
        stack
            .metric(&series(
                "rejected_total",
                JOBS_RULE,
                ",reason=\"queue_full\""
            ))
            .await,
        1.0,
        "{}",
        stack.logs()
    );
    assert!(!short.is_finished(), "{}", stack.logs());
    assert!(!waiter.is_finished(), "{}", stack.logs());

    // The short job ends; its release hands the slot to the waiter, which is then served.
    let r = waiter.await.expect("waiter task");
    stack.assert_served(&r, "carol's waiting job");
    stack.assert_served(&short.await.expect("short job"), "carol's short job");
    // The slot it got was the short job's: the long jobs still run, and the only releases so
    // far are the short job's and (once it was served) the waiter's own.
    let released = series("releases_total", JOBS_RULE, ",result=\"released\"");
    stack.wait_metric(&released, 2.0).await;
    assert!(
        long.iter().all(|h| !h.is_finished()),
        "the long jobs were not meant to end yet\n{}",
        stack.logs()
    );
    assert_eq!(
        stack
            .metric(&series("granted_total", JOBS_RULE, ",waited=\"true\""))
            .await,
        1.0,
        "{}",
        stack.logs()
    );
    assert_eq!(stack.metric(&queued).await, 0.0, "{}", stack.logs());

    // 4 admitted (one after waiting), 1 refused; no call failed open. The long jobs are not
    // waited for: they end with the test.
    stack.assert_decisions(4, 1).await;
    for h in long {
        h.abort();
    }
}
