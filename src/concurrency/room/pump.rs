//! A key's pump: whenever a slot may have freed, it serves the key's waiters in fair order —
//! takes a slot on behalf of the waiter at the head, then hands it over — until the key is
//! full again; one pump per key, and a notice arriving meanwhile makes it go round once more.

use super::{release_of, WaitingRoom, BACKEND_RETRY};
use crate::concurrency::slots::{SlotOutcome, SlotResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl WaitingRoom {
    /// Runs the pump of every key with waiters.
    pub(super) fn kick_all(self: &Arc<Self>) {
        let keys: Vec<String> = self.rooms.lock().keys().cloned().collect();
        for key in keys {
            self.kick(&key);
        }
    }

    /// A slot of `key` may have freed: make sure its pump runs (once more, if running).
    pub fn kick(self: &Arc<Self>, key: &str) {
        {
            let mut rooms = self.rooms.lock();
            let Some(room) = rooms.get_mut(key) else {
                return;
            };
            if room.queue.is_empty() {
                return;
            }
            if room.pumping {
                room.kicked = true;
                return;
            }
            room.pumping = true;
            room.kicked = false;
        }
        let me = self.clone();
        let key = key.to_owned();
        tokio::spawn(async move { me.pump(key).await });
    }

    /// Serves `key`'s waiters while slots are free.
    pub(super) async fn pump(self: Arc<Self>, key: String) {
        loop {
            let (id, op) = {
                let mut rooms = self.rooms.lock();
                let Some(room) = rooms.get_mut(key.as_str()) else {
                    return;
                };
                room.kicked = false;
                match room.queue.peek() {
                    Some((id, w)) => (id, w.op.clone()),
                    None => {
                        rooms.remove(key.as_str());
                        return;
                    }
                }
            };
            let outcome = match self.backend.run(std::slice::from_ref(&op), None).await {
                Ok(v) => v.into_iter().next(),
                Err(_) => None,
            };
            let Some(o) = outcome else {
                self.stop_pump(&key, Some(BACKEND_RETRY));
                return;
            };
            if o.expired > 0 {
                self.metrics.expired(&op.rule, u64::from(o.expired));
            }
            match o.result {
                SlotResult::Full | SlotResult::NoRoom => {
                    if self.stop_pump(&key, o.next_expiry) {
                        continue;
                    }
                    return;
                }
                _ => {
                    let o = SlotOutcome { expired: 0, ..o };
                    let unclaimed = {
                        let mut rooms = self.rooms.lock();
                        let waiter = rooms.get_mut(key.as_str()).and_then(|room| {
                            if room.queue.peek().map(|(i, _)| i) == Some(id) {
                                room.queue.pop().map(|(_, w)| w)
                            } else {
                                None
                            }
                        });
                        match waiter {
                            Some(w) => {
                                self.metrics.queued(&op.rule, -1.0);
                                w.tx.send(o).is_err()
                            }
                            None => true,
                        }
                    };
                    if unclaimed && o.result == SlotResult::Granted {
                        // Its waiter left while the slot was being taken: give it back.
                        let _ = self.backend.run(&[release_of(&op)], None).await;
                    }
                }
            }
        }
    }

    /// Stops `key`'s pump — unless a notice came meanwhile (then `true`: go round again).
    /// Schedules a retry `after` (a lease's expiry, or a backend failure).
    pub(super) fn stop_pump(self: &Arc<Self>, key: &str, after: Option<Duration>) -> bool {
        let retry = after.or(self.backend.retry_every());
        let schedule = {
            let mut rooms = self.rooms.lock();
            let Some(room) = rooms.get_mut(key) else {
                return false;
            };
            if room.kicked {
                room.kicked = false;
                return true;
            }
            room.pumping = false;
            if room.queue.is_empty() {
                rooms.remove(key);
                return false;
            }
            match retry {
                Some(after) => {
                    let at = Instant::now() + after.max(Duration::from_millis(1));
                    if room.retry_at.is_some_and(|r| r <= at && r > Instant::now()) {
                        None
                    } else {
                        room.retry_at = Some(at);
                        Some(at)
                    }
                }
                None => None,
            }
        };
        if let Some(at) = schedule {
            let weak = Arc::downgrade(self);
            let key = key.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                if let Some(room) = weak.upgrade() {
                    room.kick(&key);
                }
            });
        }
        false
    }
}
