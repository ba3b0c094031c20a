//! The waiting room's background work: sweeping expired leases of a private table, listening
//! for releases made on other replicas, and the periodic retry of shared tables.

use super::{WaitingRoom, SWEEP_EVERY};
use std::sync::Arc;

impl WaitingRoom {
    /// Starts the background work: the sweeper of private tables, the listener for releases
    /// on other replicas, and the periodic retry of shared tables. The tasks end when the
    /// room is dropped.
    pub fn spawn_tasks(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let weak = Arc::downgrade(self);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(room) = weak.upgrade() else { return };
                let backend = room.backend.clone();
                // A sweep walks every table: off the async workers.
                let Ok(expired) = tokio::task::spawn_blocking(move || backend.sweep()).await else {
                    continue;
                };
                for (rule, n) in &expired {
                    room.metrics.expired(rule, *n);
                }
                if !expired.is_empty() {
                    room.kick_all();
                }
            }
        }));
        if let Some(mut rx) = self.backend.freed_elsewhere() {
            let weak = Arc::downgrade(self);
            tasks.push(tokio::spawn(async move {
                loop {
                    let key = match rx.recv().await {
                        Ok(key) => key,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            // Notices were lost: every waiting key may have a free slot.
                            let Some(room) = weak.upgrade() else { return };
                            room.kick_all();
                            continue;
                        }
                        Err(_) => return,
                    };
                    let Some(room) = weak.upgrade() else { return };
                    room.kick(&key);
                }
            }));
        }
        if let Some(every) = self.backend.retry_every() {
            let weak = Arc::downgrade(self);
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(room) = weak.upgrade() else { return };
                    room.kick_all();
                }
            }));
        }
        tasks
    }
}
