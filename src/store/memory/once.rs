//! The memory store's idempotent calls ([`crate::limiter::once`]): decisions answered from
//! their records, settlements capped by the key's ledgers.

use super::MemoryStore;
use crate::limiter::once::{as_check, netted, replay, reserved, Kind, OnceCall};
use crate::limiter::{Op, Outcome};
use crate::store::replay::Step;

impl MemoryStore {
    /// Runs `ops` of an idempotent call at the clock's current time
    /// ([`crate::limiter::once`]). A decision's first attempt is decided, recorded, and its
    /// charges credited to the key's ledgers; a repeat replays the record (or, not lining up
    /// with it, only checks) until `max_repeats`. A settlement is decided with each refund
    /// capped by the key's ledger on that counter. Concurrent attempts of a decision are
    /// serialised on the record's lock, so the counters are charged exactly once; ledgers are
    /// debited under their own lock, so two settlements never return one reservation twice.
    pub fn apply_once_now(&self, ops: &[Op], call: &OnceCall<'_>) -> Vec<Outcome> {
        let now = self.clock.now();
        let once = &call.once;
        let decide = |ops: &[Op]| {
            if self.atomic {
                self.apply_all_or_nothing(now, ops)
            } else {
                ops.iter()
                    .map(|op| self.apply_one(now, op))
                    .collect::<Vec<_>>()
            }
        };
        if call.kind == Kind::Settlement {
            // Take each refund from the ledger first (released at once: no lock is held while
            // the counters are decided), then net; a request all-or-nothing refused gives it
            // back.
            let mut took = vec![0u64; ops.len()];
            let mut capped = false;
            let netted_ops: Vec<Op> = ops
                .iter()
                .enumerate()
                .map(|(i, op)| {
                    let (charged, refund) = call.gross.get(i).copied().unwrap_or((0, 0));
                    if refund == 0 {
                        return op.clone();
                    }
                    let t =
                        self.ledgers
                            .debit(once.ledger(&op.key), u64::from(refund), now, once.ttl);
                    took[i] = t;
                    capped |= t < u64::from(refund);
                    netted(op, charged, u32::try_from(t).unwrap_or(u32::MAX))
                })
                .collect();
            let mut out = decide(&netted_ops);
            let refused = self.atomic && out.iter().any(|o| !o.allowed);
            for (i, o) in out.iter_mut().enumerate() {
                if refused && took[i] > 0 {
                    self.ledgers
                        .credit(once.ledger(&ops[i].key), took[i], now, once.ttl);
                }
                o.replayed = capped;
            }
            return out;
        }
        let digest = once.digest(Kind::Decision, ops);
        let max = once.max_repeats;
        self.replays.with(digest, now, once.ttl, |live| match live {
            Some(l) if max == 0 || l.repeats < max => {
                let out = if l.stored.len() == ops.len() {
                    l.stored.iter().map(|o| replay(o, l.elapsed)).collect()
                } else {
                    let checks: Vec<Op> = ops.iter().map(as_check).collect();
                    let mut out = decide(&checks);
                    for o in &mut out {
                        o.replayed = true;
                    }
                    out
                };
                if max == 0 {
                    Step::Answer(out)
                } else {
                    Step::Repeat(out)
                }
            }
            // No record, or its repeats spent: a first attempt.
            _ => {
                let out = decide(ops);
                let charged = !(self.atomic && out.iter().any(|o| !o.allowed));
                if charged {
                    for (op, o) in ops.iter().zip(&out) {
                        self.ledgers
                            .credit(once.ledger(&op.key), reserved(op, o), now, once.ttl);
                    }
                }
                Step::Record(out)
            }
        })
    }
}
