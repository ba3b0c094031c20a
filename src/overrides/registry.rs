//! The live set of runtime overrides of one replica, and how replicas agree on it.
//!
//! With the memory store overrides live in this process only. With Redis they are documents
//! in one hash (`<prefix>sluice:overrides`, on the shard the ring gives that name): a change
//! is written there first and applied locally at once; every replica re-reads the hash every
//! `--overrides-poll-ms` (500 ms by default), so all replicas apply a change within about
//! half a second. Expiry needs no coordination: each override carries its wall-clock end and
//! stops applying then everywhere; the poll also deletes expired documents (only if unchanged,
//! so a newer override for the same target survives).

use crate::clock::Clock;
use crate::meter::Meter;
use crate::overrides::doc::{self, DocError};
use crate::overrides::{Override, OverrideSet, Target};
use crate::rules::model::Policy;
use crate::rules::Rules;
use crate::store::{OverrideMedium, StoreError};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why an override change was refused.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// The request body is wrong (400).
    #[error("{0}")]
    Doc(#[from] DocError),
    /// The store holding shared overrides did not answer (503).
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The overrides this replica applies.
pub struct Overrides {
    /// The current set; replaced whole on every change, so the hot path never locks.
    current: ArcSwap<OverrideSet>,
    /// Wall time (injectable, so expiry is testable without sleeping).
    clock: Arc<dyn Clock>,
    /// Bumped by every local change; a poll that read the store before a local change must
    /// not roll that change back.
    writes: AtomicU64,
    /// Serialises read-modify-publish of `current` (never held across an `.await`), so two
    /// concurrent changes cannot lose one another.
    publishing: parking_lot::Mutex<()>,
    /// `sluice_overrides_active`.
    active: metrics::Gauge,
}

impl Overrides {
    /// No overrides yet.
    pub fn new(clock: Arc<dyn Clock>) -> Overrides {
        Overrides {
            current: ArcSwap::from_pointee(OverrideSet::default()),
            clock,
            writes: AtomicU64::new(0),
            publishing: parking_lot::Mutex::new(()),
            active: metrics::Gauge::noop(),
        }
    }

    /// Records `sluice_overrides_active` in `meter`.
    pub fn with_meter(mut self, meter: &Meter) -> Overrides {
        self.active = meter.record(|| metrics::gauge!("sluice_overrides_active"));
        self
    }

    /// The current set (cheap: one atomic increment).
    pub fn snapshot(&self) -> Arc<OverrideSet> {
        self.current.load_full()
    }

    /// Now, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// Active overrides, sorted by target.
    pub fn active(&self) -> Vec<Override> {
        let now = self.now_ms();
        self.snapshot()
            .all()
            .into_iter()
            .filter(|o| o.active(now))
            .cloned()
            .collect()
    }

    /// Checks `o` against the loaded rules, stores it (shared stores first) and applies it.
    pub async fn set<S: OverrideMedium>(
        &self,
        store: &S,
        rules: &Rules,
        o: Override,
    ) -> Result<(), OverrideError> {
        check_target(rules, &o.target)?;
        let id = o.target.id();
        store
            .overrides_save(&id, Some(&doc::to_doc(&o).to_string()))
            .await?;
        self.change(|set| {
            let mut set: Vec<Override> = set.into_iter().filter(|x| x.target != o.target).collect();
            set.push(o);
            set
        });
        Ok(())
    }

    /// Removes the override of `target`; whether there was an active one.
    pub async fn clear<S: OverrideMedium>(
        &self,
        store: &S,
        target: &Target,
    ) -> Result<bool, OverrideError> {
        let now = self.now_ms();
        let existed = self
            .snapshot()
            .all()
            .iter()
            .any(|o| o.target == *target && o.active(now));
        store.overrides_save(&target.id(), None).await?;
        self.change(|set| set.into_iter().filter(|x| x.target != *target).collect());
        Ok(existed)
    }

    /// Replaces the set with `f(current overrides)`.
    fn change(&self, f: impl FnOnce(Vec<Override>) -> Vec<Override>) {
        let _one_at_a_time = self.publishing.lock();
        self.writes.fetch_add(1, Ordering::SeqCst);
        let current: Vec<Override> = self.snapshot().all().into_iter().cloned().collect();
        self.publish(f(current));
    }

    fn publish(&self, overrides: Vec<Override>) {
        let now = self.now_ms();
        let active = overrides.iter().filter(|o| o.active(now)).count();
        self.active.set(active as f64);
        self.current.store(Arc::new(OverrideSet::new(overrides)));
    }

    /// One poll: re-reads the shared overrides (or, for a private store, drops expired ones).
    pub async fn sync<S: OverrideMedium>(&self, store: &S) -> Result<(), StoreError> {
        let writes = self.writes.load(Ordering::SeqCst);
        let now = self.now_ms();
        let Some(docs) = store.overrides_load().await? else {
            let set = self.snapshot();
            if set.iter().any(|(_, o)| !o.active(now)) {
                self.change(|all| all.into_iter().filter(|o| o.active(now)).collect());
            }
            return Ok(());
        };
        let mut live = Vec::with_capacity(docs.len());
        for (id, text) in docs {
            match doc::from_doc(&text) {
                Ok(o) if o.active(now) => live.push(o),
                Ok(_) => {
                    if let Err(e) = store.overrides_expire(&id, &text).await {
                        tracing::debug!(error = %e, "could not delete an expired override");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "ignoring an unreadable shared override"),
            }
        }
        // A local change after our read is newer than what we read: keep it; next poll agrees.
        let _one_at_a_time = self.publishing.lock();
        if self.writes.load(Ordering::SeqCst) == writes {
            let changed = {
                let set = self.snapshot();
                // All entries, expired ones included: publishing drops them (and with them
                // the hot path's per-descriptor id lookups once none is left).
                let current: Vec<&Override> = set.all();
                live.sort_by_key(|o| o.target.id());
                current.len() != live.len() || current.iter().zip(&live).any(|(a, b)| *a != b)
            };
            if changed {
                self.publish(live);
            }
        }
        Ok(())
    }

    /// Polls every `every` until the returned task is aborted.
    pub fn spawn_sync<S: OverrideMedium>(
        self: &Arc<Self>,
        store: Arc<S>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let overrides = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match overrides.sync(store.as_ref()).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("shared overrides readable again");
                    }
                    Ok(()) => {}
                    // Keep the last known overrides; say so once, not every poll.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot read shared overrides; keeping the last known");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

/// A rule target must name a rule with limits; a descriptor target a loaded domain.
fn check_target(rules: &Rules, target: &Target) -> Result<(), DocError> {
    let field = |field: &str, reason: String| DocError::Field {
        field: field.to_owned(),
        reason,
    };
    match target {
        Target::Rule(stats_key) => match rules.node_by_stats_key(stats_key) {
            Some(node) if matches!(node.policy, Policy::Limited(_)) => Ok(()),
            Some(_) => Err(field(
                "rule",
                format!("rule '{stats_key}' has no limit to override (see /rlconfig)"),
            )),
            None => Err(field(
                "rule",
                format!("no rule '{stats_key}' is loaded (see /rlconfig for the names)"),
            )),
        },
        Target::Descriptor { domain, .. } if rules.domain(domain).is_none() => Err(field(
            "domain",
            format!("no rule file has domain '{domain}'"),
        )),
        Target::Descriptor { .. } => Ok(()),
    }
}
