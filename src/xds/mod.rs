//! xDS config source (`CONFIG_TYPE=GRPC_XDS_SOTW`): rate-limit rules pushed by a control plane
//! (Envoy Gateway's on :18001) over ADS, state of the world, instead of read from a directory.
//!
//! - [`proto`]: the `RateLimitConfig` resource (hand-written prost types).
//! - [`convert`]: resources → [`Rules`], through the rule-file validation.
//! - [`client`]: the ADS stream: ACK/NACK, atomic swaps, reconnects.
//! - [`connect`]: the endpoint and (m)TLS; [`backoff`]: delays with jitter.
//! - [`source`]: the client as the server runs it (settings, waiting for the first config).
//!
//! Behaviour, in short (`docs/xds.md` has it in full): every response replaces all domains
//! atomically after validation and is ACKed; an invalid one is NACKed with the reason while the
//! last good rules stay; resends of an applied or rejected config change nothing and count
//! nothing; a broken stream is re-dialled with exponential backoff and jitter, the first
//! request carrying the last ACKed version.

mod backoff;
pub mod client;
mod connect;
pub mod convert;
pub mod proto;
pub mod source;

use crate::meter::Meter;
use crate::rules::Rules;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use backoff::Backoff;
pub use proto::TYPE_URL;

/// Everything the xDS client needs; built from the settings (`xds_*`, `merge_domain_config`,
/// `rules_max_file_bytes`).
#[derive(Debug, Clone)]
pub struct XdsConfig {
    /// The control plane: `host:port`, `http://host:port` or `https://host:port`
    /// (`CONFIG_GRPC_XDS_SERVER_URL`; Envoy Gateway: `envoy-gateway:18001`).
    pub server_url: String,
    /// `node.id` of every request: the control plane keys its snapshot by it (Envoy Gateway
    /// serves `envoy-ratelimit` only).
    pub node_id: String,
    /// `node.metadata`, as string fields (`CONFIG_GRPC_XDS_NODE_METADATA`).
    pub node_metadata: Vec<(String, String)>,
    /// Extra gRPC metadata sent with the stream (`CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS`),
    /// e.g. a token for a proxy in between.
    pub headers: Vec<(String, String)>,
    /// TLS towards the control plane, `None` for plaintext (unless the URL says `https://`).
    pub tls: Option<XdsTls>,
    /// First reconnect delay (upstream: 10 s); doubles per failure, with jitter.
    pub backoff_initial: Duration,
    /// Longest reconnect delay (upstream: 60 s).
    pub backoff_max: Duration,
    /// Largest DiscoveryResponse accepted; a bigger one breaks the stream before it is
    /// buffered (the gRPC decoder's limit).
    pub max_message_bytes: usize,
    /// Largest encoded resource (one domain), as `rules_max_file_bytes` bounds one file.
    pub max_resource_bytes: u64,
    /// Most resources (domains) in one response.
    pub max_resources: usize,
    /// `MERGE_DOMAIN_CONFIG`: resources sharing a domain are merged instead of rejected.
    pub merge_domains: bool,
}

impl XdsConfig {
    /// A plaintext configuration for `server_url` and `node_id` with upstream's defaults:
    /// backoff 10 s to 60 s, 4 MiB messages, 8 MiB resources, 10 000 resources, no merging.
    pub fn new(server_url: impl Into<String>, node_id: impl Into<String>) -> XdsConfig {
        XdsConfig {
            server_url: server_url.into(),
            node_id: node_id.into(),
            node_metadata: Vec::new(),
            headers: Vec::new(),
            tls: None,
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
            max_message_bytes: 4 * 1024 * 1024,
            max_resource_bytes: crate::rules::read::DEFAULT_MAX_FILE_BYTES,
            max_resources: 10_000,
            merge_domains: false,
        }
    }
}

/// TLS towards the control plane; files are read at every dial (rotation-friendly).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XdsTls {
    /// Client certificate (PEM), presented when the server asks (Envoy Gateway requires it).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#1, PKCS#8 or SEC1).
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) the server's certificate must chain to; the system roots if unset.
    pub ca: Option<PathBuf>,
    /// The name the server certificate must carry, instead of the URL's host.
    pub san: Option<String>,
}

/// Why the xDS client cannot start: a setting is unusable (found before any dial).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdsError {
    /// `server_url` is not `host:port` (optionally with an http/https scheme).
    #[error("xds server url '{url}': {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// An extra header is not valid gRPC ASCII metadata.
    #[error("xds header '{name}': {reason}")]
    Header {
        /// The header name as given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS settings are inconsistent.
    #[error("xds TLS: {0}")]
    Tls(String),
    /// The client task ended before the first config arrived (a bug: it retries forever).
    #[error("the xDS client stopped before the first config arrived")]
    Stopped,
}

/// Starts the client: it dials `config.server_url` and keeps the stream up until the task is
/// aborted, publishing each valid config into `rules`, setting `loaded` to `true` at the first
/// one and counting `ratelimit_service_config_load_{success,error}` in `meter`. The settings
/// are checked first, so a bad URL, header or TLS combination fails here, before any dial.
pub fn spawn(
    config: XdsConfig,
    rules: Arc<ArcSwap<Rules>>,
    loaded: tokio::sync::watch::Sender<bool>,
    meter: Meter,
) -> Result<tokio::task::JoinHandle<()>, XdsError> {
    let client = client::Client::new(config, rules, loaded, meter)?;
    Ok(tokio::spawn(client.run()))
}
