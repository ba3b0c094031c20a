//! Counter storage. A [`Store`] takes all ops of one request at once, so a networked store can
//! make one round trip per shard and decide a request's counters together.
//!
//! - [`memory`]: the embedded store (default): sharded maps in this process.
//! - [`redis`]: counters in Redis, sharded over nodes by [`ring`], one script call per shard.

pub mod fallback;
pub mod memory;
pub mod redis;
pub mod redis_conn;
pub mod ring;

use crate::limiter::{Op, Outcome};
use std::future::Future;
use tokio::time::Instant;

/// Why a store could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backing service did not answer in time or at all.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Where counters live.
pub trait Store: Send + Sync + 'static {
    /// Runs `ops` (one request's counters) and returns one outcome per op, in order; a
    /// networked store answers by `deadline` (the caller's `grpc-timeout`) if there is one.
    fn apply(
        &self,
        ops: &[Op],
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Vec<Outcome>, StoreError>> + Send;
}
