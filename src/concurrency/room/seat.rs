//! A waiter's seat: leaving the queue on timeout, or when the call is dropped (the caller gave
//! up), without losing a slot handed over in that very instant.

use super::{release_of, WaitingRoom};
use crate::concurrency::fair::FlowKey;
use crate::concurrency::slots::{SlotOp, SlotOutcome, SlotResult};
use std::sync::Arc;
use tokio::sync::oneshot;

/// A waiter's place in a queue; leaving (timeout, or the call dropped) takes it out.
pub(super) struct Seat {
    /// The room to leave.
    pub(super) room: Arc<WaitingRoom>,
    /// The key waited for.
    pub(super) key: String,
    /// The waiter's flow in the key's fair queue.
    pub(super) flow: FlowKey,
    /// The waiter's id in that flow.
    pub(super) id: u64,
    /// Where the slot (or a refusal) arrives.
    pub(super) rx: oneshot::Receiver<SlotOutcome>,
    /// What the waiter asked for (to give back a slot that arrived as it left).
    pub(super) op: SlotOp,
    /// The wait ended with an answer: nothing to undo.
    pub(super) done: bool,
}

impl Seat {
    /// Leaves the queue; the answer that arrived meanwhile, if any.
    pub(super) fn leave(&mut self) -> Option<SlotOutcome> {
        self.done = true;
        let removed = {
            let mut rooms = self.room.rooms.lock();
            let removed = rooms
                .get_mut(self.key.as_str())
                .and_then(|r| r.queue.remove(&self.flow, self.id))
                .is_some();
            if rooms
                .get(self.key.as_str())
                .is_some_and(|r| r.queue.is_empty() && !r.pumping)
            {
                rooms.remove(self.key.as_str());
            }
            removed
        };
        if removed {
            self.room.metrics.queued(&self.op.rule, -1.0);
            return None;
        }
        // Not in the queue any more: the pump served it, under the lock, before we looked.
        self.rx.try_recv().ok()
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.room.metrics.cancelled(&self.op.rule);
        if let Some(o) = self.leave() {
            if o.result == SlotResult::Granted {
                let room = self.room.clone();
                let op = release_of(&self.op);
                tokio::spawn(async move {
                    let key = op.key.clone();
                    let _ = room.backend.run(std::slice::from_ref(&op), None).await;
                    room.kick(&key);
                });
            }
        }
    }
}
