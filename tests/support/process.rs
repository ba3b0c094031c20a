//! The real `sluice` binary as a child process, its addresses read from its log, killed on drop.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// A running sluice process.
pub struct SluiceProcess {
    /// Where gRPC listens.
    pub grpc: SocketAddr,
    /// Where the HTTP admin port listens.
    pub http: SocketAddr,
    /// Everything it logged on stdout so far.
    log: Arc<Mutex<String>>,
    child: Child,
}

impl SluiceProcess {
    /// Starts `sluice` with `args` (plus loopback listeners on free ports) and waits for both
    /// listening lines.
    pub fn start(args: &[&str]) -> SluiceProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sluice");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        // Keep draining the log after start-up so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut all) = sink.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
                for (tag, what) in [("listening http=", "http"), ("listening grpc=", "grpc")] {
                    if let Some(rest) = line.split(tag).nth(1) {
                        let _ = tx.send((what, rest.trim().to_owned()));
                    }
                }
            }
        });
        let (mut grpc, mut http) = (None, None);
        while grpc.is_none() || http.is_none() {
            let Ok((what, addr)) = rx.recv_timeout(Duration::from_secs(20)) else {
                let _ = child.kill();
                panic!("sluice {args:?} did not log its listening addresses");
            };
            let addr: SocketAddr = addr.parse().expect("an address in the listening line");
            if what == "grpc" {
                grpc = Some(addr);
            } else {
                http = Some(addr);
            }
        }
        SluiceProcess {
            grpc: grpc.expect("grpc address"),
            http: http.expect("http address"),
            log,
            child,
        }
    }

    /// Its resident set size in KiB (`VmRSS` from `/proc`), 0 if unreadable.
    #[allow(dead_code)]
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `-HUP`).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then waits for it to exit (its log is complete afterwards).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        // Let the reader thread take the last lines.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl SluiceProcess {
    /// SIGTERM, then waits at most `limit` for it to exit; `false` if it is still running.
    pub fn terminate_within(&mut self, limit: Duration) -> bool {
        self.signal("-TERM");
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
