//! Hot reload of the rule directory: a poller notices any change (a plain edit, a new or
//! removed file, or a Kubernetes ConfigMap update, which swaps the `..data` symlink), SIGHUP
//! asks for a reload at once, and every reload re-parses everything and swaps the snapshot
//! atomically. Counters live in the store, so they survive.
//!
//! Outcomes of a reload:
//! - good: the snapshot is swapped, `ratelimit_service_config_load_success` counts it;
//! - invalid files (parse error, file above `rules_max_file_bytes`, not UTF-8): the last good
//!   rules stay, file/path/reason is logged, `ratelimit_service_config_load_error` counts it,
//!   and nothing is retried until the files change again;
//! - an I/O failure (e.g. "Too many open files" listing the directory): the last good rules
//!   stay, it is logged as an I/O error and counted in
//!   `sluice_config_io_error_total{files="rules"}` (not as a config error), and the reload is
//!   retried at the next poll.
//!
//! Nothing here runs on a tokio worker: the fingerprint (metadata only, see
//! [`crate::rules::read::stamp`]) and the reload run on the blocking pool, so a slow disk or
//! a huge file never stalls a request, and shutdown never waits for them.

use crate::meter::Meter;
use crate::rules::{read, LoadError, LoadOptions, Rules};
use arc_swap::ArcSwap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What one reload did; tells [`watch`] whether to try again at the next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The new files are live.
    Applied,
    /// The files are invalid; the old state stays until the files change again.
    Rejected,
    /// The files could not be read (an I/O failure); the old state stays, retry next poll.
    Retry,
}

/// Reloads one rule directory into a shared snapshot.
pub struct Reloader {
    /// The rule directory.
    dir: PathBuf,
    /// The snapshot requests read; swapped on a good reload.
    rules: Arc<ArcSwap<Rules>>,
    /// `rules_max_file_bytes`: a bigger file is an invalid change, so memory stays bounded.
    max_file_bytes: u64,
    /// Where the load counters are recorded.
    meter: Meter,
    /// `MERGE_DOMAIN_CONFIG`: files sharing a domain are merged instead of rejected.
    merge_domains: bool,
}

impl Reloader {
    /// A reloader for `dir` publishing into `rules`, refusing files above `max_file_bytes`.
    pub fn new(dir: &Path, rules: Arc<ArcSwap<Rules>>, max_file_bytes: u64) -> Reloader {
        Reloader {
            dir: dir.to_path_buf(),
            rules,
            max_file_bytes,
            meter: Meter::default(),
            merge_domains: false,
        }
    }

    /// Merges files sharing a domain (`MERGE_DOMAIN_CONFIG`) instead of rejecting them.
    pub fn with_merge_domains(mut self, merge: bool) -> Reloader {
        self.merge_domains = merge;
        self
    }

    /// Records the load counters in `meter`.
    pub fn with_meter(mut self, meter: &Meter) -> Reloader {
        self.meter = meter.clone();
        self
    }

    /// Re-parses the directory; swaps the snapshot if every file is valid, else keeps the old.
    /// Blocking: [`Reloader::spawn`] runs it on the blocking pool.
    pub fn reload(&self) -> Outcome {
        let options = LoadOptions {
            max_file_bytes: self.max_file_bytes,
            merge_domains: self.merge_domains,
        };
        match Rules::load_dir_with(&self.dir, options) {
            Ok(rules) => {
                let domains = rules.files().len();
                self.rules.store(Arc::new(rules));
                self.meter.record(|| {
                    metrics::counter!("ratelimit_service_config_load_success").increment(1)
                });
                tracing::info!(dir = %self.dir.display(), domains, "rules reloaded");
                Outcome::Applied
            }
            Err(LoadError::Invalid(e)) => {
                self.meter.record(|| {
                    metrics::counter!("ratelimit_service_config_load_error").increment(1)
                });
                tracing::error!(error = %e, "invalid rules; keeping the last good ones");
                Outcome::Rejected
            }
            Err(LoadError::Io(e)) => {
                self.meter.record(|| {
                    metrics::counter!("sluice_config_io_error_total", "files" => "rules")
                        .increment(1)
                });
                tracing::error!(
                    error = %e,
                    "I/O error reading the rules (not a config error); keeping the last good ones, retrying at the next poll"
                );
                Outcome::Retry
            }
        }
    }

    /// A fingerprint of what the directory holds, from metadata only (names, and for each
    /// non-hidden entry its link target, inode, size, mtime and ctime, plus the `..data` link
    /// target, so a ConfigMap swap is seen). No file is opened, so a FIFO or a link to
    /// `/dev/zero` cannot block it. `None` if the directory cannot be listed (an I/O failure:
    /// the caller keeps what it has and looks again at the next poll).
    pub fn fingerprint(&self) -> Option<u64> {
        let mut h = DefaultHasher::new();
        read::stamp(&self.dir.join("..data"), &mut h);
        let listed: Result<Vec<PathBuf>, std::io::Error> = std::fs::read_dir(&self.dir)
            .and_then(|entries| entries.map(|e| e.map(|e| e.path())).collect());
        let mut names = match listed {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot list the rule directory; will retry");
                return None;
            }
        };
        names.sort();
        for path in names {
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            path.hash(&mut h);
            read::stamp(&path, &mut h);
        }
        Some(h.finish())
    }

    /// Polls every `every` and reloads on change; reloads at once on SIGHUP. Runs until the
    /// task is aborted.
    pub fn spawn(self, every: Duration) -> tokio::task::JoinHandle<()> {
        let reloader = Arc::new(self);
        let probe = Arc::clone(&reloader);
        watch(
            every,
            move || probe.fingerprint(),
            move || reloader.reload(),
        )
    }
}

/// Runs `f` on the blocking pool; `None` if it panicked.
async fn blocking<T: Send + 'static>(f: Arc<dyn Fn() -> T + Send + Sync>) -> Option<T> {
    tokio::task::spawn_blocking(move || f()).await.ok()
}

/// Calls `reload` when `fingerprint` changes (checked every `every`), at once on SIGHUP, and
/// again at the next poll after a [`Outcome::Retry`], until the returned task is aborted. Both
/// run on the blocking pool; aborting the task never waits for them. Shared by every
/// hot-reloaded file set (rules, ext_authz).
pub fn watch(
    every: Duration,
    fingerprint: impl Fn() -> Option<u64> + Send + Sync + 'static,
    reload: impl Fn() -> Outcome + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    // Registered before the task starts: once the caller goes on to announce it is listening,
    // a SIGHUP reloads instead of killing the process (the default action).
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let fingerprint: Arc<dyn Fn() -> Option<u64> + Send + Sync> = Arc::new(fingerprint);
    let reload: Arc<dyn Fn() -> Outcome + Send + Sync> = Arc::new(reload);
    tokio::spawn(async move {
        let mut seen = blocking(Arc::clone(&fingerprint)).await.flatten();
        let mut retry = false;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let forced = tokio::select! {
                _ = tick.tick() => false,
                _ = hangup => true,
            };
            let now = blocking(Arc::clone(&fingerprint)).await.flatten();
            if now.is_none() && !forced {
                // Cannot even list the files: keep everything, look again next poll.
                continue;
            }
            if forced || retry || now != seen {
                let outcome = blocking(Arc::clone(&reload)).await;
                retry = matches!(outcome, Some(Outcome::Retry) | None);
                seen = now;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn reloader(dir: &Path) -> Reloader {
        Reloader::new(dir, Arc::new(ArcSwap::from_pointee(Rules::default())), 1000)
    }

    /// Computes the fingerprint on another thread; fails (instead of hanging) after 5 s.
    fn fingerprint_within_5s(dir: &Path) -> Option<u64> {
        let r = reloader(dir);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(r.fingerprint());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the fingerprint must not block")
    }

    #[test]
    fn a_fifo_and_a_link_to_dev_zero_do_not_block_the_fingerprint() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), "domain: a\n").expect("write");
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("p.yaml"))
            .status()
            .expect("mkfifo");
        assert!(made.success());
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("z.yaml")).expect("symlink");
        let first = fingerprint_within_5s(dir.path());
        assert!(first.is_some());
        assert_eq!(first, fingerprint_within_5s(dir.path()), "nothing changed");
    }

    #[test]
    fn size_and_mtime_changes_are_seen_without_reading_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, "domain: a\n").expect("write");
        let r = reloader(dir.path());
        let v1 = r.fingerprint();
        assert_eq!(v1, r.fingerprint());
        std::fs::write(&f, "domain: ab\n").expect("longer");
        let v2 = r.fingerprint();
        assert_ne!(v1, v2, "a size change is a change");
        // Same size, only the mtime moves.
        let file = std::fs::File::options().write(true).open(&f).expect("open");
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .expect("set mtime");
        assert_ne!(v2, r.fingerprint(), "an mtime change is a change");
        // A missing directory is an I/O failure, not an empty fingerprint.
        assert_eq!(reloader(&dir.path().join("gone")).fingerprint(), None);
    }

    #[test]
    fn an_oversize_file_is_an_invalid_change_and_an_unreadable_dir_is_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("big.yaml"), "#".repeat(1001)).expect("write");
        assert_eq!(reloader(dir.path()).reload(), Outcome::Rejected);
        assert_eq!(reloader(&dir.path().join("gone")).reload(), Outcome::Retry);
    }
}
