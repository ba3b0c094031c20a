//! One Redis shard and what judges its health.
//!
//! A failed call is classified ([`classify`]) before it reaches the shard's breaker:
//! - **the node failed** (refused, reset, I/O error; `LOADING`, `MASTERDOWN`, `READONLY`,
//!   `TRYAGAIN`, `CLUSTERDOWN`, `BUSY`, `MISCONF`, `NOREPLICAS` replies: the node cannot
//!   serve): a breaker failure, and the call is decided by the failure policy;
//! - **the request failed** (any other error reply: a script error, `WRONGTYPE`, `OOM`…; or an
//!   answer of the wrong shape): Redis is alive and answered, so the breaker records an answer,
//!   never a failure; the request alone gets [`StoreError::Rejected`];
//! - **no answer in time**: the call may still run on Redis, so it must not be charged again
//!   locally, and a timeout alone does not prove the node is down (a request too big for its
//!   deadline is not). A `PING` off the request path ([`Shard::timed_out`]) decides: timeouts
//!   count as failures only if that `PING` gets no answer either.
//!
//! While the breaker is open, [`watch`] probes the node with `PING` every interval and closes
//! the breaker as soon as it answers; requests never wait on it.

use crate::meter::Meter;
use crate::store::breaker::{Breaker, BreakerConfig};
use crate::store::redis_conn::Conn;
use crate::store::StoreError;
use redis::{ErrorKind, RedisError, ServerErrorKind};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Why a call to a shard failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No answer within the call's deadline; the call may still run on Redis.
    Timeout(String),
    /// The node could not serve the call.
    Node(String),
    /// Redis answered this request with an error.
    Request(String),
}

impl From<Fault> for StoreError {
    fn from(f: Fault) -> StoreError {
        match f {
            Fault::Timeout(m) | Fault::Node(m) => StoreError::Unavailable(m),
            Fault::Request(m) => StoreError::Rejected(m),
        }
    }
}

/// Error-reply codes that mean the node cannot serve right now, whatever the request.
/// `OOM` is here: a node over its `maxmemory` refuses every write, not this request's.
const NODE_CODES: [&str; 4] = ["BUSY", "MISCONF", "NOREPLICAS", "OOM"];

/// Classifies an error from shard `name`.
pub fn classify(name: &str, e: &RedisError) -> Fault {
    let message = format!("redis {name}: {e}");
    match e.kind() {
        ErrorKind::Server(kind) => match kind {
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask => Fault::Node(message),
            _ => Fault::Request(message),
        },
        ErrorKind::Extension if e.code().is_some_and(|c| NODE_CODES.contains(&c)) => {
            Fault::Node(message)
        }
        ErrorKind::Extension | ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            Fault::Request(message)
        }
        _ if e.is_timeout() => Fault::Timeout(message),
        _ => Fault::Node(message),
    }
}

/// One Redis node (or the whole cluster, or the sentinel-managed primary).
pub struct Shard {
    /// `host:port` (or socket path), for errors, logs and metric labels.
    pub name: String,
    /// Multiplexed connection; concurrent calls share it (Redis sees them pipelined).
    pub conn: Conn,
    /// Whether to ask this shard at all right now.
    pub breaker: Breaker,
    /// `sluice_redis_call_duration_seconds{shard}`; the handle is cached per shard.
    pub latency: metrics::Histogram,
    /// `sluice_redis_request_errors_total{shard}`: calls Redis answered with an error.
    pub request_errors: metrics::Counter,
    /// `sluice_redis_timeouts_total{shard}`: calls that missed their deadline.
    pub timeouts: metrics::Counter,
    /// How long a health `PING` may take (`redis_conn::health_deadline`).
    ping_within: Duration,
    /// Timeouts not yet judged by a confirming `PING`.
    suspects: AtomicU32,
    /// Whether a confirming `PING` is in flight (one at a time, so a burst of timeouts costs
    /// one `PING`, not one each).
    confirming: AtomicBool,
    /// Wakes [`watch`] when the breaker opens.
    opened: Notify,
}

impl Shard {
    /// A shard with a closed breaker.
    pub fn new(
        name: String,
        conn: Conn,
        breaker: BreakerConfig,
        ping_within: Duration,
        meter: &Meter,
    ) -> Shard {
        let label = name.clone();
        let (latency, request_errors, timeouts) = meter.record(|| {
            (
                metrics::histogram!("sluice_redis_call_duration_seconds", "shard" => label.clone()),
                metrics::counter!("sluice_redis_request_errors_total", "shard" => label.clone()),
                metrics::counter!("sluice_redis_timeouts_total", "shard" => label),
            )
        });
        Shard {
            breaker: Breaker::new(&name, breaker, meter),
            latency,
            request_errors,
            timeouts,
            name,
            conn,
            ping_within,
            suspects: AtomicU32::new(0),
            confirming: AtomicBool::new(false),
            opened: Notify::new(),
        }
    }

    /// Settles one script call: records what it says about the node (answered, timed out,
    /// failed) and returns its outcomes, the request's own error, or the failure policy's
    /// decision — `fall_back(true)` when the node failed (take locally), `fall_back(false)`
    /// when the call missed its deadline (it may still run on Redis: take nothing locally).
    /// `what` names the call in logs.
    pub fn settle<T>(
        self: &Arc<Self>,
        what: &str,
        result: Result<T, Fault>,
        fall_back: impl FnOnce(bool) -> T,
    ) -> Result<T, StoreError> {
        match result {
            Ok(outcomes) => {
                self.answered();
                Ok(outcomes)
            }
            Err(Fault::Request(e)) => {
                // Redis is alive and answered: this request fails alone.
                self.answered();
                self.request_errors.increment(1);
                tracing::warn!(error = %e, call = what, "redis refused a request");
                Err(StoreError::Rejected(e))
            }
            Err(Fault::Timeout(e)) => {
                self.timed_out();
                tracing::debug!(error = %e, call = what, "redis call missed its deadline; deciding without taking");
                Ok(fall_back(false))
            }
            Err(Fault::Node(e)) => {
                self.failed();
                tracing::debug!(error = %e, call = what, "redis call failed; deciding by the failure policy");
                Ok(fall_back(true))
            }
        }
    }

    /// Records a call that Redis answered (with results or with an error reply).
    pub fn answered(&self) {
        self.breaker.record(true);
    }

    /// Records a failure of the node; wakes the prober if the breaker opened.
    pub fn failed(&self) {
        if self.breaker.record(false) {
            self.opened.notify_one();
        }
    }

    /// Records a call that missed its deadline: a suspect, judged by a `PING` in the
    /// background (the caller does not wait).
    pub fn timed_out(self: &Arc<Self>) {
        self.timeouts.increment(1);
        self.suspects.fetch_add(1, Ordering::AcqRel);
        if self.confirming.swap(true, Ordering::AcqRel) {
            return; // the PING in flight judges this timeout too
        }
        let shard = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let alive = shard.conn.ping(shard.ping_within).await;
                let suspects = shard.suspects.swap(0, Ordering::AcqRel);
                if !alive {
                    tracing::debug!(shard = %shard.name, suspects, "timeouts confirmed by a failed PING");
                    for _ in 0..suspects {
                        shard.failed();
                    }
                }
                shard.confirming.store(false, Ordering::Release);
                // A timeout that arrived after the swap and found the flag still set is judged
                // by another round, unless a new PING was already started for it.
                if shard.suspects.load(Ordering::Acquire) == 0
                    || shard.confirming.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
    }

    /// One probe: `PING`, and once more if that failed — the first command after an outage
    /// may only collect the connection's last failed reconnect (and start a new one), the
    /// second then waits for that fresh connection.
    async fn probe(&self) -> bool {
        self.conn.ping(self.ping_within).await || self.conn.ping(self.ping_within).await
    }
}

/// Probes `shard` while its breaker is open, every interval, until the store drops the task.
pub async fn watch(shard: Arc<Shard>) {
    loop {
        let Some(at) = shard.breaker.probe_at() else {
            shard.opened.notified().await;
            continue;
        };
        tokio::time::sleep_until(at).await;
        if !shard.breaker.begin_probe() {
            continue;
        }
        let ok = shard.probe().await;
        shard.breaker.end_probe(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, detail: &str) -> RedisError {
        redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
    }

    #[test]
    fn error_replies_are_the_requests_own() {
        for code in ["WRONGTYPE", "NOPERM", "NOSCRIPT_X", "ERR"] {
            let f = classify("n", &server_error(code, "x"));
            assert!(matches!(f, Fault::Request(_)), "{code}: {f:?}");
        }
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(classify("n", &io), Fault::Node(_)));
        let slow = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(matches!(classify("n", &slow), Fault::Timeout(_)));
        for code in NODE_CODES {
            assert!(matches!(
                classify("n", &server_error(code, "x")),
                Fault::Node(_)
            ));
        }
    }
}
