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

use crate::rules::RuleError;
use arc_swap::ArcSwap;
use config::AuthzConfig;
use keys::Keys;
use std::hash::{DefaultHasher, Hash, Hasher};
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
    /// Swapped whole on a good reload.
    state: ArcSwap<AuthzState>,
}

fn read(path: &Path) -> Result<String, RuleError> {
    std::fs::read_to_string(path).map_err(|e| RuleError {
        file: path.display().to_string(),
        path: String::new(),
        reason: format!("cannot read file: {e}"),
    })
}

fn load(config_file: &Path, keys_file: &Path) -> Result<AuthzState, RuleError> {
    let config = AuthzConfig::parse(&config_file.display().to_string(), &read(config_file)?)?;
    let names: Vec<String> = config.templates.iter().map(|t| t.name.clone()).collect();
    let keys = Keys::parse(&keys_file.display().to_string(), &read(keys_file)?, &names)?;
    Ok(AuthzState { config, keys })
}

impl Authz {
    /// Loads both files (start-up: an error stops sluice).
    pub fn load(config_file: &Path, keys_file: &Path) -> Result<Authz, RuleError> {
        let state = load(config_file, keys_file)?;
        tracing::info!(
            keys = state.keys.len(),
            templates = state.config.templates.len(),
            "authz loaded"
        );
        Ok(Authz {
            config_file: config_file.to_path_buf(),
            keys_file: keys_file.to_path_buf(),
            state: ArcSwap::from_pointee(state),
        })
    }

    /// The current state.
    pub fn snapshot(&self) -> Arc<AuthzState> {
        self.state.load_full()
    }

    /// Re-reads both files; keeps the old state if either is invalid.
    pub fn reload(&self) -> Result<(), RuleError> {
        match load(&self.config_file, &self.keys_file) {
            Ok(state) => {
                tracing::info!(keys = state.keys.len(), "authz reloaded");
                self.state.store(Arc::new(state));
                metrics::counter!("sluice_authz_load_success_total").increment(1);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "invalid authz files; keeping the last good ones");
                metrics::counter!("sluice_authz_load_error_total").increment(1);
                Err(e)
            }
        }
    }

    /// Contents of both files (a ConfigMap or Secret swap changes what they resolve to).
    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for path in [&self.config_file, &self.keys_file] {
            std::fs::read(path).ok().hash(&mut h);
        }
        h.finish()
    }

    /// Polls every `every` and reloads on change (or at once on SIGHUP, like the rules), until
    /// the task is aborted.
    pub fn spawn_reload(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let (probe, authz) = (Arc::clone(self), Arc::clone(self));
        crate::rules::reload::watch(
            every,
            move || probe.fingerprint(),
            move || {
                // Logged and counted inside; the old state stays on error.
                let _ = authz.reload();
            },
        )
    }
}
