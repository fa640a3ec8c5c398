//! Exponential backoff with jitter. Randomness is an argument.

use core::time::Duration;

/// Delay before the next try after consecutive failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Start at `base`, double per failure, never above `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, failures: 0 }
    }

    /// Record a failure and return how long to wait: a uniform pick in
    /// `[d/2, d]` where `d = min(max, base·2^failures)`, from `random`.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let exp = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let d = self.base.saturating_mul(1 << exp).min(self.max);
        let half = d / 2;
        let span = u64::try_from((d - half).as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(random % (span + 1))
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: start over.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(900));
        let mut prev = Duration::ZERO;
        for i in 0..20 {
            let d = b.next_delay(u64::MAX / 3 + i);
            assert!(d <= Duration::from_secs(900));
            if i < 8 {
                assert!(d >= prev, "delay grows while below the cap");
            }
            prev = d;
        }
        assert!(prev >= Duration::from_secs(450));
        b.reset();
        assert!(b.next_delay(0) <= Duration::from_secs(1));
        // Jitter actually varies the delay.
        let mut c = Backoff::new(Duration::from_secs(8), Duration::from_secs(900));
        let mut d = c.clone();
        assert_ne!(c.next_delay(1), d.next_delay(3_000_000));
    }
}
