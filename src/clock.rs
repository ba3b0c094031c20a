//! Time as the limiter sees it: an injectable [`Clock`], so algorithm and store tests are
//! exact and never sleep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time since the Unix epoch (windows align to the epoch).
pub trait Clock: Send + Sync + 'static {
    /// Now, as a duration since 1970-01-01T00:00:00Z.
    fn now(&self) -> Duration;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        // A clock before 1970 is a broken host; count from the epoch rather than panic.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock {
    /// Nanoseconds since the epoch; atomic so a test can move time while the store reads it.
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock reading `at`.
    pub fn new(at: Duration) -> ManualClock {
        let clock = ManualClock::default();
        clock.set(at);
        clock
    }

    /// Jumps to `at`.
    pub fn set(&self, at: Duration) {
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::SeqCst);
    }

    /// Moves forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}
