//! Connections to Redis, by deployment: independent nodes (one self-reconnecting multiplexed
//! connection each), a Redis Cluster (one cluster connection that routes by slot), or a
//! Sentinel-managed primary (re-resolved through the sentinels after an error, so a failover
//! is followed without a restart).

use crate::store::StoreError;
use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{RedisResult, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the Redis nodes are deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// Independent nodes; sluice shards keys over them by consistent hashing.
    Shards,
    /// One Redis Cluster; `nodes` are seed nodes, the cluster routes keys by slot.
    Cluster,
    /// A primary found through sentinels; `nodes` are the sentinels.
    Sentinel {
        /// The monitored primary's name (`sentinel monitor <name> …`).
        master: String,
    },
}

/// One way of sending a command to Redis.
pub enum Conn {
    /// A single node.
    Node(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
    /// A Sentinel-managed primary.
    Sentinel(Arc<SentinelPrimary>),
}

impl Conn {
    /// Sends one script invocation.
    pub async fn invoke(&self, inv: &redis::ScriptInvocation<'_>) -> RedisResult<Vec<i64>> {
        match self {
            Conn::Node(c) => inv.invoke_async(&mut c.clone()).await,
            Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
            Conn::Sentinel(s) => {
                let mut c = s.current();
                let result = inv.invoke_async(&mut c).await;
                if result.is_err() {
                    s.refresh();
                }
                result
            }
        }
    }

    /// Whether the node answers `PING` within `within`. After a failure (the node is down, or
    /// a fresh connection is still being made) a Sentinel-managed primary is re-resolved.
    pub async fn ping(&self, within: Duration) -> bool {
        let answered = matches!(
            tokio::time::timeout(within, self.command(&redis::cmd("PING"))).await,
            Ok(Ok(_))
        );
        if !answered {
            if let Conn::Sentinel(s) = self {
                s.refresh();
            }
        }
        answered
    }

    /// Sends one plain command (used by health probes and tests).
    pub async fn command(&self, cmd: &redis::Cmd) -> RedisResult<Value> {
        match self {
            Conn::Node(c) => cmd.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
            Conn::Sentinel(s) => cmd.query_async(&mut s.current()).await,
        }
    }
}

/// How long a health `PING` may take for a call deadline of `timeout` (10 × the deadline,
/// within 100 ms ..= 1 s). A `PING` queues behind every script before it on the node, so it
/// must outlast a script that merely missed its call's deadline, yet stay short enough that a
/// frozen node is recognised promptly.
pub fn health_deadline(timeout: Duration) -> Duration {
    (timeout * 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Connection settings shared by every topology. Each call's own deadline is enforced by the
/// store (`tokio::time::timeout`); the connection's response timeout is only the outer bound
/// of how long an abandoned call is tracked, and must not cut a health `PING` short.
fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(100))))
        .set_response_timeout(Some(health_deadline(timeout)))
        // One connection attempt per reconnect: a dead node fails the calls waiting on it at
        // once (a node failure, not a timeout); the breaker's prober retries at its own pace.
        .set_number_of_retries(0)
}

/// Makes sure rustls has its process-wide crypto provider (idempotent).
fn tls_ready() {
    // An error means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// PEM material for `rediss://`: a CA replacing the system roots, a client certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsPem<'a> {
    /// CA certificate(s) trusted instead of the system roots.
    pub ca: Option<&'a [u8]>,
    /// Client certificate chain and key, for servers that verify clients.
    pub client: Option<(&'a [u8], &'a [u8])>,
}

/// The certificates as redis-rs wants them, if any were given.
fn certificates(tls: TlsPem<'_>) -> Option<redis::TlsCertificates> {
    if tls.ca.is_none() && tls.client.is_none() {
        return None;
    }
    Some(redis::TlsCertificates {
        client_tls: tls.client.map(|(cert, key)| redis::ClientTlsConfig {
            client_cert: cert.to_vec(),
            client_key: key.to_vec(),
        }),
        root_cert: tls.ca.map(<[u8]>::to_vec),
    })
}

/// A client for the node at `url` (no connection yet), with `tls` for `rediss://`.
pub fn client(url: &str, tls: TlsPem<'_>) -> Result<redis::Client, StoreError> {
    tls_ready();
    let bad = |e: redis::RedisError| StoreError::Unavailable(format!("bad Redis URL: {e}"));
    match certificates(tls) {
        Some(certs) if url.starts_with("rediss://") => {
            redis::Client::build_with_tls(url, certs).map_err(bad)
        }
        _ => redis::Client::open(url).map_err(bad),
    }
}

/// Connects to one node: `(name, connection)`, with `tls` for `rediss://`.
pub async fn node(
    url: &str,
    timeout: Duration,
    tls: TlsPem<'_>,
) -> Result<(String, Conn), StoreError> {
    let client = client(url, tls)?;
    let name = client.get_connection_info().addr().to_string();
    let conn = within(
        timeout,
        &name,
        ConnectionManager::new_with_config(client, manager_config(timeout)),
    )
    .await?;
    Ok((name, Conn::Node(conn)))
}

/// Connects to a Redis Cluster through its seed nodes.
pub async fn cluster(
    seeds: &[String],
    timeout: Duration,
    tls: TlsPem<'_>,
) -> Result<(String, Conn), StoreError> {
    tls_ready();
    // The name becomes a metric label and appears in errors: never with credentials.
    let shown: Vec<String> = seeds
        .iter()
        .map(|u| crate::settings::redact_url(u))
        .collect();
    let name = format!("cluster({})", shown.join(","));
    let mut builder = redis::cluster::ClusterClient::builder(seeds.to_vec())
        .connection_timeout(timeout.max(Duration::from_millis(100)))
        .response_timeout(health_deadline(timeout));
    if let Some(certs) = certificates(tls) {
        builder = builder.certs(certs);
    }
    let client = builder
        .build()
        .map_err(|e| StoreError::Unavailable(format!("{name}: {e}")))?;
    let conn = within(timeout, &name, client.get_async_connection()).await?;
    Ok((name, Conn::Cluster(conn)))
}

/// Finds the primary `master` through `sentinels` and connects to it.
pub async fn sentinel(
    sentinels: &[String],
    master: &str,
    timeout: Duration,
) -> Result<(String, Conn), StoreError> {
    let name = format!("sentinel({master})");
    let client =
        SentinelClient::build(sentinels.to_vec(), master, None, SentinelServerType::Master)
            .map_err(|e| StoreError::Unavailable(format!("{name}: {e}")))?;
    let client = tokio::sync::Mutex::new(client);
    let conn = resolve(&client, timeout, &name).await?;
    let primary = SentinelPrimary {
        client,
        conn: ArcSwap::from_pointee(conn),
        refreshing: AtomicBool::new(false),
        timeout,
        name: name.clone(),
    };
    Ok((name, Conn::Sentinel(Arc::new(primary))))
}

/// A Sentinel-managed primary and the current connection to it.
pub struct SentinelPrimary {
    /// Asks the sentinels who the primary is (needs `&mut`, hence the lock).
    client: tokio::sync::Mutex<SentinelClient>,
    /// The connection to the last known primary.
    conn: ArcSwap<ConnectionManager>,
    /// Whether a re-resolution is under way (one at a time).
    refreshing: AtomicBool,
    /// Deadline for resolving and connecting.
    timeout: Duration,
    /// For errors and logs.
    name: String,
}

impl SentinelPrimary {
    /// The connection to the last known primary.
    fn current(&self) -> ConnectionManager {
        ConnectionManager::clone(&self.conn.load())
    }

    /// Asks the sentinels again (in the background) after an error: the primary may have moved.
    fn refresh(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            match resolve(&me.client, me.timeout, &me.name).await {
                Ok(conn) => {
                    me.conn.store(Arc::new(conn));
                    tracing::info!(primary = %me.name, "re-resolved the primary through the sentinels");
                }
                Err(e) => {
                    tracing::warn!(primary = %me.name, error = %e, "sentinel re-resolution failed")
                }
            }
            me.refreshing.store(false, Ordering::Release);
        });
    }
}

/// Asks the sentinels for the primary and connects to it.
async fn resolve(
    client: &tokio::sync::Mutex<SentinelClient>,
    timeout: Duration,
    name: &str,
) -> Result<ConnectionManager, StoreError> {
    let primary = within(timeout, name, async {
        client.lock().await.async_get_client().await
    })
    .await?;
    within(
        timeout,
        name,
        ConnectionManager::new_with_config(primary, manager_config(timeout)),
    )
    .await
}

/// Runs a connect step within `timeout` (at least 2 s: start-up, not the hot path).
async fn within<T>(
    timeout: Duration,
    name: &str,
    f: impl std::future::Future<Output = RedisResult<T>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout.max(Duration::from_secs(2)), f)
        .await
        .map_err(|_| StoreError::Unavailable(format!("redis {name}: connect timed out")))?
        .map_err(|e| StoreError::Unavailable(format!("redis {name}: {e}")))
}
