//! The xDS client as the server runs it: configured from the settings, started at bind, and
//! aborted with the server. Unless `force_start_without_initial_config`, starting waits for the
//! first valid config (nothing is bound or served meanwhile, as upstream).

use crate::meter::Meter;
use crate::rules::Rules;
use crate::settings::Settings;
use crate::xds::{XdsConfig, XdsError, XdsTls};
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::watch;

/// The running xDS client; aborted when dropped.
pub struct XdsSource {
    /// The client task (it retries forever; only abort ends it).
    task: tokio::task::JoinHandle<()>,
    /// `true` once a config has been applied; ShouldRateLimit answers UNKNOWN until then.
    loaded: watch::Receiver<bool>,
}

impl Drop for XdsSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl XdsSource {
    /// Starts the client publishing into `rules` and counting into `meter`; waits for its
    /// first config unless `force_start_without_initial_config`.
    pub async fn start(
        settings: &Settings,
        rules: &Arc<ArcSwap<Rules>>,
        meter: &Meter,
    ) -> Result<XdsSource, XdsError> {
        let (tx, mut loaded) = watch::channel(false);
        let task = crate::xds::spawn(config(settings), Arc::clone(rules), tx, meter.clone())?;
        let source = XdsSource {
            task,
            loaded: loaded.clone(),
        };
        if settings.force_start_without_initial_config {
            tracing::info!(
                server = %settings.xds_server_url,
                "rules come from xDS; serving before the first config (ShouldRateLimit answers UNKNOWN until it arrives)"
            );
        } else {
            tracing::info!(
                server = %settings.xds_server_url,
                "rules come from xDS; waiting for the first config before serving"
            );
            if loaded.wait_for(|l| *l).await.is_err() {
                return Err(XdsError::Stopped);
            }
            tracing::info!(
                domains = rules.load().files().len(),
                "first xDS config loaded"
            );
        }
        Ok(source)
    }

    /// Turns `true` at the first applied config (for [`crate::service::rls::RlsService`]).
    pub fn loaded(&self) -> watch::Receiver<bool> {
        self.loaded.clone()
    }
}

/// The client's configuration from the settings.
pub fn config(settings: &Settings) -> XdsConfig {
    let tls = settings.xds_use_tls.then(|| XdsTls {
        cert: settings.xds_client_tls_cert.clone(),
        key: settings.xds_client_tls_key.clone(),
        ca: settings.xds_server_tls_ca.clone(),
        san: settings.xds_server_tls_san.clone(),
    });
    XdsConfig {
        node_metadata: settings.xds_node_metadata.clone(),
        headers: settings.xds_headers.clone(),
        tls,
        backoff_initial: settings.xds_backoff_initial,
        backoff_max: settings.xds_backoff_max,
        max_message_bytes: settings.xds_max_message_bytes,
        max_resource_bytes: settings.rules_max_file_bytes,
        merge_domains: settings.merge_domain_config,
        ..XdsConfig::new(
            settings.xds_server_url.clone(),
            settings.xds_node_id.clone(),
        )
    }
}
