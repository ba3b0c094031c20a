//! What happens when a Redis shard fails: a per-shard circuit breaker, and the local fallback
//! that decides that shard's keys while it is away.
//!
//! Closed → (N consecutive failures, or half of the last 20 calls failing) → open: the shard's
//! keys are decided locally at once, without waiting on Redis → after a backoff, half-open: one
//! request probes Redis → closed on success, open again with a doubled backoff on failure.
//! Every state change is logged once and exported as a gauge.

use parking_lot::Mutex;
use std::time::Duration;
use tokio::time::Instant;

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

/// Breaker thresholds.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// First wait before probing an open shard; doubles on each failed probe.
    pub open_for: Duration,
    /// Longest wait between probes.
    pub max_open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 3,
            open_for: Duration::from_millis(500),
            max_open_for: Duration::from_secs(5),
        }
    }
}

/// Where a call for this shard should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Ask Redis.
    Redis,
    /// Ask Redis as the half-open probe; its result decides the breaker.
    Probe,
    /// Do not ask: decide with the fallback.
    Fallback,
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// Gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::HalfOpen => 1.0,
            State::Open => 2.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half-open",
            State::Open => "open",
        }
    }
}

/// The mutable part of a breaker.
#[derive(Debug)]
struct Inner {
    state: State,
    /// Failures in a row while closed.
    consecutive: u32,
    /// The last 20 call results while closed (bit set = failure), newest in bit 0.
    recent: u32,
    /// How many of `recent` are real samples (up to 20).
    samples: u32,
    /// When an open breaker may probe.
    until: Instant,
    /// The current wait between probes.
    backoff: Duration,
    /// Whether the half-open probe is in flight (only one at a time).
    probing: bool,
}

/// The circuit breaker of one shard.
#[derive(Debug)]
pub struct Breaker {
    /// The shard, for logs and metrics.
    name: String,
    /// Thresholds.
    config: BreakerConfig,
    /// State, behind a lock held only for a few instructions (never across an `.await`).
    inner: Mutex<Inner>,
}

const WINDOW: u32 = 20;

impl Breaker {
    /// A closed breaker for shard `name`.
    pub fn new(name: &str, config: BreakerConfig) -> Breaker {
        metrics::gauge!("sluice_redis_shard_state", "shard" => name.to_owned()).set(0.0);
        Breaker {
            name: name.to_owned(),
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                recent: 0,
                samples: 0,
                until: Instant::now(),
                backoff: config.open_for,
                probing: false,
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.lock().state
    }

    /// Where the next call should go.
    pub fn route(&self) -> Route {
        let mut s = self.inner.lock();
        match s.state {
            State::Closed => Route::Redis,
            State::Open if Instant::now() >= s.until => {
                self.set(&mut s, State::HalfOpen);
                s.probing = true;
                Route::Probe
            }
            State::Open => Route::Fallback,
            State::HalfOpen if !s.probing => {
                s.probing = true;
                Route::Probe
            }
            State::HalfOpen => Route::Fallback,
        }
    }

    /// Records the result of a call that went to Redis on `route`.
    pub fn record(&self, route: Route, ok: bool) {
        let mut s = self.inner.lock();
        if route == Route::Probe {
            s.probing = false;
            if ok {
                s.consecutive = 0;
                s.recent = 0;
                s.samples = 0;
                s.backoff = self.config.open_for;
                self.set(&mut s, State::Closed);
            } else {
                s.backoff = (s.backoff * 2).min(self.config.max_open_for);
                s.until = Instant::now() + s.backoff;
                self.set(&mut s, State::Open);
            }
            return;
        }
        if s.state != State::Closed {
            return; // a late answer from before the breaker opened
        }
        s.recent = (s.recent << 1 | u32::from(!ok)) & ((1 << WINDOW) - 1);
        s.samples = (s.samples + 1).min(WINDOW);
        s.consecutive = if ok { 0 } else { s.consecutive + 1 };
        let rate_tripped = s.samples >= WINDOW / 2 && s.recent.count_ones() * 2 >= s.samples;
        if s.consecutive >= self.config.failures || rate_tripped {
            s.backoff = self.config.open_for;
            s.until = Instant::now() + s.backoff;
            self.set(&mut s, State::Open);
        }
    }

    fn set(&self, s: &mut Inner, to: State) {
        if s.state == to {
            return;
        }
        tracing::warn!(shard = %self.name, from = s.state.name(), to = to.name(), "redis shard breaker");
        metrics::gauge!("sluice_redis_shard_state", "shard" => self.name.clone()).set(to.gauge());
        metrics::counter!("sluice_redis_shard_transitions_total", "shard" => self.name.clone(), "to" => to.name())
            .increment(1);
        s.state = to;
    }
}

/// `limit` shared among `replicas`, rounded up so a limit never drops to 0 unless it was 0.
pub fn local_share(limit: u32, replicas: u32) -> u32 {
    limit.div_ceil(replicas.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            "test",
            BreakerConfig {
                failures: 3,
                open_for: Duration::from_millis(100),
                max_open_for: Duration::from_millis(400),
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_probes_and_closes() {
        let b = breaker();
        for _ in 0..2 {
            assert_eq!(b.route(), Route::Redis);
            b.record(Route::Redis, false);
        }
        assert_eq!(b.state(), State::Closed);
        b.record(Route::Redis, false);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.route(), Route::Fallback, "open: no waiting on Redis");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(b.route(), Route::Probe);
        assert_eq!(b.route(), Route::Fallback, "one probe at a time");
        b.record(Route::Probe, true);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.route(), Route::Redis);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_doubles_the_wait() {
        let b = breaker();
        for _ in 0..3 {
            b.record(Route::Redis, false);
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(b.route(), Route::Probe);
        b.record(Route::Probe, false);
        tokio::time::advance(Duration::from_millis(150)).await;
        assert_eq!(b.route(), Route::Fallback);
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(b.route(), Route::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_high_failure_rate_opens_too() {
        let b = breaker();
        for i in 0..20 {
            b.record(Route::Redis, i % 2 == 0);
        }
        assert_eq!(b.state(), State::Open, "half of the last calls failed");
    }

    #[test]
    fn local_share_never_rounds_to_zero() {
        assert_eq!(local_share(100, 3), 34);
        assert_eq!(local_share(1, 5), 1);
        assert_eq!(local_share(0, 5), 0);
        assert_eq!(local_share(10, 0), 10);
    }
}
