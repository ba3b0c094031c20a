//! Process metrics under the names every Prometheus client library uses (`process_*`), which
//! Envoy Gateway's rate-limit dashboard queries (`process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`).
//!
//! Read from `/proc/self` at scrape time: `status` (memory), `stat` (CPU time, start tick),
//! `limits` (descriptor limit), the `fd` directory (open descriptors, counted up to a bound)
//! and, once per process, `/proc/stat`'s boot time. Every read is bounded and runs on the
//! blocking pool ([`scrape`]), never on a tokio worker. A value that cannot be read is left
//! out; on other systems than Linux there are no process series at all.

use std::fmt::Write as _;

/// Clock ticks per second of `/proc/<pid>/stat` times: the kernel reports them in `USER_HZ`,
/// which is 100 on every architecture Linux supports today (the Prometheus Go client assumes
/// the same), and `sysconf` is out of reach under `forbid(unsafe_code)`.
const USER_HZ: f64 = 100.0;

/// Most bytes read from one `/proc` file: `status`, `stat` and `limits` are a few KiB;
/// `/proc/stat` grows with the CPU count and interrupt lines.
const MAX_PROC_FILE_BYTES: u64 = 1 << 20;

/// Most entries of `/proc/self/fd` counted: a scrape never walks an unbounded directory
/// (Linux's default `nr_open` is this value, so the bound is rarely reached).
const MAX_FDS_COUNTED: usize = 1 << 20;

/// One reading of the process's figures; `None`: unreadable (or not Linux), not shown.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// `VmRSS`: memory the process holds in RAM, in bytes.
    pub resident_bytes: Option<u64>,
    /// `VmSize`: its virtual address space, in bytes.
    pub virtual_bytes: Option<u64>,
    /// User plus system CPU time since start, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors (at most [`MAX_FDS_COUNTED`]).
    pub open_fds: Option<u64>,
    /// The soft limit on open descriptors (`None` when unlimited).
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// The process series as Prometheus text (HELP and TYPE lines included), read on the blocking
/// pool; "" when nothing could be read.
///
/// Scrapes are unauthenticated: at most one read runs at a time and a reading is reused for
/// [`FRESH_FOR`], so a flood of scrapes costs one blocking-pool thread, not one each.
pub async fn scrape() -> String {
    static CACHE: std::sync::OnceLock<tokio::sync::Mutex<Option<(std::time::Instant, String)>>> =
        std::sync::OnceLock::new();
    let mut cached = CACHE
        .get_or_init(|| tokio::sync::Mutex::new(None))
        .lock()
        .await;
    if let Some((at, text)) = cached.as_ref() {
        if at.elapsed() < FRESH_FOR {
            return text.clone();
        }
    }
    let text = tokio::task::spawn_blocking(|| render(&read()))
        .await
        .unwrap_or_default();
    *cached = Some((std::time::Instant::now(), text.clone()));
    text
}

/// How long one reading of `/proc/self` serves scrapes.
const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads the figures now (blocking: a few small file reads).
#[cfg(target_os = "linux")]
pub fn read() -> ProcessStats {
    use std::path::Path;
    let (cpu_ticks, start_tick) = read_small(Path::new("/proc/self/stat"))
        .and_then(|t| parse_stat(&t))
        .map_or((None, None), |(cpu, start)| (Some(cpu), Some(start)));
    let (resident_kib, virtual_kib) = read_small(Path::new("/proc/self/status"))
        .map_or((None, None), |t| {
            (status_kib(&t, "VmRSS:"), status_kib(&t, "VmSize:"))
        });
    ProcessStats {
        resident_bytes: resident_kib.map(|k| k.saturating_mul(1024)),
        virtual_bytes: virtual_kib.map(|k| k.saturating_mul(1024)),
        cpu_seconds: cpu_ticks.map(|t| t as f64 / USER_HZ),
        open_fds: count_fds(),
        max_fds: read_small(Path::new("/proc/self/limits")).and_then(|t| parse_max_fds(&t)),
        start_time_seconds: boot_time()
            .zip(start_tick)
            .map(|(boot, tick)| boot as f64 + tick as f64 / USER_HZ),
    }
}

/// Not Linux: no `/proc`, no process series.
#[cfg(not(target_os = "linux"))]
pub fn read() -> ProcessStats {
    ProcessStats::default()
}

/// The series of `stats` that could be read, in Prometheus text format.
pub fn render(stats: &ProcessStats) -> String {
    let mut out = String::new();
    let mut series = |name: &str, kind: &str, help: &str, value: Option<String>| {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        }
    };
    let int = |v: Option<u64>| v.map(|v| v.to_string());
    let float = |v: Option<f64>| v.map(|v| v.to_string());
    series(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time this process has used, in seconds.",
        float(stats.cpu_seconds),
    );
    series(
        "process_open_fds",
        "gauge",
        "File descriptors this process has open.",
        int(stats.open_fds),
    );
    series(
        "process_max_fds",
        "gauge",
        "The soft limit on this process's open file descriptors.",
        int(stats.max_fds),
    );
    series(
        "process_virtual_memory_bytes",
        "gauge",
        "Size of this process's virtual address space, in bytes.",
        int(stats.virtual_bytes),
    );
    series(
        "process_resident_memory_bytes",
        "gauge",
        "Memory this process holds in RAM, in bytes.",
        int(stats.resident_bytes),
    );
    series(
        "process_start_time_seconds",
        "gauge",
        "When this process started, in seconds since the Unix epoch.",
        float(stats.start_time_seconds),
    );
    out
}

/// A `/proc` file's text, at most [`MAX_PROC_FILE_BYTES`].
#[cfg(target_os = "linux")]
fn read_small(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_PROC_FILE_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Entries of `/proc/self/fd`, counted up to [`MAX_FDS_COUNTED`].
#[cfg(target_os = "linux")]
fn count_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(dir.take(MAX_FDS_COUNTED).filter(Result::is_ok).count() as u64)
}

/// The boot time (`btime` of `/proc/stat`), read once: it does not change.
#[cfg(target_os = "linux")]
fn boot_time() -> Option<u64> {
    static BOOT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        read_small(std::path::Path::new("/proc/stat")).and_then(|t| parse_btime(&t))
    })
}

/// `(utime + stime, starttime)` in clock ticks from `/proc/<pid>/stat`. The command name (field
/// 2) is in parentheses and may hold spaces or `)`, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().take(20).collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let cpu = field(14)?.checked_add(field(15)?)?;
    Some((cpu, field(22)?))
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmRSS:   12345 kB`.
fn status_kib(text: &str, label: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(label))?;
    let mut words = line[label.len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits` (`None` when unlimited).
fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: the boot time in seconds since the Unix epoch.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a ')' must not shift the fields.
        let stat = "4242 (my) proc) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    150 75 0 0 20 0 9 0 123456 987654321 2500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((225, 123456)));
        assert_eq!(parse_stat("4242 (x) S 1 2"), None, "too short");
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn status_limits_and_boot_time() {
        let status = "Name:\tsluice\nVmSize:\t  204800 kB\nVmRSS:\t   10240 kB\nThreads:\t9\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmSize:"), Some(204800));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert_eq!(status_kib("VmRSS:\t12 pages\n", "VmRSS:"), None, "kB only");
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
        assert_eq!(
            parse_btime("cpu  1 2 3\nintr 5 6\nbtime 1767268800\nprocesses 9\n"),
            Some(1_767_268_800)
        );
    }

    #[test]
    fn renders_help_type_and_value_and_leaves_out_the_unknown() {
        let text = render(&ProcessStats {
            resident_bytes: Some(10_485_760),
            cpu_seconds: Some(2.25),
            ..ProcessStats::default()
        });
        assert!(text.contains(
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 10485760\n"
        ));
        assert!(text.contains(
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 2.25\n"
        ));
        assert!(text.contains("# HELP process_cpu_seconds_total "));
        assert!(!text.contains("process_open_fds"), "{text}");
        assert_eq!(render(&ProcessStats::default()), "");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let s = read();
        assert!(s.resident_bytes.is_some_and(|b| b > 0), "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
        assert!(s.cpu_seconds.is_some(), "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        let started = s.start_time_seconds.expect("start time");
        assert!(
            started <= now + 1.0 && started > now - 86_400.0 * 365.0,
            "{s:?}"
        );
    }
}
