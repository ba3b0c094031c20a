//! Exponential backoff with jitter between reconnection attempts (and between repeated NACKs
//! of one rejected config).
//!
//! Each delay is the current base times a random factor in `[0.5, 1.5)` (upstream's random
//! factor 0.5), never above `max`; the base then doubles up to `max`. So many replicas losing
//! their control plane at once do not reconnect in lockstep. The randomness comes from the
//! standard library's randomly keyed hasher: no generator crate for a jitter.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The delay sequence of one series of failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first base delay, restored by [`Backoff::reset`].
    initial: Duration,
    /// No delay (jitter included) is longer.
    max: Duration,
    /// The base of the next delay.
    current: Duration,
    /// Mixed into each random draw, so two draws in one instant still differ.
    draws: u64,
}

impl Backoff {
    /// Delays starting at `initial` and never above `max` (`max` is raised to `initial` if
    /// smaller; a zero `initial` is taken as 1 ms so the sequence still grows).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        let max = max.max(initial);
        Backoff {
            initial,
            max,
            current: initial,
            draws: 0,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        self.draws = self.draws.wrapping_add(1);
        let delay = self
            .current
            .mul_f64(0.5 + unit_random(self.draws))
            .min(self.max);
        self.current = self.current.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to `initial`: the connection worked.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// A number in `[0, 1)` from a randomly keyed hash of `salt`.
fn unit_random(salt: u64) -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    // 53 random bits: every f64 in [0, 1) with that resolution.
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_and_stays_under_max() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let bases = [100u64, 200, 400, 800, 1000, 1000];
        for base in bases {
            let d = b.next_delay();
            assert!(d >= ms(base / 2), "{d:?} below half of {base} ms");
            assert!(
                d < ms(base * 3 / 2).min(ms(1001)),
                "{d:?} for base {base} ms"
            );
        }
        b.reset();
        assert!(b.next_delay() < ms(150));
    }

    #[test]
    fn delays_are_not_all_equal() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            seen.insert(
                Backoff::new(Duration::from_secs(10), Duration::from_secs(60)).next_delay(),
            );
        }
        assert!(seen.len() > 1, "jitter must vary");
    }

    #[test]
    fn degenerate_settings_are_usable() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(b.next_delay() <= Duration::from_millis(1));
    }
}
