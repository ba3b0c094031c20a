//! The `sluice` binary: bad flags exit 64 with one line, `listening grpc=` is logged once it
//! accepts calls, invalid rules stop start-up with file/path/reason, `check-config` validates.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .output()
        .expect("run sluice")
}

#[test]
fn bad_flag_exits_64_with_one_line() {
    for args in [
        &["--no-such-flag"][..],
        &["--grpc-addr", "not-an-address"],
        &["--response-headers", "sometimes"],
        &["--backend", "etcd"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("sluice: "), "{err}");
    }
}

#[test]
fn bad_env_setting_exits_64() {
    let out = Command::new(BIN)
        .env("SLUICE_GRPC_ADDR", "nope")
        .output()
        .expect("run sluice");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("grpc_addr"));
}

#[test]
fn help_exits_zero() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--rules"));
}

#[test]
fn check_config_reports_file_path_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("ok.yaml"),
        "domain: a\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: 1}}\n",
    )
    .expect("write");
    let ok = run(&["check-config", &dir.path().to_string_lossy()]);
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("domain 'a'"));

    std::fs::write(
        dir.path().join("bad.yaml"),
        "domain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
    )
    .expect("write");
    let bad = run(&["check-config", &dir.path().to_string_lossy()]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(
            "bad.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'fortnight'"
        ),
        "{err}"
    );
}

#[test]
fn invalid_rules_stop_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("x.yaml"),
        "domain: x\ndescriptors:\n  - {key: k, ratelimit: {}}\n",
    )
    .expect("write");
    let out = run(&[
        "--rules",
        &dir.path().to_string_lossy(),
        "--grpc-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("x.yaml: descriptors[0].ratelimit: config error, unknown key 'ratelimit'"),
        "{err}"
    );
}

#[test]
fn logs_listening_line_then_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice");
    let stdout = child.stdout.take().expect("stdout");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut addr = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("log line");
        if let Some(rest) = line.split("listening grpc=").nth(1) {
            addr = Some(rest.trim().to_string());
            break;
        }
        assert!(Instant::now() < deadline, "no listening line");
    }
    let addr: std::net::SocketAddr = addr.expect("listening line").parse().expect("an address");
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    std::net::TcpStream::connect(addr).expect("accepts connections");
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "graceful exit on SIGTERM");
}
