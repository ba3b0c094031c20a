//! A real `redis-server` per test, on a free loopback port, killed on drop.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts a redis-server without persistence and waits until it answers PING.
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            if let Some(server) = RedisServer::start_on(free_port()) {
                return server;
            }
            // Lost a race for the port: try another.
        }
        panic!("redis-server did not start");
    }

    /// Starts a redis-server on `port`; `None` if it does not come up.
    pub fn start_on(port: u16) -> Option<RedisServer> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it: apt-get install -y redis-server)");
        let mut server = RedisServer { port, child };
        if server.wait_ready() {
            return Some(server);
        }
        let _ = server.child.kill();
        let _ = server.child.wait();
        None
    }

    /// SIGKILL: the node dies without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new server on the same port (after `kill`).
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(fresh) = RedisServer::start_on(self.port) {
                let old = std::mem::replace(self, fresh);
                std::mem::forget(old); // already dead and reaped
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{signal}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one inline command and returns the raw reply (enough for INFO and CONFIG).
    pub fn command(&self, cmd: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(format!("{cmd}\r\n").as_bytes()).expect("write");
        let mut r = BufReader::new(s);
        let mut first = String::new();
        r.read_line(&mut first).expect("reply");
        if let Some(len) = first.strip_prefix('$') {
            if len.trim() == "-1" {
                return String::new(); // nil
            }
            let len: usize = len.trim().parse().expect("bulk length");
            let mut body = vec![0u8; len + 2];
            std::io::Read::read_exact(&mut r, &mut body).expect("bulk body");
            return String::from_utf8_lossy(&body).into_owned();
        }
        first
    }

    /// The keys matching `pattern` (`KEYS`: test data only).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(format!("KEYS {pattern}\r\n").as_bytes())
            .expect("write");
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).expect("reply");
        let n: usize = line
            .trim()
            .strip_prefix('*')
            .and_then(|n| n.parse().ok())
            .expect("an array reply");
        (0..n)
            .map(|_| {
                line.clear();
                r.read_line(&mut line).expect("bulk length");
                line.clear();
                r.read_line(&mut line).expect("bulk body");
                line.trim_end().to_owned()
            })
            .collect()
    }

    /// Calls of a command since the last `CONFIG RESETSTAT`, from `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        self.stat(command, "calls")
    }

    /// Calls of a command that failed (e.g. EVALSHA meeting NOSCRIPT).
    pub fn failed_calls(&self, command: &str) -> u64 {
        self.stat(command, "failed_calls")
    }

    fn stat(&self, command: &str, field: &str) -> u64 {
        let info = self.command("INFO commandstats");
        let prefix = format!("cmdstat_{command}:");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"PING\r\n");
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("+PONG") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A free port `p` whose cluster bus port `p + 10000` is free too.
fn free_cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// A three-primary Redis Cluster on loopback, built with `redis-cli --cluster create`.
pub struct RedisCluster {
    /// The primaries (killed on drop).
    pub nodes: Vec<RedisServer>,
    /// Holds the nodes' cluster config files.
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them; waits for `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_cluster_port();
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf.to_string_lossy(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            let mut server = RedisServer { port, child };
            assert!(server.wait_ready(), "cluster node did not start");
            nodes.push(server);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| n.command("CLUSTER INFO").contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes, _dir: dir }
    }

    /// Seed URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A primary and one sentinel monitoring it as `mymaster` (quorum 1).
pub struct RedisSentinel {
    /// The monitored primary.
    pub primary: RedisServer,
    /// The sentinel process.
    pub sentinel: RedisServer,
    /// Holds the sentinel's (rewritten) config file.
    _dir: tempfile::TempDir,
}

impl RedisSentinel {
    /// Starts the primary and the sentinel; waits until the sentinel knows the primary.
    pub fn start() -> RedisSentinel {
        let primary = RedisServer::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster 1000\n",
                primary.port
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        let mut sentinel = RedisServer { port, child };
        assert!(sentinel.wait_ready(), "sentinel did not start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sentinel
            .command("SENTINEL get-master-addr-by-name mymaster")
            .starts_with('*')
        {
            assert!(Instant::now() < deadline, "sentinel never saw the primary");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisSentinel {
            primary,
            sentinel,
            _dir: dir,
        }
    }
}

/// Applies `ops` to the memory store and to Redis; they must answer alike, and Redis without
/// failing. Returns the outcomes.
pub async fn both(
    memory: &sluice::store::memory::MemoryStore,
    remote: &sluice::store::redis::RedisStore,
    ops: &[sluice::limiter::Op],
) -> Vec<sluice::limiter::Outcome> {
    use sluice::store::Store;
    let m = memory.apply(ops, None).await.expect("memory");
    let r = remote.apply(ops, None).await.expect("redis");
    assert!(r.iter().all(|o| !o.fallback), "the script failed: {r:?}");
    assert_eq!(m, r, "memory vs redis for {ops:?}");
    m
}
