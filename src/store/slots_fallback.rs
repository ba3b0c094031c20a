//! What a Redis shard's slot ops get while the shard cannot be asked (the slot side of
//! `store::fallback`): `local` decides on this replica's own [`MemorySlots`], each key's
//! `max` divided among the replicas; `allow` grants; `deny` refuses. Every outcome has
//! `fallback` set.
//!
//! A lease taken locally is released locally — also after Redis is back, since Redis never
//! saw it. A lease held in Redis cannot be released while its shard is away: it stays taken
//! there until its lease ends.

use crate::concurrency::memory::MemorySlots;
use crate::concurrency::slots::{SlotAction, SlotOp, SlotOutcome, SlotResult};
use crate::meter::Meter;
use crate::store::fallback::{local_share, FailurePolicy};
use std::sync::Arc;

/// Decides slot ops of unavailable shards by the policy; owns the local leases.
pub struct SlotFallback {
    /// Local (default), allow or deny.
    policy: FailurePolicy,
    /// Replicas sharing each key's slots while deciding locally.
    replicas: u32,
    /// Leases taken while Redis was away (`local` policy), with `max / replicas` slots.
    local: MemorySlots,
    /// Where `sluice_fallback_decisions_total{shard,policy}` is counted.
    meter: Meter,
}

impl SlotFallback {
    /// A fallback deciding by `policy`, with `local` for the `local` policy.
    pub fn new(
        policy: FailurePolicy,
        replicas: u32,
        local: MemorySlots,
        meter: Meter,
    ) -> SlotFallback {
        SlotFallback {
            policy,
            replicas,
            local,
            meter,
        }
    }

    /// Releases `op` locally if it is a release of a lease the local table holds (taken
    /// while Redis was away); `None`: the release belongs to Redis. Anonymous releases free
    /// local anonymous leases first: Redis could not tell them from its own, and freeing one
    /// of its leases instead would admit one request too many.
    pub fn release_held(&self, op: &SlotOp) -> Option<SlotOutcome> {
        let held = op.action == SlotAction::Release
            && !self.local.is_empty()
            && self.local.holds(&op.key, op.lease.as_deref());
        if !held {
            return None;
        }
        self.local_share(std::slice::from_ref(op), true).pop()
    }

    /// Decides `ops[idx]` of shard `shard` by the policy. `take` false: the call may still run
    /// on Redis, so nothing is taken locally (`local` grants an acquire if a local slot is
    /// free, as a check).
    pub fn decide(
        &self,
        shard: &str,
        ops: &[SlotOp],
        idx: &[usize],
        take: bool,
    ) -> Vec<SlotOutcome> {
        let policy = self.policy;
        self.meter.record(|| {
            metrics::counter!("sluice_fallback_decisions_total", "shard" => shard.to_owned(), "policy" => policy.name())
                .increment(idx.len() as u64)
        });
        let mine: Vec<SlotOp> = idx.iter().map(|&i| ops[i].clone()).collect();
        match policy {
            FailurePolicy::Allow => mine.iter().map(|op| fixed(op, true)).collect(),
            FailurePolicy::Deny => mine.iter().map(|op| fixed(op, false)).collect(),
            FailurePolicy::Local => self.local_share(&mine, take),
        }
    }

    /// Drops expired local leases; how many, per rule (nothing to do while none are held).
    pub fn sweep(&self) -> Vec<(Arc<str>, u64)> {
        if self.local.is_empty() {
            return Vec::new();
        }
        self.local.sweep_now()
    }

    /// Runs `ops` on the local table with each key's local share of slots (`max / replicas`,
    /// rounded up, at least 1); `take` false: acquisitions are only checked.
    fn local_share(&self, ops: &[SlotOp], take: bool) -> Vec<SlotOutcome> {
        let share: Vec<SlotOp> = ops
            .iter()
            .map(|op| SlotOp {
                max: local_share(op.max, self.replicas).max(1),
                action: match op.action {
                    SlotAction::Acquire if !take => SlotAction::Peek,
                    a => a,
                },
                ..op.clone()
            })
            .collect();
        let decided = self.local.run_now(&share);
        decided
            .into_iter()
            .zip(&share)
            .zip(ops)
            .map(|((o, local), op)| {
                let o = if op.action == SlotAction::Acquire && !take {
                    let free = o.held < local.max;
                    SlotOutcome {
                        result: if free {
                            SlotResult::Granted
                        } else {
                            SlotResult::Full
                        },
                        held: o.held + u32::from(free),
                        ..o
                    }
                } else {
                    o
                };
                SlotOutcome {
                    fallback: true,
                    ..o
                }
            })
            .collect()
    }
}

/// The fixed answer of `allow` (`granted`) or `deny` to one op.
fn fixed(op: &SlotOp, granted: bool) -> SlotOutcome {
    let (result, held) = match op.action {
        SlotAction::Acquire if granted => (SlotResult::Granted, 0),
        SlotAction::Acquire => (SlotResult::Full, op.max),
        // A lease held in Redis cannot be freed now: it ends with its lease.
        SlotAction::Release => (SlotResult::Stray, 0),
        SlotAction::Peek | SlotAction::Note => (SlotResult::Unchanged, 0),
    };
    SlotOutcome {
        fallback: true,
        ..SlotOutcome::new(result, held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn op(id: &str, action: SlotAction) -> SlotOp {
        SlotOp {
            key: "k".into(),
            max: 3,
            lease_ms: 1_000,
            lease: Some(id.into()),
            action,
            rule: Arc::from("r"),
        }
    }

    #[test]
    fn a_check_takes_nothing_and_local_leases_are_released_locally() {
        let clock = Arc::new(ManualClock::new(Duration::from_secs(1_000)));
        let f = SlotFallback::new(
            FailurePolicy::Local,
            2,
            MemorySlots::new(clock, 100),
            Meter::default(),
        );
        let acquire = |id, take| f.decide("s", &[op(id, SlotAction::Acquire)], &[0], take)[0];
        // 3 among 2 replicas: 2 here. Checks take nothing.
        for _ in 0..3 {
            let o = acquire("x", false);
            assert_eq!((o.result, o.fallback), (SlotResult::Granted, true));
        }
        assert!(f.release_held(&op("x", SlotAction::Release)).is_none());
        assert_eq!(acquire("a", true).result, SlotResult::Granted);
        assert_eq!(acquire("b", true).result, SlotResult::Granted);
        assert_eq!(acquire("c", true).result, SlotResult::Full);
        assert_eq!(acquire("c", false).result, SlotResult::Full);
        let back = f.release_held(&op("a", SlotAction::Release));
        assert_eq!(
            back.map(|o| (o.result, o.fallback)),
            Some((SlotResult::Released, true))
        );
        assert!(f.release_held(&op("a", SlotAction::Release)).is_none());
        assert!(f.release_held(&op("b", SlotAction::Acquire)).is_none());
    }
}
