//! `sluice-bench load --workload slots` against sluice with the bench rules: every acquire is
//! granted and every release frees the slot its pair took (none stray, none left held), so the
//! benchmark measures real acquire+release pairs. Counts only; speed is measured by
//! `scripts/bench`, never asserted here.

mod support;

use std::process::Command;
use support::*;

const BENCH: &str = env!("CARGO_BIN_EXE_sluice-bench");

fn bench_rules() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/rules/bench.yaml");
    std::fs::read_to_string(path).expect("read bench/rules/bench.yaml")
}

/// The value of `key=` in a `sluice-bench load` result line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

async fn bench(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BENCH)
            .arg("--threads")
            .arg("1")
            .arg("load")
            .args(&args)
            .output()
            .expect("run sluice-bench")
    })
    .await
    .expect("join")
}

fn args(target: std::net::SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["--target".to_owned(), target.to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_pairs_acquire_and_release_the_same_slot() {
    let s = TestServer::start(&[("bench.yaml", &bench_rules())], &[]).await;
    let loads = [
        "--connections",
        "2",
        "--streams",
        "4",
        "--warmup",
        "0",
        "--duration",
        "60",
        "--requests",
        "300",
        "--slot-users",
        "3",
    ];
    let out = bench(args(
        s.addr,
        &[&["--workload", "slots"][..], &loads].concat(),
    ))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.trim();
    assert_eq!(field(line, "workload"), "slots");
    assert_eq!(field(line, "requests"), "300", "{line}");
    assert_eq!(field(line, "errors"), "0", "{line}");
    assert_eq!(field(line, "over_limit"), "0", "{line}");
    for call in ["acquire", "release"] {
        let p50: f64 = field(line, &format!("{call}_p50_us")).parse().expect("µs");
        assert!(p50 > 0.0, "{line}");
    }
    // Each pair took a slot and gave the same one back; nothing is held afterwards. The loops
    // may have sent a few pairs beyond the 300 measured ones, never fewer.
    let m = s.metrics();
    let count = |needle: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(needle)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in {m}"))
    };
    let granted = count("sluice_concurrency_granted_total{rule=\"bench.slot\",waited=\"false\"}");
    let released =
        count("sluice_concurrency_releases_total{rule=\"bench.slot\",result=\"released\"}");
    assert!(granted >= 300, "{m}");
    assert_eq!(granted, released, "{m}");
    assert_eq!(
        count("sluice_concurrency_in_flight{rule=\"bench.slot\"}"),
        0
    );
    assert!(!m.contains("result=\"stray\""), "{m}");
    assert!(!m.contains("sluice_concurrency_rejected_total"), "{m}");

    // The plain check workload still names itself; slots refuse shapes they cannot send.
    let out = bench(args(s.addr, &loads)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(field(stdout.trim(), "workload"), "check");
    assert!(!stdout.contains("acquire_p50_us"), "{stdout}");
    for bad in [&["--descriptors", "2"][..], &["--distinct-keys", "10"]] {
        let out = bench(args(s.addr, &[&["--workload", "slots"][..], bad].concat())).await;
        assert!(!out.status.success(), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("sluice-bench: "), "{err}");
    }
    s.stop().await;
}
