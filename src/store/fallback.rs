//! What a shard's keys get while the shard cannot be asked: the failure policy, and the local
//! fallback (`local`: the same algorithms in memory, each limit shared among the replicas).

use crate::limiter::{Op, Outcome};
use crate::meter::Meter;
pub use crate::store::breaker::{Breaker, BreakerConfig, Route, State};
use crate::store::memory::MemoryStore;
use std::sync::Arc;
use std::time::Duration;

/// What to answer for keys of a shard that cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Decide in memory with each limit divided among the replicas (the default).
    Local,
    /// Fail open: admit.
    Allow,
    /// Fail closed: deny.
    Deny,
}

impl FailurePolicy {
    /// The name used in settings and metrics.
    pub fn name(self) -> &'static str {
        match self {
            FailurePolicy::Local => "local",
            FailurePolicy::Allow => "allow",
            FailurePolicy::Deny => "deny",
        }
    }
}

/// `limit` shared among `replicas`, rounded up so a limit never drops to 0 unless it was 0.
pub fn local_share(limit: u32, replicas: u32) -> u32 {
    limit.div_ceil(replicas.max(1))
}

/// Decides the ops of unavailable shards by the policy; owns the local counters.
pub struct Fallback {
    /// Local (default), allow or deny.
    policy: FailurePolicy,
    /// Live replicas sharing each limit while deciding locally.
    replicas: u32,
    /// Counters decided locally while their shard is away; not written back when it returns
    /// (README, "When Redis fails"). All-or-nothing when admission is atomic.
    local: Arc<MemoryStore>,
    /// Where `sluice_fallback_decisions_total{shard,policy}` is counted.
    meter: Meter,
}

impl Fallback {
    /// A fallback deciding by `policy`, with `local` for the `local` policy.
    pub fn new(policy: FailurePolicy, replicas: u32, local: MemoryStore, meter: Meter) -> Fallback {
        Fallback {
            policy,
            replicas,
            local: Arc::new(local),
            meter,
        }
    }

    /// Live local counters (expired ones included until swept).
    pub fn local_keys(&self) -> usize {
        self.local.len()
    }

    /// Deletes the local counters of `ops` (the admin API's reset).
    pub fn remove(&self, ops: &[Op]) {
        self.local.remove(ops);
    }

    /// Decides `ops[idx]` of shard `shard`. `probe`: the first leg of a cross-shard atomic
    /// request, which must not charge (the commit that follows does). `charge` false: the call
    /// may still run on Redis, so nothing is written locally — `local` admits an op if its
    /// hits would fit the local counter, as a check. Every outcome has `fallback` set.
    pub fn decide(
        &self,
        shard: &str,
        ops: &[Op],
        idx: &[usize],
        probe: bool,
        charge: bool,
    ) -> Vec<Outcome> {
        let policy = self.policy;
        self.meter.record(|| {
            metrics::counter!("sluice_fallback_decisions_total", "shard" => shard.to_owned(), "policy" => policy.name())
                .increment(idx.len() as u64)
        });
        let fixed = |allowed: bool| Outcome {
            allowed,
            fallback: true,
            ..Outcome::default()
        };
        match policy {
            FailurePolicy::Allow => idx.iter().map(|_| fixed(true)).collect(),
            FailurePolicy::Deny => idx.iter().map(|_| fixed(false)).collect(),
            FailurePolicy::Local if probe => idx.iter().map(|_| fixed(true)).collect(),
            FailurePolicy::Local => {
                let share: Vec<Op> = idx
                    .iter()
                    .map(|&i| {
                        let op = &ops[i];
                        Op {
                            requests_per_unit: local_share(op.requests_per_unit, self.replicas),
                            burst: local_share(op.burst, self.replicas),
                            hits: if charge { op.hits } else { 0 },
                            refund: charge && op.refund,
                            ..op.clone()
                        }
                    })
                    .collect();
                let decided = self.local.apply_now(&share);
                decided
                    .into_iter()
                    .zip(idx)
                    .map(|(o, &i)| check_or_charge(o, &ops[i], charge))
                    .collect()
            }
        }
    }

    /// Drops expired local counters every `every`, while there are any (bounded by the local
    /// store's size); runs until aborted.
    pub async fn sweep(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.local.is_empty() {
                self.local.sweep();
            }
        }
    }
}

/// The outcome of one op decided locally: as charged, or — for a check (`charge` false) —
/// admitted only if the op's hits fit what remains.
fn check_or_charge(o: Outcome, op: &Op, charge: bool) -> Outcome {
    if charge || op.refund {
        return Outcome {
            fallback: true,
            ..o
        };
    }
    let fits = o.allowed && o.remaining >= op.hits;
    Outcome {
        allowed: fits,
        remaining: if fits { o.remaining - op.hits } else { 0 },
        retry_after: if fits { Duration::ZERO } else { o.reset_after },
        used_after: o.used_before + u64::from(op.hits),
        fallback: true,
        ..o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::rules::model::Algorithm;

    fn op(key: &str, limit: u32, hits: u32) -> Op {
        Op {
            key: key.into(),
            algorithm: Algorithm::FixedWindow,
            requests_per_unit: limit,
            period_secs: 60,
            burst: limit,
            hits,
            refund: false,
        }
    }

    #[test]
    fn a_check_charges_nothing_and_admits_only_what_fits() {
        let clock = Arc::new(ManualClock::new(Duration::from_secs(1_000)));
        let f = Fallback::new(
            FailurePolicy::Local,
            2,
            MemoryStore::new(clock, 100),
            Meter::default(),
        );
        // Local share of 10 among 2 replicas: 5. Charge 3.
        let out = f.decide("s", &[op("k", 10, 3)], &[0], false, true);
        assert!(out[0].allowed && out[0].fallback);
        let check = |hits| f.decide("s", &[op("k", 10, hits)], &[0], false, false)[0];
        assert!(check(2).allowed && check(2).fallback, "3 + 2 fit in 5");
        assert!(!check(3).allowed, "3 + 3 do not");
        assert_eq!(check(2).remaining, 0);
        // Checks wrote nothing: 2 more still fit when charged.
        assert!(f.decide("s", &[op("k", 10, 2)], &[0], false, true)[0].allowed);
        assert!(!f.decide("s", &[op("k", 10, 1)], &[0], false, true)[0].allowed);
        assert!(f.decide("s", &[op("new", 10, 1)], &[0], false, false)[0].allowed);
        assert_eq!(f.local_keys(), 1, "a check of an absent key stores nothing");
    }

    #[test]
    fn local_share_never_rounds_to_zero() {
        assert_eq!(local_share(100, 3), 34);
        assert_eq!(local_share(1, 5), 1);
        assert_eq!(local_share(0, 5), 0);
        assert_eq!(local_share(10, 0), 10);
    }
}
