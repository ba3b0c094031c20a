//! Hot reload: a ConfigMap-style `..data` symlink swap and a plain edit + SIGHUP both take
//! effect without a restart; counters survive; an invalid change keeps the old rules and is
//! counted in `ratelimit_service_config_load_error`.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

fn rules(limit: u32) -> String {
    format!("domain: hot\ndescriptors:\n  - {{key: k, rate_limit: {{unit: hour, requests_per_unit: {limit}}}}}\n")
}

/// Writes `text` as a new ConfigMap version and swaps `..data` to it atomically, as kubelet does.
fn configmap_update(dir: &Path, version: &str, text: &str) {
    let v = dir.join(version);
    std::fs::create_dir(&v).expect("version dir");
    std::fs::write(v.join("rl.yaml"), text).expect("write");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
}

/// Calls until the reported limit is `want` (or 5 s pass); returns the last response summary.
async fn wait_for_limit(s: &TestServer, want: u32, hits: u64) -> (Code, u32) {
    let mut c = s.client().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = call(&mut c, req("hot", vec![desc_hits(&[("k", "v")], hits)])).await;
        let st = &r.statuses[0];
        if st.current_limit.as_ref().map(|l| l.requests_per_unit) == Some(want) {
            return (code(st), st.limit_remaining);
        }
        assert!(
            Instant::now() < deadline,
            "limit never became {want}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    configmap_update(dir.path(), "..2026_11_23_v1", &rules(2));
    std::os::unix::fs::symlink("..data/rl.yaml", dir.path().join("rl.yaml")).expect("link");
    let root = dir.path().to_path_buf();
    let s = TestServer::start_in(dir, &["--rules-poll-ms", "100"]).await;

    assert_eq!(wait_for_limit(&s, 2, 1).await, (Code::Ok, 1));
    configmap_update(&root, "..2026_11_23_v2", &rules(5));
    // The counter survived the reload: 1 hit before, this check sees 5 - 1.
    assert_eq!(wait_for_limit(&s, 5, 0).await, (Code::Ok, 4));

    configmap_update(
        &root,
        "..2026_11_23_v3",
        "domain: hot\ndescriptors:\n  - {key: k, rate_limit: {unit: fortnight}}\n",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s
        .metrics()
        .lines()
        .any(|l| l.starts_with("ratelimit_service_config_load_error") && !l.ends_with(" 0"))
    {
        assert!(Instant::now() < deadline, "the bad file was never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        wait_for_limit(&s, 5, 0).await,
        (Code::Ok, 4),
        "last good rules still served"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_edit_and_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rl.yaml"), rules(3)).expect("write");
    let file = dir.path().join("rl.yaml");
    // Polling practically off: only SIGHUP can make this reload.
    let s = TestServer::start_in(dir, &["--rules-poll-ms", "3600000"]).await;
    assert_eq!(wait_for_limit(&s, 3, 0).await, (Code::Ok, 3));
    std::fs::write(&file, rules(7)).expect("edit");
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    assert_eq!(wait_for_limit(&s, 7, 0).await, (Code::Ok, 7));
    s.stop().await;
}
