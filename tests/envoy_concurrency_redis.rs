//! In-flight limits through a real Envoy 1.40 (`deploy/envoy/envoy-concurrency.yaml`) with
//! slots in a real redis-server: sluice is killed while a user's 3 requests are in flight and
//! restarted on the same port. The slots survive the crash (they live in Redis: a 4th request
//! is still refused), and since the releases of the crashed calls are lost, the slots come back
//! when their `lease` ends — not before, and without any release.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::envoy::{
    http_get, http_request, listener_addr, logs, render_template, start_envoy, start_upstream,
    wait_for, Proc, Response, ROOT, SLUICE,
};
use support::redis::RedisServer;
use tokio::time::{sleep, Instant};

/// `deploy/envoy/rules/inflight.yaml`'s API rule with a 3 s lease.
const RULES: &str = "
domain: inflight
descriptors:
  - key: route
    value: api
    descriptors:
      - key: user
        concurrency: {max: 3, queue: 0, lease: 3s, lease_id: request_id}
";
const LEASE: Duration = Duration::from_secs(3);

/// Starts sluice on `grpc` (the port Envoy's config names) with the slots in `redis`.
async fn sluice(
    name: &'static str,
    dir: &std::path::Path,
    grpc: SocketAddr,
    rules: &str,
    redis: &str,
) -> (Proc, SocketAddr) {
    let grpc = grpc.to_string();
    let mut p = Proc::spawn(
        name,
        Command::new(SLUICE).current_dir(ROOT).args([
            "--grpc-addr",
            &grpc,
            "--http-addr",
            "127.0.0.1:0",
            "--rules",
            rules,
            "--backend",
            "redis",
            "--redis-nodes",
            redis,
            "--redis-timeout",
            "1s",
        ]),
        dir,
    );
    let log = dir.join(format!("{name}.log"));
    let http = wait_for("sluice to listen", &mut [&mut p], || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let http: Option<SocketAddr> = text
            .lines()
            .find_map(|l| l.split("listening http=").nth(1))
            .and_then(|a| a.trim().parse().ok());
        let ready = text.contains("listening grpc=");
        async move { http.filter(|_| ready) }
    })
    .await;
    (p, http)
}

async fn get(listener: SocketAddr, user: &str, delay_ms: &str) -> Response {
    http_request(
        listener,
        "GET",
        "/",
        &[("x-user", user), ("x-delay-ms", delay_ms)],
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("GET / as {user}: {e}"))
}

async fn in_flight(http: SocketAddr) -> String {
    http_get(http, "/metrics", &[])
        .await
        .map(|r| r.body)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_outlive_a_crashed_sluice_and_return_after_their_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("inflight.yaml"), RULES).expect("rules");
    let rules = rules.display().to_string();
    let redis = RedisServer::start();
    let url = redis.url();
    let grpc: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr")
    };
    let (mut upstream, upstream_addr) = start_upstream(dir.path()).await;
    let (mut first, first_http) = sluice("sluice", dir.path(), grpc, &rules, &url).await;
    let config = render_template(
        "deploy/envoy/envoy-concurrency.yaml",
        &[
            ("LISTEN_PORT", "0".to_owned()),
            ("ADMIN_PORT", "0".to_owned()),
            ("SLUICE_PORT", grpc.port().to_string()),
            ("BACKEND_PORT", upstream_addr.port().to_string()),
        ],
    );
    let (mut envoy, admin) =
        start_envoy(dir.path(), &config, &mut [&mut first, &mut upstream]).await;
    let listener = listener_addr(admin, "ingress")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[&mut envoy, &mut first])));

    // Three slow requests take alice's 3 slots (in Redis).
    let taken = Instant::now();
    let holders: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move {
                // Their fate after the crash is not this test's subject.
                let _ = http_request(
                    listener,
                    "GET",
                    "/",
                    &[("x-user", "alice"), ("x-delay-ms", "8000")],
                    None,
                )
                .await;
            })
        })
        .collect();
    let needle = "sluice_concurrency_in_flight{rule=\"inflight.route_api.user\"} 3";
    while !in_flight(first_http).await.contains(needle) {
        assert!(
            taken.elapsed() < Duration::from_secs(2),
            "3 slots never taken\n{}",
            logs(&[&mut envoy, &mut first])
        );
        sleep(Duration::from_millis(10)).await;
    }

    // Crash and restart on the same port, while the 3 are still in flight.
    first.kill();
    let (mut second, _) = sluice("sluice2", dir.path(), grpc, &rules, &url).await;
    assert!(
        taken.elapsed() < LEASE,
        "restart took too long for this test: {:?}",
        taken.elapsed()
    );
    let r = get(listener, "alice", "0").await;
    assert_eq!(
        r.status,
        429,
        "the slots were lost with the process: {r:?}\n{}",
        logs(&[&mut envoy, &mut second])
    );
    assert!(taken.elapsed() < LEASE);

    // No release comes (they died with the first process); the leases end after 3 s.
    let served = loop {
        let r = get(listener, "alice", "0").await;
        if r.status == 200 {
            break taken.elapsed();
        }
        assert_eq!(r.status, 429, "{r:?}");
        assert!(
            taken.elapsed() < Duration::from_secs(7),
            "slots never came back\n{}",
            logs(&[&mut envoy, &mut second])
        );
        sleep(Duration::from_millis(50)).await;
    };
    println!("slots back {served:?} after they were taken (lease {LEASE:?})");
    assert!(
        served >= LEASE - Duration::from_millis(100),
        "back before the lease ended: {served:?}"
    );
    for h in holders {
        h.abort();
    }
    drop(redis);
}
