//! ext_authz: `envoy.service.auth.v3.Authorization/Check` turns an API key into a tenant, a
//! user and a tier, checks the model against the tier, and enforces every applicable limit
//! through the same rules, overrides and store as ShouldRateLimit — one hop.
//!
//! - [`config`]: the authz configuration (key and model sources, model → tier table,
//!   descriptor templates, cause precedence).
//! - [`keys`]: the keys file (SHA-256 hashes only) and the lookup.
//! - [`check`]: the Check service and its answers (401, 403, 429 with the cause, OK).
//! - this module: both files loaded together, and hot reload (an invalid change keeps the
//!   last good pair, like the rules).

pub mod check;
pub mod config;
pub mod keys;

use crate::meter::Meter;
use crate::rules::reload::Outcome;
use crate::rules::{read, LoadError, RuleError};
use arc_swap::ArcSwap;
use config::AuthzConfig;
use keys::Keys;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One consistent configuration: keys are validated against the templates.
pub struct AuthzState {
    /// Sources, tiers, templates.
    pub config: AuthzConfig,
    /// The keys.
    pub keys: Keys,
}

/// The live authz state and where it is loaded from.
pub struct Authz {
    /// `--authz-config`.
    config_file: PathBuf,
    /// `--authz-keys`.
    keys_file: PathBuf,
    /// `rules_max_file_bytes`: either file above it is an invalid change (bounded memory).
    max_file_bytes: u64,
    /// Swapped whole on a good reload.
    state: ArcSwap<AuthzState>,
    /// Where load and decision counters are recorded.
    meter: Meter,
}

/// Reads one file safely (regular files only, never blocking, capped). Blocking.
fn read(path: &Path, cap: u64) -> Result<String, LoadError> {
    read::read_capped(path, cap).map_err(|e| LoadError::from_read(path, e))
}

/// Reads and parses both files. Blocking: callers run it on the blocking pool.
fn load(config_file: &Path, keys_file: &Path, cap: u64) -> Result<AuthzState, LoadError> {
    let config = AuthzConfig::parse(&config_file.display().to_string(), &read(config_file, cap)?)
        .map_err(LoadError::Invalid)?;
    let names: Vec<String> = config.templates.iter().map(|t| t.name.clone()).collect();
    let keys = Keys::parse(
        &keys_file.display().to_string(),
        &read(keys_file, cap)?,
        &names,
    )
    .map_err(LoadError::Invalid)?;
    Ok(AuthzState { config, keys })
}

impl Authz {
    /// Loads both files (start-up: any error, I/O included, stops sluice). Blocking: call it
    /// on the blocking pool.
    pub fn load(
        config_file: &Path,
        keys_file: &Path,
        max_file_bytes: u64,
    ) -> Result<Authz, RuleError> {
        let state =
            load(config_file, keys_file, max_file_bytes).map_err(LoadError::into_rule_error)?;
        tracing::info!(
            keys = state.keys.len(),
            templates = state.config.templates.len(),
            "authz loaded"
        );
        Ok(Authz {
            config_file: config_file.to_path_buf(),
            keys_file: keys_file.to_path_buf(),
            max_file_bytes,
            state: ArcSwap::from_pointee(state),
            meter: Meter::default(),
        })
    }

    /// Records load and decision counters in `meter`.
    pub fn with_meter(mut self, meter: &Meter) -> Authz {
        self.meter = meter.clone();
        self
    }

    /// Where this Check service records its counters.
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The current state.
    pub fn snapshot(&self) -> Arc<AuthzState> {
        self.state.load_full()
    }

    /// Re-reads both files; keeps the old state if either is invalid (counted in
    /// `sluice_authz_load_error_total`) or unreadable (an I/O failure, counted in
    /// `sluice_config_io_error_total{files="authz"}` and retried at the next poll). Blocking.
    pub fn reload(&self) -> Outcome {
        match load(&self.config_file, &self.keys_file, self.max_file_bytes) {
            Ok(state) => {
                tracing::info!(keys = state.keys.len(), "authz reloaded");
                self.state.store(Arc::new(state));
                self.meter
                    .record(|| metrics::counter!("sluice_authz_load_success_total").increment(1));
                Outcome::Applied
            }
            Err(LoadError::Invalid(e)) => {
                tracing::error!(error = %e, "invalid authz files; keeping the last good ones");
                self.meter
                    .record(|| metrics::counter!("sluice_authz_load_error_total").increment(1));
                Outcome::Rejected
            }
            Err(LoadError::Io(e)) => {
                tracing::error!(
                    error = %e,
                    "I/O error reading the authz files (not a config error); keeping the last good ones, retrying at the next poll"
                );
                self.meter.record(|| {
                    metrics::counter!("sluice_config_io_error_total", "files" => "authz")
                        .increment(1)
                });
                Outcome::Retry
            }
        }
    }

    /// Metadata of both files, never their contents (a ConfigMap or Secret swap changes the
    /// inode they resolve to; an edit changes size or mtime). Blocking, but never opens a file.
    fn fingerprint(&self) -> Option<u64> {
        let mut h = DefaultHasher::new();
        for path in [&self.config_file, &self.keys_file] {
            read::stamp(path, &mut h);
        }
        Some(h.finish())
    }

    /// Polls every `every` and reloads on change (or at once on SIGHUP, like the rules), until
    /// the task is aborted. Both run on the blocking pool.
    pub fn spawn_reload(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let (probe, authz) = (Arc::clone(self), Arc::clone(self));
        crate::rules::reload::watch(every, move || probe.fingerprint(), move || authz.reload())
    }
}
