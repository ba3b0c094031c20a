//! Counter storage. A [`Store`] takes all ops of one request at once, so a networked store can
//! make one round trip per shard and decide a request's counters together.
//!
//! - [`memory`]: the embedded store (default): sharded maps in this process.
//! - [`redis`]: counters in Redis, sharded over nodes by [`ring`], one script call per shard;
//!   [`redis_slots`]: concurrency slots there too, with [`redis_notify`] telling replicas of
//!   freed slots.

pub mod breaker;
pub mod fallback;
pub mod memory;
pub mod redis;
pub mod redis_conn;
pub mod redis_notify;
pub mod redis_slots;
pub mod replay;
pub mod ring;
pub mod shard;
pub mod slots_fallback;

use crate::limiter::once::OnceCall;
use crate::limiter::{Op, Outcome};
use std::future::Future;
use tokio::time::Instant;

/// Why a store could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backing service did not answer in time or at all.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backing service answered this request with an error (a Redis script error,
    /// `WRONGTYPE`, `OOM`…): the request's own failure, not the service's, so it fails alone
    /// (gRPC `INTERNAL`) and never counts as a circuit-breaker failure.
    #[error("store refused the request: {0}")]
    Rejected(String),
}

/// Where counters live: the limiter's side of a store.
pub trait Store: Send + Sync + 'static {
    /// Runs `ops` (one request's counters) and returns one outcome per op, in order; a
    /// networked store answers by `deadline` (the caller's `grpc-timeout`) if there is one.
    fn apply(
        &self,
        ops: &[Op],
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Vec<Outcome>, StoreError>> + Send;

    /// Runs `ops` of an idempotent call ([`crate::limiter::once`]): the first attempt with
    /// the call's key is decided as [`Store::apply`] would and recorded, in the same atomic step
    /// as its counters; a repeat within the ttl is answered from the record (with
    /// [`Outcome::replayed`]): a decision charges nothing, a settlement runs `call.repeat`.
    /// No extra round trip.
    fn apply_once(
        &self,
        ops: &[Op],
        call: &OnceCall<'_>,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Vec<Outcome>, StoreError>> + Send;

    /// Live counters held in this process, for the `sluice_memory_store_keys` gauge (`None`
    /// when counters live elsewhere).
    fn live_keys(&self) -> Option<usize> {
        None
    }

    /// Deletes the counters of `ops`, so their limits start afresh (the admin API's reset).
    fn reset(&self, ops: &[Op]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where runtime overrides are shared between replicas: the overrides' side of a store.
/// A store private to the process shares nothing (overrides then live only in memory).
pub trait OverrideMedium: Send + Sync + 'static {
    /// The runtime overrides shared by every replica, as `(id, document)` pairs; `None` when
    /// this store is private to the process.
    fn overrides_load(
        &self,
    ) -> impl Future<Output = Result<Option<Vec<(String, String)>>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// Stores (`Some`) or deletes (`None`) one shared override document.
    fn overrides_save(
        &self,
        _id: &str,
        _doc: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Deletes a shared override only if it still holds `doc` (an expired override must not
    /// take a newer one with the same target with it).
    fn overrides_expire(
        &self,
        _id: &str,
        _doc: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }
}

/// A whole backend: counters and the overrides' medium (what the server and the admin API
/// are generic over).
pub trait Storage: Store + OverrideMedium {}

impl<T: Store + OverrideMedium> Storage for T {}
