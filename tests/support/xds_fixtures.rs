//! Envoy Gateway-shaped `RateLimitConfig` resources, and a sluice xDS client driven directly
//! (its rules snapshot, `loaded` flag and load counters) for the `xds_*` tests.

use super::xds::XdsServer;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use sluice::xds::proto::{
    RateLimitConfig, RateLimitDescriptor, RateLimitPolicy, RateLimitUnit, TYPE_URL,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The node id Envoy Gateway's cache serves.
pub const EG_NODE_ID: &str = "envoy-ratelimit";
/// A listener domain as Envoy Gateway names it.
pub const EG_DOMAIN: &str = "default/eg/http";
/// The route-name generic key at the top of each chain.
pub const EG_ROUTE: &str = "httproute/default/backend/rule/0/match/0/*";

/// A resource on the wire.
pub fn any(config: &RateLimitConfig) -> Any {
    Any {
        type_url: TYPE_URL.to_owned(),
        value: config.encode_to_vec(),
    }
}

/// A descriptor node.
pub fn node(key: &str, value: &str, children: Vec<RateLimitDescriptor>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        key: key.into(),
        value: value.into(),
        descriptors: children,
        ..Default::default()
    }
}

/// What Envoy Gateway generates for `domain` with one HTTPRoute rule limiting every client
/// CIDR to `n` requests per `unit`: route → `rule-0-match-0` → `masked_remote_address`
/// `0.0.0.0/0`, the limit on the leaf.
pub fn eg_config(domain: &str, n: u32, unit: RateLimitUnit) -> RateLimitConfig {
    let mut leaf = node("masked_remote_address", "0.0.0.0/0", vec![]);
    leaf.rate_limit = Some(RateLimitPolicy {
        unit: unit as i32,
        requests_per_unit: n,
        ..Default::default()
    });
    RateLimitConfig {
        name: domain.into(),
        domain: domain.into(),
        descriptors: vec![node(
            EG_ROUTE,
            EG_ROUTE,
            vec![node("rule-0-match-0", "rule-0-match-0", vec![leaf])],
        )],
    }
}

/// The descriptor entries Envoy sends for [`eg_config`]'s chain.
pub fn eg_entries() -> Vec<(&'static str, &'static str)> {
    vec![
        (EG_ROUTE, EG_ROUTE),
        ("rule-0-match-0", "rule-0-match-0"),
        ("masked_remote_address", "0.0.0.0/0"),
    ]
}

/// A sluice xDS client running against a test server, with what it publishes.
pub struct Subscriber {
    /// The snapshot the client swaps.
    pub rules: Arc<arc_swap::ArcSwap<sluice::rules::Rules>>,
    /// Turns true at the first applied config.
    pub loaded: watch::Receiver<bool>,
    /// Where the load counters go.
    pub meter: sluice::meter::Meter,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client configuration for `server` as Envoy Gateway's ratelimit would use it (node id
/// `envoy-ratelimit`), with test-sized backoff (50 ms to 500 ms).
pub fn client_config(server: &XdsServer) -> sluice::xds::XdsConfig {
    let mut config = sluice::xds::XdsConfig::new(server.addr.to_string(), EG_NODE_ID);
    config.backoff_initial = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(500);
    config
}

/// Starts the client with `config`.
pub fn subscribe(config: sluice::xds::XdsConfig) -> Subscriber {
    let rules = Arc::new(arc_swap::ArcSwap::from_pointee(
        sluice::rules::Rules::default(),
    ));
    let (tx, loaded) = watch::channel(false);
    let meter = sluice::meter::Meter::prometheus();
    let task = sluice::xds::spawn(config, Arc::clone(&rules), tx, meter.clone())
        .expect("valid xds settings");
    Subscriber {
        rules,
        loaded,
        meter,
        task,
    }
}

impl Subscriber {
    /// The value of counter `name` (0 if never recorded).
    pub fn counter(&self, name: &str) -> u64 {
        self.meter
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The limit the rules in force put on [`eg_entries`] in `domain`.
    pub fn eg_limit(&self, domain: &str) -> Option<u32> {
        eg_limit(&self.rules.load(), domain)
    }

    /// Waits (at most 15 s) until [`Subscriber::eg_limit`] of `domain` is `want`.
    pub async fn wait_limit(&self, domain: &str, want: Option<u32>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.eg_limit(domain) != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "limit of {domain} is {:?}, want {want:?}",
                self.eg_limit(domain)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The `requests_per_unit` the rules put on [`eg_entries`] in `domain`.
pub fn eg_limit(rules: &sluice::rules::Rules, domain: &str) -> Option<u32> {
    use sluice::rules::model::Policy;
    match rules.lookup(domain, eg_entries()) {
        sluice::rules::Lookup::Matched { node, .. } => match &node.policy {
            Policy::Limited(limits) => limits.first().map(|l| l.requests_per_unit),
            _ => None,
        },
        _ => None,
    }
}

/// A plaintext test server holding Envoy Gateway's config at version "1" (`n` per hour), and a
/// client that has ACKed it.
pub async fn subscribed_at_v1(n: u32) -> (XdsServer, Subscriber) {
    let server = XdsServer::start().await;
    server.set(
        "1",
        &[eg_config(super::xds::EG_DOMAIN, n, RateLimitUnit::Hour)],
    );
    let client = subscribe(client_config(&server));
    server
        .wait_request("ACK of version 1", |r| r.is_ack() && r.version_info == "1")
        .await;
    (server, client)
}
