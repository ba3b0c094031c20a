//! The circuit breaker of one Redis shard.
//!
//! Closed → (N consecutive failures, or half of the last 20 calls failing) → open: the shard's
//! keys are decided by the failure policy at once, without waiting on Redis. While open, a
//! background task (`store::shard::watch`) probes the node with `PING` every `open_for` — a
//! fixed interval, so a node that comes back is used again within one interval however long it
//! was away: probing makes the breaker half-open, a probe that answers closes it, one that
//! fails opens it again. Requests never probe and never wait on a probe. Only a shard that
//! fails again soon after closing (within `max_open_for`: a flapping node) waits longer,
//! doubling up to `max_open_for`. Every state change is logged once and exported as a gauge.

use crate::meter::Meter;
use parking_lot::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Breaker thresholds.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// Interval between background probes of an open shard (fixed: a node that comes back is
    /// used again within one interval).
    pub open_for: Duration,
    /// Longest interval for a flapping shard (one that fails again within this long after
    /// closing: its interval doubles each time, up to this).
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
    /// Do not ask: decide with the fallback (the breaker is open or half-open).
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
    /// Where calls go now.
    state: State,
    /// Failures in a row while closed (the threshold is `failures`).
    consecutive: u32,
    /// The last 20 call results while closed (bit set = failure), newest in bit 0.
    recent: u32,
    /// How many of `recent` are real samples (up to 20).
    samples: u32,
    /// When an open breaker is probed next.
    until: Instant,
    /// The current interval between probes (`open_for`, longer for a flapping shard).
    backoff: Duration,
    /// When the breaker last closed after being open, to recognise a flapping shard.
    closed_at: Option<Instant>,
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
    /// `sluice_redis_shard_state{shard}`.
    gauge: metrics::Gauge,
    /// `sluice_redis_shard_transitions_total{shard,to}`, by target state (closed, half-open,
    /// open).
    transitions: [metrics::Counter; 3],
}

const WINDOW: u32 = 20;

impl Breaker {
    /// A closed breaker for shard `name`, recording its state in `meter`.
    pub fn new(name: &str, config: BreakerConfig, meter: &Meter) -> Breaker {
        let (gauge, transitions) = meter.record(|| {
            let to = |state: State| {
                metrics::counter!("sluice_redis_shard_transitions_total", "shard" => name.to_owned(), "to" => state.name())
            };
            (
                metrics::gauge!("sluice_redis_shard_state", "shard" => name.to_owned()),
                [to(State::Closed), to(State::HalfOpen), to(State::Open)],
            )
        });
        gauge.set(0.0);
        Breaker {
            gauge,
            transitions,
            name: name.to_owned(),
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                recent: 0,
                samples: 0,
                until: Instant::now(),
                backoff: config.open_for,
                closed_at: None,
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.lock().state
    }

    /// Where the next call should go: only a closed breaker lets calls reach Redis.
    pub fn route(&self) -> Route {
        match self.inner.lock().state {
            State::Closed => Route::Redis,
            State::Open | State::HalfOpen => Route::Fallback,
        }
    }

    /// Records the result of a call that went to Redis; returns whether this result opened the
    /// breaker (the caller then wakes the shard's prober).
    pub fn record(&self, ok: bool) -> bool {
        let mut s = self.inner.lock();
        if s.state != State::Closed {
            return false; // a late answer from before the breaker opened
        }
        s.recent = (s.recent << 1 | u32::from(!ok)) & ((1 << WINDOW) - 1);
        s.samples = (s.samples + 1).min(WINDOW);
        s.consecutive = if ok { 0 } else { s.consecutive + 1 };
        let rate_tripped = s.samples >= WINDOW / 2 && s.recent.count_ones() * 2 >= s.samples;
        if s.consecutive >= self.config.failures || rate_tripped {
            let now = Instant::now();
            let flapping = s
                .closed_at
                .is_some_and(|c| now < c + self.config.max_open_for);
            s.backoff = if flapping {
                (s.backoff * 2).min(self.config.max_open_for)
            } else {
                self.config.open_for
            };
            s.until = now + s.backoff;
            self.set(&mut s, State::Open);
            return true;
        }
        false
    }

    /// When the next background probe is due; `None` while closed (nothing to probe).
    pub fn probe_at(&self) -> Option<Instant> {
        let s = self.inner.lock();
        (s.state != State::Closed).then_some(s.until)
    }

    /// Starts a background probe if one is due: the breaker turns half-open. `false` when the
    /// breaker is closed or the probe is not due yet.
    pub fn begin_probe(&self) -> bool {
        let mut s = self.inner.lock();
        if s.state != State::Open || Instant::now() < s.until {
            return false;
        }
        self.set(&mut s, State::HalfOpen);
        true
    }

    /// Ends a probe: success closes the breaker, failure opens it again for one more interval
    /// (not doubled: a node that is down is checked at the same pace until it is back).
    pub fn end_probe(&self, ok: bool) {
        let mut s = self.inner.lock();
        if s.state != State::HalfOpen {
            return;
        }
        let now = Instant::now();
        if ok {
            s.consecutive = 0;
            s.recent = 0;
            s.samples = 0;
            s.closed_at = Some(now);
            self.set(&mut s, State::Closed);
        } else {
            s.until = now + s.backoff;
            self.set(&mut s, State::Open);
        }
    }

    fn set(&self, s: &mut Inner, to: State) {
        if s.state == to {
            return;
        }
        tracing::warn!(shard = %self.name, from = s.state.name(), to = to.name(), "redis shard breaker");
        self.gauge.set(to.gauge());
        let i = match to {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        };
        self.transitions[i].increment(1);
        s.state = to;
    }
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
            &Meter::default(),
        )
    }

    /// Opens the breaker with three failures.
    fn open(b: &Breaker) {
        for i in 0..3 {
            assert_eq!(b.route(), Route::Redis);
            assert_eq!(b.record(false), i == 2, "only the third failure opens");
        }
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_a_probe_closes_it() {
        let b = breaker();
        b.record(false);
        b.record(true);
        b.record(false);
        b.record(false);
        assert_eq!(b.state(), State::Closed, "a success resets the count");
        b.record(false);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.route(), Route::Fallback, "open: no waiting on Redis");
        assert!(
            !b.record(false),
            "late results of an open breaker change nothing"
        );
        let at = b.probe_at().expect("an open breaker is probed");
        assert!(!b.begin_probe(), "not before the interval");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(Instant::now() >= at);
        assert!(b.begin_probe());
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.route(), Route::Fallback, "requests never probe");
        assert!(!b.begin_probe(), "one probe at a time");
        b.end_probe(true);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.route(), Route::Redis);
        assert_eq!(b.probe_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probes_keep_a_fixed_interval() {
        let b = breaker();
        open(&b);
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(99)).await;
            assert!(!b.begin_probe());
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(
                b.begin_probe(),
                "probed every 100 ms, however long it is down"
            );
            b.end_probe(false);
            assert_eq!(b.state(), State::Open);
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.begin_probe());
        b.end_probe(true);
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flapping_shard_waits_longer() {
        let b = breaker();
        open(&b);
        let mut waits = Vec::new();
        for _ in 0..4 {
            let at = b.probe_at().expect("open");
            waits.push(at - Instant::now());
            tokio::time::advance(at - Instant::now()).await;
            assert!(b.begin_probe());
            b.end_probe(true);
            open(&b); // fails again at once
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 400], "doubling up to max_open_for");
        // Closed for longer than max_open_for: back to the first interval.
        let at = b.probe_at().expect("open");
        tokio::time::advance(at - Instant::now()).await;
        assert!(b.begin_probe());
        b.end_probe(true);
        tokio::time::advance(Duration::from_millis(400)).await;
        open(&b);
        let at = b.probe_at().expect("open");
        assert_eq!((at - Instant::now()).as_millis(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_high_failure_rate_opens_too() {
        let b = breaker();
        for i in 0..20 {
            b.record(i % 2 == 0);
        }
        assert_eq!(b.state(), State::Open, "half of the last calls failed");
    }
}
