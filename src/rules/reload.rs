//! Hot reload of the rule directory: a poller notices any change (a plain edit, a new or
//! removed file, or a Kubernetes ConfigMap update, which swaps the `..data` symlink), SIGHUP
//! asks for a reload at once, and every reload re-parses everything and swaps the snapshot
//! atomically. An invalid change keeps the last good rules, logs file/path/reason and counts
//! `ratelimit_service_config_load_error`. Counters live in the store, so they survive.

use crate::rules::{RuleError, Rules};
use arc_swap::ArcSwap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Reloads one rule directory into a shared snapshot.
pub struct Reloader {
    /// The rule directory.
    dir: PathBuf,
    /// The snapshot requests read; swapped on a good reload.
    rules: Arc<ArcSwap<Rules>>,
}

impl Reloader {
    /// A reloader for `dir` publishing into `rules`.
    pub fn new(dir: &Path, rules: Arc<ArcSwap<Rules>>) -> Reloader {
        Reloader {
            dir: dir.to_path_buf(),
            rules,
        }
    }

    /// Re-parses the directory; swaps the snapshot if every file is valid, else keeps the old.
    pub fn reload(&self) -> Result<(), RuleError> {
        match Rules::load_dir(&self.dir) {
            Ok(rules) => {
                let domains = rules.files().len();
                self.rules.store(Arc::new(rules));
                metrics::counter!("ratelimit_service_config_load_success").increment(1);
                tracing::info!(dir = %self.dir.display(), domains, "rules reloaded");
                Ok(())
            }
            Err(e) => {
                metrics::counter!("ratelimit_service_config_load_error").increment(1);
                tracing::error!(error = %e, "invalid rules; keeping the last good ones");
                Err(e)
            }
        }
    }

    /// A fingerprint of what the directory holds: names and contents of the rule files (and
    /// the `..data` link target, so a ConfigMap swap is seen even if contents repeat).
    pub fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        if let Ok(target) = std::fs::read_link(self.dir.join("..data")) {
            target.hash(&mut h);
        }
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        for path in names {
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            path.hash(&mut h);
            if let Ok(bytes) = std::fs::read(&path) {
                bytes.hash(&mut h);
            }
        }
        h.finish()
    }

    /// Polls every `every` and reloads on change; reloads at once on SIGHUP. Runs until the
    /// task is aborted.
    pub fn spawn(self, every: Duration) -> tokio::task::JoinHandle<()> {
        let reloader = Arc::new(self);
        let probe = Arc::clone(&reloader);
        watch(
            every,
            move || probe.fingerprint(),
            move || {
                // Errors are logged and counted inside; the old rules stay.
                let _ = reloader.reload();
            },
        )
    }
}

/// Calls `reload` when `fingerprint` changes (checked every `every`) and at once on SIGHUP, until
/// the returned task is aborted. Shared by every hot-reloaded file set (rules, ext_authz).
pub fn watch(
    every: Duration,
    fingerprint: impl Fn() -> u64 + Send + 'static,
    reload: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    // Registered before the task starts: once the caller goes on to announce it is listening,
    // a SIGHUP reloads instead of killing the process (the default action).
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    tokio::spawn(async move {
        let mut seen = fingerprint();
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
            let now = fingerprint();
            if forced || now != seen {
                seen = now;
                reload();
            }
        }
    })
}
