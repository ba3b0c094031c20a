//! The contract of a slot table: what the waiting room asks of where slots live (this process,
//! or Redis shared by every replica).
//!
//! Per key, a table holds **leases**: named ones (a request id holds at most one slot of a key)
//! and anonymous ones. Each lease ends when released or, at the latest, `lease_ms` after it was
//! taken. A second acquire by an id that already holds a slot is refused (`InUse`) and leaves
//! an **absorb** mark: that duplicate's own release (Envoy sends one for every request, denied
//! ones included) is absorbed instead of freeing the holder's slot — so reusing an id never
//! buys extra slots.

use crate::store::StoreError;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What to do with one key's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotAction {
    /// Take a slot if one is free (never waits: waiting is the room's job).
    Acquire,
    /// Give back the slot held by the op's lease (or the oldest anonymous one).
    Release,
    /// Read the key's state, changing nothing but dropping expired leases.
    Peek,
    /// The request was denied elsewhere: if its lease id holds a slot here (a duplicate id),
    /// absorb its coming release as [`SlotAction::Acquire`]'s `InUse` would.
    Note,
}

/// One operation on one key's slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotOp {
    /// The slot table's key ([`crate::keys`], marked apart from rate counters).
    pub key: String,
    /// Slots of the key.
    pub max: u32,
    /// How long a lease lasts without a release, in milliseconds.
    pub lease_ms: u64,
    /// The request's lease id (`lease_id` attribute); `None`: an anonymous lease.
    pub lease: Option<String>,
    /// What to do.
    pub action: SlotAction,
    /// The rule's stats key: labels metrics, and a table remembers it for the leases a
    /// sweep finds expired between requests.
    pub rule: Arc<str>,
}

/// What a slot operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotResult {
    /// A slot was taken.
    Granted,
    /// Every slot is taken.
    Full,
    /// This lease id already holds a slot of the key: refused; its release will be absorbed.
    InUse,
    /// A slot was freed.
    Released,
    /// The release matched a duplicate's absorb mark: nothing freed (as designed).
    Absorbed,
    /// The release matched no lease (repeated, stray, or of a request that never held one).
    Stray,
    /// Peek / Note: nothing taken or freed.
    Unchanged,
    /// The table has no room for another key (memory bound): refused like `Full`.
    NoRoom,
}

/// A slot operation's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotOutcome {
    /// What happened.
    pub result: SlotResult,
    /// Slots held after the op.
    pub held: u32,
    /// Until the earliest lease of the key ends by expiry (`None` when none is held): when a
    /// slot is expected to free at the latest.
    pub next_expiry: Option<Duration>,
    /// Leases this op found expired and dropped (for `sluice_concurrency_leases_expired_total`).
    pub expired: u32,
    /// Decided by the failure policy: the key's Redis shard did not answer.
    pub fallback: bool,
}

impl SlotOutcome {
    /// An outcome with `result`, `held` slots and nothing else to say.
    pub fn new(result: SlotResult, held: u32) -> SlotOutcome {
        SlotOutcome {
            result,
            held,
            next_expiry: None,
            expired: 0,
            fallback: false,
        }
    }
}

/// Where slots live.
pub trait SlotBackend: Send + Sync + 'static {
    /// Runs `ops` (one request's, each on its own key) and answers one outcome per op, in
    /// order; a networked table answers by `deadline` if there is one.
    fn run<'a>(
        &'a self,
        ops: &'a [SlotOp],
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Vec<SlotOutcome>, StoreError>>;

    /// Keys whose slots were freed somewhere else (another replica's release), for waiters
    /// here; `None` when every release passes through this process.
    fn freed_elsewhere(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<str>>> {
        None
    }

    /// Drops leases that ended without a release; how many, per rule (a periodic task calls
    /// it; a table shared with other replicas expires by itself and reports nothing).
    fn sweep(&self) -> Vec<(Arc<str>, u64)> {
        Vec::new()
    }

    /// How often waiters retry on their own when no release notice came (lost notices,
    /// leases expiring elsewhere); `None` when notices cannot be lost.
    fn retry_every(&self) -> Option<Duration> {
        None
    }
}
