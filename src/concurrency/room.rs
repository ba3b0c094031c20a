//! The waiting room: requests that found every slot of a key taken wait here — their
//! ShouldRateLimit call held — until a slot is handed to them or their wait ends.
//!
//! Per key with waiters there is a [`Room`]: a [`FairQueue`] and a **pump**. The pump runs
//! whenever a slot may have freed (a release through this replica, a release notice from
//! another replica, a lease's expiry, a periodic retry for shared tables) and serves waiters in
//! fair order: it takes a slot *on behalf of* the waiter at the head, then hands it over. Only
//! one pump runs per key; a notice arriving while it runs makes it go round once more, so no
//! wake-up is lost. New arrivals queue behind existing waiters instead of taking a freed slot
//! first (no barging), and a key with free slots and no waiters is served at once (the room
//! is work-conserving: one tenant alone gets every slot).
//!
//! A wait ends at the earliest of: the rule's `queue_timeout`, the server's longest call
//! ([`WaitingRoom::new`]'s `max_wait`), and the caller's deadline (`grpc-timeout`) less a small
//! margin, so the caller gets OVER_LIMIT rather than its own timeout. A call cancelled while
//! waiting (Envoy gave up) leaves the queue; a slot that reached it in that instant is given
//! back. Locks are never held across an `.await`.

use crate::concurrency::fair::{FairQueue, FlowKey};
use crate::concurrency::metrics::RoomMetrics;
use crate::concurrency::slots::{SlotAction, SlotBackend, SlotOp, SlotOutcome, SlotResult};
use crate::store::StoreError;
use hashbrown::HashMap;
use parking_lot::Mutex;
use seat::Seat;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long the pump waits after a backend failure before trying again.
const BACKEND_RETRY: Duration = Duration::from_millis(100);
/// How often expired leases are swept from a table private to this process.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One request's claim on one key's slots (a concurrency descriptor).
#[derive(Debug, Clone)]
pub struct Claim {
    /// The slot op (its `action` says acquire, release or peek).
    pub op: SlotOp,
    /// Waiters the key's queue may hold (0: no waiting).
    pub queue: u32,
    /// The rule's longest wait.
    pub queue_timeout: Duration,
    /// The waiter's `fair_by` value.
    pub flow: FlowKey,
    /// The waiter's weight.
    pub weight: u32,
    /// `shadow_mode`: never waits, never denies (the status says what would have happened).
    pub shadow: bool,
}

/// A waiter in a queue.
struct Waiter {
    /// Hands the slot (or a refusal) to the waiting call.
    tx: oneshot::Sender<SlotOutcome>,
    /// What to run on its behalf.
    op: SlotOp,
}

/// One key's waiters and its pump's state.
#[derive(Default)]
struct Room {
    /// Who waits, in fair order.
    queue: FairQueue<Waiter>,
    /// A pump is running for this key.
    pumping: bool,
    /// A notice arrived while the pump ran: go round once more before stopping.
    kicked: bool,
    /// A retry is already scheduled for this instant (or earlier).
    retry_at: Option<Instant>,
}

/// Every key's waiting room over one slot backend.
pub struct WaitingRoom {
    /// Where slots live.
    backend: Arc<dyn SlotBackend>,
    /// Rooms of keys that have waiters (dropped when the last one leaves).
    rooms: Mutex<HashMap<String, Room>>,
    /// Waiter ids.
    ids: AtomicU64,
    /// The longest any call may wait (the server's request timeout, less a margin).
    max_wait: Duration,
    /// Series per rule.
    metrics: RoomMetrics,
}

impl WaitingRoom {
    /// A waiting room over `backend`; no wait lasts longer than `max_wait`.
    pub fn new(
        backend: Arc<dyn SlotBackend>,
        max_wait: Duration,
        metrics: RoomMetrics,
    ) -> Arc<WaitingRoom> {
        Arc::new(WaitingRoom {
            backend,
            rooms: Mutex::new(HashMap::new()),
            ids: AtomicU64::new(0),
            max_wait,
            metrics,
        })
    }

    /// Waiters per key right now (the admin API): `(queued, per flow)`.
    pub fn queued(&self, key: &str) -> (usize, Vec<(Option<String>, usize)>) {
        let rooms = self.rooms.lock();
        match rooms.get(key) {
            None => (0, Vec::new()),
            Some(r) => (
                r.queue.len(),
                r.queue
                    .flows()
                    .map(|(k, n)| (k.as_deref().map(str::to_owned), n))
                    .collect(),
            ),
        }
    }

    /// The backend (peeks for the admin API).
    pub fn backend(&self) -> &Arc<dyn SlotBackend> {
        &self.backend
    }

    /// Runs one request's claims and answers one outcome per claim, in order.
    ///
    /// `denied`: the request is already refused by a rate limit, so nothing is acquired (a
    /// lease id holding a slot is noted, so this request's coming release is absorbed).
    /// Releases and peeks run first, together; acquisitions then take free slots at once, or
    /// wait (one key after the other, in request order). When one acquisition fails, the
    /// slots this request took by lease id are given back (its release will then be stray);
    /// anonymous ones are kept for the release Envoy sends for every request.
    pub async fn admit(
        self: &Arc<Self>,
        claims: &[Claim],
        denied: bool,
        deadline: Option<Instant>,
    ) -> Result<Vec<SlotOutcome>, StoreError> {
        let mut out: Vec<Option<SlotOutcome>> = vec![None; claims.len()];
        let mut first: Vec<SlotOp> = Vec::new();
        let mut first_at: Vec<usize> = Vec::new();
        let mut direct: Vec<SlotOp> = Vec::new();
        let mut direct_at: Vec<usize> = Vec::new();
        {
            let rooms = self.rooms.lock();
            for (i, c) in claims.iter().enumerate() {
                match c.op.action {
                    SlotAction::Acquire if denied => {
                        let mut op = c.op.clone();
                        op.action = SlotAction::Note;
                        first.push(op);
                        first_at.push(i);
                    }
                    // Someone already waits for this key: queue behind them (no barging).
                    SlotAction::Acquire
                        if c.queue > 0
                            && !c.shadow
                            && rooms.get(&c.op.key).is_some_and(|r| !r.queue.is_empty()) => {}
                    SlotAction::Acquire => {
                        direct.push(c.op.clone());
                        direct_at.push(i);
                    }
                    _ => {
                        first.push(c.op.clone());
                        first_at.push(i);
                    }
                }
            }
        }
        if !first.is_empty() {
            let outcomes = self.backend.run(&first, deadline).await?;
            for ((i, o), op) in first_at.iter().zip(outcomes).zip(&first) {
                self.metrics.outcome(&op.rule, &o, false);
                if o.result == SlotResult::Released || o.expired > 0 {
                    self.kick(&op.key);
                }
                out[*i] = Some(o);
            }
        }
        if !direct.is_empty() {
            let outcomes = self.backend.run(&direct, deadline).await?;
            for ((i, o), op) in direct_at.iter().zip(outcomes).zip(&direct) {
                let c = &claims[*i];
                let will_wait = o.result == SlotResult::Full && c.queue > 0 && !c.shadow;
                if !will_wait {
                    self.metrics.outcome(&op.rule, &o, false);
                } else if o.expired > 0 {
                    self.metrics.expired(&op.rule, u64::from(o.expired));
                }
                out[*i] = Some(o);
            }
        }
        for (i, c) in claims.iter().enumerate() {
            if c.op.action != SlotAction::Acquire || denied {
                continue;
            }
            let waits = match out[i] {
                None => true,
                Some(o) => o.result == SlotResult::Full && c.queue > 0 && !c.shadow,
            };
            if waits {
                out[i] = Some(self.wait(c, deadline).await?);
            }
        }
        let out: Vec<SlotOutcome> = out
            .into_iter()
            .map(|o| o.unwrap_or(SlotOutcome::new(SlotResult::Unchanged, 0)))
            .collect();
        let failed = claims.iter().zip(&out).any(|(c, o)| {
            c.op.action == SlotAction::Acquire && !c.shadow && o.result != SlotResult::Granted
        });
        if failed && !denied {
            let back: Vec<SlotOp> = claims
                .iter()
                .zip(&out)
                .filter(|(c, o)| o.result == SlotResult::Granted && c.op.lease.is_some())
                .map(|(c, _)| release_of(&c.op))
                .collect();
            if !back.is_empty() {
                self.give_back(back).await;
            }
        }
        Ok(out)
    }

    /// Releases slots nobody keeps; a failure leaves them to expire.
    async fn give_back(self: &Arc<Self>, ops: Vec<SlotOp>) {
        if let Ok(outcomes) = self.backend.run(&ops, None).await {
            for (op, o) in ops.iter().zip(outcomes) {
                if o.result == SlotResult::Released {
                    self.metrics.given_back(&op.rule);
                    self.kick(&op.key);
                }
            }
        }
    }

    /// Waits for a slot of `claim`'s key.
    async fn wait(
        self: &Arc<Self>,
        claim: &Claim,
        deadline: Option<Instant>,
    ) -> Result<SlotOutcome, StoreError> {
        let started = Instant::now();
        let mut until = started + claim.queue_timeout.min(self.max_wait);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(started);
            until = until.min(started + left.saturating_sub(margin(left)));
        }
        let rule = claim.op.rule.clone();
        if until <= started {
            self.metrics.rejected(&rule, "full");
            return self.refusal(claim, deadline).await;
        }
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let queued = {
            let mut rooms = self.rooms.lock();
            let room = rooms.entry_ref(claim.op.key.as_str()).or_default();
            if room.queue.len() >= claim.queue as usize {
                if room.queue.is_empty() && !room.pumping {
                    rooms.remove(claim.op.key.as_str());
                }
                false
            } else {
                room.queue.push(
                    claim.flow.clone(),
                    claim.weight,
                    id,
                    Waiter {
                        tx,
                        op: claim.op.clone(),
                    },
                );
                true
            }
        };
        if !queued {
            self.metrics.rejected(&rule, "queue_full");
            return self.refusal(claim, deadline).await;
        }
        self.metrics.queued(&rule, 1.0);
        let mut seat = Seat {
            room: self.clone(),
            key: claim.op.key.clone(),
            flow: claim.flow.clone(),
            id,
            rx,
            op: claim.op.clone(),
            done: false,
        };
        self.kick(&claim.op.key);
        let got = tokio::time::timeout_at(until, &mut seat.rx).await;
        let outcome = match got {
            Ok(Ok(o)) => {
                seat.done = true;
                o
            }
            // The pump dropped the waiter without an answer (cannot happen): refuse.
            Ok(Err(_)) => {
                seat.done = true;
                SlotOutcome::new(SlotResult::Full, claim.op.max)
            }
            Err(_) => match seat.leave() {
                // A slot arrived at the last instant: keep it.
                Some(o) => o,
                None => {
                    self.metrics.waited(&rule, started.elapsed(), true);
                    return self.refusal(claim, deadline).await;
                }
            },
        };
        self.metrics.waited(&rule, started.elapsed(), false);
        self.metrics.outcome(&rule, &outcome, true);
        Ok(outcome)
    }

    /// A refusal's figures: the key's state now (held slots, the next expiry). The look must
    /// not make the caller miss its deadline: with one, it gets half the time left (the
    /// wait's margin) and is given up after that — the refusal then reports the key full.
    async fn refusal(
        &self,
        claim: &Claim,
        deadline: Option<Instant>,
    ) -> Result<SlotOutcome, StoreError> {
        let mut peek = claim.op.clone();
        peek.action = SlotAction::Peek;
        let now = Instant::now();
        let by = deadline.map(|d| now + d.saturating_duration_since(now) / 2);
        let look = self.backend.run(std::slice::from_ref(&peek), by);
        let answer = match by {
            Some(by) => tokio::time::timeout_at(by, look).await.ok(),
            None => Some(look.await),
        };
        let o = answer
            .and_then(Result::ok)
            .and_then(|v| v.into_iter().next())
            .unwrap_or(SlotOutcome::new(SlotResult::Unchanged, claim.op.max));
        if o.expired > 0 {
            self.metrics.expired(&claim.op.rule, u64::from(o.expired));
        }
        Ok(SlotOutcome {
            expired: 0,
            result: SlotResult::Full,
            ..o
        })
    }
}

/// The release giving back the slot `op` acquired.
fn release_of(op: &SlotOp) -> SlotOp {
    SlotOp {
        action: SlotAction::Release,
        ..op.clone()
    }
}

/// How long before the caller's deadline a wait ends, so the caller reads OVER_LIMIT rather
/// than its own timeout: a tenth of the time left, at most 25 ms.
fn margin(left: Duration) -> Duration {
    (left / 10).min(Duration::from_millis(25))
}

mod pump;
mod seat;
mod tasks;

#[cfg(test)]
mod tests;
