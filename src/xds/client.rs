//! The ADS client: one `StreamAggregatedResources` stream at a time, state of the world, for
//! the `RateLimitConfig` type only.
//!
//! - Every request is a wildcard (no `resource_names`) and carries `node {id, metadata}`; the
//!   stream carries the extra headers.
//! - The first request of a stream carries the last ACKed `version_info` (empty before any) and
//!   no nonce, so a control plane that already sent that version need not send it again.
//! - A response is validated on the blocking pool ([`convert::to_rules`]). Valid: the whole
//!   snapshot is swapped at once, `loaded` turns true, `config_load_success` counts it, and it
//!   is ACKed (its `version_info` and nonce). Invalid: `config_load_error` counts it, the rules
//!   stay, and it is NACKed (the previous ACKed version, its nonce, `error_detail` with the
//!   resource, path and reason).
//! - Resends are harmless: a response equal (version and bytes) to the applied config is
//!   ACKed again without swapping or counting; one equal to the last rejected config is NACKed
//!   again without counting, after a pause that grows from 250 ms to 5 s (capped by the
//!   backoff settings), because a go-control-plane cache answers each NACK at once with the same
//!   snapshot and the two sides would otherwise spin.
//! - A response above `max_message_bytes` breaks the stream before it is buffered; it counts as
//!   a config error. Any stream end or error: re-dial after [`Backoff`] (reset once a stream
//!   delivered a response); the rules in force stay meanwhile.

use crate::meter::Meter;
use crate::rules::Rules;
use crate::xds::backoff::Backoff;
use crate::xds::connect::{chain, Target};
use crate::xds::convert::{self, truncate, Bounds};
use crate::xds::proto::TYPE_URL;
use crate::xds::{XdsConfig, XdsError};
use arc_swap::ArcSwap;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Value};
use envoy_types::pb::google::rpc::Status;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};

/// `error_detail.message` is cut to this many bytes (an error may quote a hostile name).
const MAX_ERROR_DETAIL: usize = 4096;
/// First pause before NACKing the same rejected config again.
const NACK_PAUSE_INITIAL: Duration = Duration::from_millis(250);
/// Longest pause between NACKs of the same rejected config.
const NACK_PAUSE_MAX: Duration = Duration::from_secs(5);
/// `google.rpc.Code.INVALID_ARGUMENT`, the code of a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// One response as seen: what makes a resend recognisable.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// The response's `version_info`.
    version: String,
    /// SHA-256 of its resources (type URLs and bytes, in order).
    digest: [u8; 32],
}

/// The last rejected response, to NACK its resends without counting them again.
#[derive(Debug)]
struct Rejected {
    /// Which response.
    seen: Seen,
    /// The NACK's reason, sent again with each repeat.
    reason: String,
    /// Pauses before each repeated NACK.
    pause: Backoff,
}

/// The client's settings and ACK state; [`Client::run`] drives it.
pub struct Client {
    /// Where to dial, with TLS.
    target: Target,
    /// `server_url` as configured, for log lines.
    server_url: String,
    /// The `node` of every request.
    node: Node,
    /// Extra gRPC metadata of every stream.
    headers: MetadataMap,
    /// Bounds and merging applied to each response.
    bounds: Bounds,
    /// The decoder's message size limit.
    max_message_bytes: usize,
    /// Delays between reconnects.
    reconnect: Backoff,
    /// Pauses between repeated NACKs (see the module docs).
    nack_pause: (Duration, Duration),
    /// Where valid configs are published.
    rules: Arc<ArcSwap<Rules>>,
    /// Turns `true` at the first valid config (start-up and ShouldRateLimit wait on it).
    loaded: tokio::sync::watch::Sender<bool>,
    /// Where `config_load_{success,error}` are counted.
    meter: Meter,
    /// The last ACKed `version_info`: the version of NACKs and of a new stream's first request.
    acked_version: String,
    /// The response whose rules are in force.
    applied: Option<Seen>,
    /// The last rejected response, while no other response came after it.
    rejected: Option<Rejected>,
}

impl Client {
    /// Validates the settings (URL, headers, TLS) and builds the client.
    pub fn new(
        config: XdsConfig,
        rules: Arc<ArcSwap<Rules>>,
        loaded: tokio::sync::watch::Sender<bool>,
        meter: Meter,
    ) -> Result<Client, XdsError> {
        let target = Target::new(&config.server_url, config.tls.as_ref())?;
        let mut headers = MetadataMap::new();
        for (name, value) in &config.headers {
            let bad = |reason: &str| XdsError::Header {
                name: name.clone(),
                reason: reason.to_owned(),
            };
            let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| bad("not a valid gRPC metadata name"))?;
            let value = AsciiMetadataValue::try_from(value.as_str())
                .map_err(|_| bad("the value must be visible ASCII"))?;
            headers.append(key, value);
        }
        let fields = config
            .node_metadata
            .iter()
            .map(|(k, v)| {
                let value = Value {
                    kind: Some(Kind::StringValue(v.clone())),
                };
                (k.clone(), value)
            })
            .collect();
        let node = Node {
            id: config.node_id.clone(),
            metadata: (!config.node_metadata.is_empty()).then_some(Struct { fields }),
            user_agent_name: "sluice".into(),
            ..Default::default()
        };
        let reconnect = Backoff::new(config.backoff_initial, config.backoff_max);
        let nack_pause = (
            NACK_PAUSE_INITIAL.min(config.backoff_initial),
            NACK_PAUSE_MAX.min(config.backoff_max),
        );
        Ok(Client {
            target,
            server_url: config.server_url,
            node,
            headers,
            bounds: Bounds {
                max_resources: config.max_resources,
                max_resource_bytes: config.max_resource_bytes,
                merge_domains: config.merge_domains,
            },
            max_message_bytes: config.max_message_bytes,
            reconnect,
            nack_pause,
            rules,
            loaded,
            meter,
            acked_version: String::new(),
            applied: None,
            rejected: None,
        })
    }

    /// Keeps a stream up until the task is aborted, reconnecting with backoff.
    pub async fn run(mut self) {
        tracing::info!(
            server = %self.server_url,
            node = %self.node.id,
            "xDS: subscribing to RateLimitConfig"
        );
        loop {
            let (productive, why) = self.session().await;
            if productive {
                self.reconnect.reset();
            }
            let delay = self.reconnect.next_delay();
            tracing::warn!(
                server = %self.server_url,
                error = %why,
                retry_in = ?delay,
                "xDS stream ended; reconnecting (the rules in force stay)"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One stream, from dial to its end: whether it delivered a response, and why it ended.
    async fn session(&mut self) -> (bool, String) {
        let channel = match self.target.dial().await {
            Ok(channel) => channel,
            Err(e) => return (false, format!("cannot connect: {e}")),
        };
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(self.max_message_bytes);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let first = self.request(&self.acked_version, "", None);
        if tx.try_send(first).is_err() {
            return (false, "cannot queue the first request".into());
        }
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        *request.metadata_mut() = self.headers.clone();
        let mut inbound = match client.stream_aggregated_resources(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return (false, status_text(&status)),
        };
        tracing::debug!(server = %self.server_url, "xDS stream open");
        let mut productive = false;
        loop {
            match inbound.message().await {
                Ok(Some(response)) => {
                    productive = true;
                    if let Some(reply) = self.handle(response).await {
                        if tx.send(reply).await.is_err() {
                            return (productive, "the request stream closed".into());
                        }
                    }
                }
                Ok(None) => return (productive, "the server closed the stream".into()),
                Err(status) => {
                    if too_large(&status) {
                        self.meter.record(|| {
                            metrics::counter!("ratelimit_service_config_load_error").increment(1)
                        });
                        tracing::warn!(
                            error = %status.message(),
                            "xDS response larger than xds_max_message_bytes rejected; the rules in force stay"
                        );
                    }
                    return (productive, status_text(&status));
                }
            }
        }
    }

    /// Applies or rejects one response; the ACK or NACK to send, if any.
    async fn handle(&mut self, response: DiscoveryResponse) -> Option<DiscoveryRequest> {
        if response.type_url != TYPE_URL {
            tracing::warn!(
                type_url = %truncate(&response.type_url, 200),
                "xDS response of a type never requested; ignored"
            );
            return None;
        }
        // Hashing up to `max_message_bytes` is CPU work: off the async workers.
        let resources = response.resources;
        let Ok((resources, hashed)) = tokio::task::spawn_blocking(move || {
            let d = digest(&resources);
            (resources, d)
        })
        .await
        else {
            return None;
        };
        let seen = Seen {
            version: response.version_info.clone(),
            digest: hashed,
        };
        let nonce = response.nonce;
        if self.applied.as_ref() == Some(&seen) {
            tracing::debug!(version = %seen.version, "xDS resend of the config in force; ACK");
            return Some(self.request(&seen.version, &nonce, None));
        }
        if let Some(rejected) = self.rejected.as_mut().filter(|r| r.seen == seen) {
            let pause = rejected.pause.next_delay();
            let reason = rejected.reason.clone();
            tracing::debug!(version = %seen.version, ?pause, "xDS resend of a rejected config; NACK again");
            tokio::time::sleep(pause).await;
            return Some(self.request(&self.acked_version, &nonce, Some(reason)));
        }
        let bounds = self.bounds;
        let result = tokio::task::spawn_blocking(move || convert::to_rules(&resources, &bounds))
            .await
            .map_err(|e| format!("validating the config failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        match result {
            Ok(rules) => {
                let domains = rules.files().len();
                self.rules.store(Arc::new(rules));
                self.loaded.send_replace(true);
                self.meter.record(|| {
                    metrics::counter!("ratelimit_service_config_load_success").increment(1)
                });
                tracing::info!(version = %seen.version, domains, "xDS config applied; ACK");
                self.acked_version = seen.version.clone();
                self.applied = Some(seen);
                self.rejected = None;
                Some(self.request(&self.acked_version, &nonce, None))
            }
            Err(reason) => {
                let reason = truncate(&reason, MAX_ERROR_DETAIL).to_owned();
                self.meter.record(|| {
                    metrics::counter!("ratelimit_service_config_load_error").increment(1)
                });
                tracing::warn!(
                    version = %seen.version,
                    error = %reason,
                    "xDS config rejected; NACK (the last good rules stay)"
                );
                self.rejected = Some(Rejected {
                    seen,
                    reason: reason.clone(),
                    pause: Backoff::new(self.nack_pause.0, self.nack_pause.1),
                });
                Some(self.request(&self.acked_version, &nonce, Some(reason)))
            }
        }
    }

    /// A wildcard request: an ACK (no error) or a NACK (with the reason).
    fn request(&self, version: &str, nonce: &str, error: Option<String>) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: version.to_owned(),
            node: Some(self.node.clone()),
            type_url: TYPE_URL.to_owned(),
            response_nonce: nonce.to_owned(),
            error_detail: error.map(|message| Status {
                code: INVALID_ARGUMENT,
                message,
                details: Vec::new(),
            }),
            ..Default::default()
        }
    }
}

/// SHA-256 over every resource's type URL and bytes, length-prefixed so no two lists collide
/// by concatenation.
fn digest(resources: &[Any]) -> [u8; 32] {
    let mut h = Sha256::new();
    for r in resources {
        for part in [r.type_url.as_bytes(), r.value.as_slice()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    h.finalize().into()
}

/// Whether the local decoder refused a message above `max_decoding_message_size`.
fn too_large(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::OutOfRange
        && status
            .message()
            .starts_with("Error, decoded message length too large")
}

/// A status with its transport cause, for the reconnect log line.
fn status_text(status: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        out.push_str(": ");
        out.push_str(&chain(source));
    }
    out
}
