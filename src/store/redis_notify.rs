//! Freed-slot notices between replicas: `lua/slots.lua` publishes `<origin>:<key>` on
//! `<prefix>sluice:slots:freed` whenever it frees a slot (a release, or leases found expired),
//! and every replica listens, so its waiters for that key try again at once instead of at
//! their next periodic retry.
//!
//! One background task per subscription ([`listen`]), on a connection of its own (a
//! subscribed RESP2 connection serves nothing else): per node for independent shards (each
//! node publishes its own keys' notices); one for a Redis Cluster (a `PUBLISH` reaches every
//! node of a cluster, so any node will do: the seeds are tried in turn); the primary for
//! Sentinel (re-resolved at every reconnect, so a failover is followed).
//!
//! A lost connection is re-made with exponential backoff ([`BACKOFF`]); a silent one (a frozen
//! node, a dropped route) is found by a `PING` every [`KEEPALIVE`]. Notices published while a
//! task was away are lost: the slot backend's periodic retry covers them
//! (`SlotBackend::retry_every`). A replica's own notices are skipped (its waiting room has
//! already been told).

use crate::store::redis::RedisConfig;
use crate::store::redis_conn::{self, Topology};
use crate::store::StoreError;
use futures_util::StreamExt;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Client, RedisResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// First and longest wait before re-subscribing after a failure (doubling in between). The
/// longest stays short: notices missed meanwhile wait for the periodic retry.
pub const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// How often a quiet subscription is checked with a `PING`.
pub const KEEPALIVE: Duration = Duration::from_secs(5);

/// A subscription that lasted this long was healthy: the next failure starts the backoff over.
const HEALTHY: Duration = Duration::from_secs(10);

/// Where to subscribe.
#[derive(Clone)]
pub enum Source {
    /// One node (independent shards: one source per node).
    Node(Client),
    /// Any node of a Redis Cluster (its seeds, tried in turn).
    Cluster(Vec<Client>),
    /// The primary the sentinels name.
    Sentinel {
        /// The sentinels' URLs.
        sentinels: Vec<String>,
        /// The monitored primary's name.
        master: String,
    },
}

/// Where to listen for `config`'s deployment: every node, any cluster node, or the
/// sentinels' primary.
pub fn sources(config: &RedisConfig) -> Result<Vec<Source>, StoreError> {
    let ca = config.tls();
    Ok(match &config.topology {
        Topology::Shards => config
            .nodes
            .iter()
            .map(|url| redis_conn::client(url, ca).map(Source::Node))
            .collect::<Result<_, _>>()?,
        Topology::Cluster => vec![Source::Cluster(
            config
                .nodes
                .iter()
                .map(|url| redis_conn::client(url, ca))
                .collect::<Result<_, _>>()?,
        )],
        Topology::Sentinel { master } => vec![Source::Sentinel {
            sentinels: config.nodes.clone(),
            master: master.clone(),
        }],
    })
}

/// What a listener needs besides its source.
#[derive(Clone)]
pub struct Notices {
    /// `<prefix>sluice:slots:freed`.
    pub channel: String,
    /// This replica's id: notices starting with it are its own, and skipped.
    pub origin: String,
    /// Where the freed keys go (the waiting room subscribes to it).
    pub tx: broadcast::Sender<Arc<str>>,
    /// Deadline of connecting, subscribing and each keep-alive `PING`.
    pub timeout: Duration,
}

/// Subscribes to `source` and forwards other replicas' notices, re-subscribing after every
/// failure; runs until aborted.
pub async fn listen(source: Source, notices: Notices) {
    let mut backoff = BACKOFF.0;
    let mut turn = 0usize;
    loop {
        let started = Instant::now();
        match subscribe(&source, turn, &notices).await {
            Ok(pubsub) => {
                tracing::debug!(channel = %notices.channel, "subscribed to slot notices");
                let why = receive(pubsub, &notices).await;
                tracing::debug!(
                    reason = why,
                    "slot notices subscription ended; re-subscribing"
                );
                if started.elapsed() >= HEALTHY {
                    backoff = BACKOFF.0;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot subscribe to slot notices; retrying");
                turn = turn.wrapping_add(1);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// A subscribed connection to `source` (for a cluster: its `turn`-th seed).
async fn subscribe(
    source: &Source,
    turn: usize,
    notices: &Notices,
) -> Result<redis::aio::PubSub, String> {
    let within = notices.timeout.max(Duration::from_secs(1));
    let connect = async {
        let client = match source {
            Source::Node(c) => c.clone(),
            Source::Cluster(seeds) => match seeds.get(turn % seeds.len().max(1)) {
                Some(c) => c.clone(),
                None => return Err("no cluster seed".to_owned()),
            },
            Source::Sentinel { sentinels, master } => primary(sentinels, master)
                .await
                .map_err(|e| e.to_string())?,
        };
        let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
        pubsub
            .subscribe(&notices.channel)
            .await
            .map_err(|e| e.to_string())?;
        Ok(pubsub)
    };
    tokio::time::timeout(within, connect)
        .await
        .map_err(|_| format!("no subscription within {within:?}"))?
}

/// The primary's client, as the sentinels name it now.
async fn primary(sentinels: &[String], master: &str) -> RedisResult<Client> {
    let mut client =
        SentinelClient::build(sentinels.to_vec(), master, None, SentinelServerType::Master)?;
    client.async_get_client().await
}

/// Forwards notices until the connection ends or stops answering; why it ended.
async fn receive(pubsub: redis::aio::PubSub, notices: &Notices) -> &'static str {
    let (mut sink, mut stream) = pubsub.split();
    let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let within = notices.timeout.max(Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return "connection closed" };
                forward(msg.get_payload_bytes(), notices);
            }
            _ = keepalive.tick() => {
                let pong = tokio::time::timeout(within, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return "no answer to PING";
                }
            }
        }
    }
}

/// Sends the key of one notice to the waiting room, unless this replica sent it.
fn forward(payload: &[u8], notices: &Notices) {
    let Ok(text) = std::str::from_utf8(payload) else {
        return; // keys are UTF-8: not a notice of ours
    };
    let Some((origin, key)) = text.split_once(':') else {
        return;
    };
    if origin != notices.origin {
        // No receiver (no waiting room yet) is fine: nobody waits.
        let _ = notices.tx.send(Arc::from(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_and_malformed_notices_are_skipped() {
        let (tx, mut rx) = broadcast::channel(8);
        let n = Notices {
            channel: "c".into(),
            origin: "me".into(),
            tx,
            timeout: Duration::from_millis(10),
        };
        forward(b"me:k1", &n);
        forward(b"nocolon", &n);
        forward(&[0xff, b':', b'k'], &n);
        forward(b"other:k:2", &n);
        assert_eq!(rx.try_recv().ok().as_deref(), Some("k:2"));
        assert!(rx.try_recv().is_err());
    }
}
