//! Bandwidth control, pure and fed `now`.
//!
//! [`TokenBucket`] enforces a rate: the runtime asks [`TokenBucket::budget`]
//! how many bytes it may read now, reads at most that, reports them with
//! [`TokenBucket::consume`], and when the budget is 0 sleeps until
//! [`TokenBucket::ready_at`]. The burst is small (50 ms of the rate, at least
//! 4 KiB: a quarter second at 16 KiB/s), so the rate holds over short windows too.
//! Bytes that arrive without asking first (small control bodies: a poll
//! reply, an info file, a manifest) are [`TokenBucket::charge`]d: they become
//! a debt that later reads pay, so the cap covers them as well.

use core::time::Duration;

use outpost_hal::time::Instant;

/// Smallest burst, in bytes.
pub const MIN_BURST: u64 = 4 * 1024;
/// Burst as time at the rate.
pub const BURST_TIME: Duration = Duration::from_millis(50);

/// A token bucket in bytes. Rate 0 means no limit.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    /// Bytes charged beyond the tokens there were: paid from the refill
    /// before any new token.
    debt: u64,
    /// Fractions of a byte (in byte·µs) carried between refills, so that
    /// small steps do not lose accuracy.
    carry: u64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket of `rate` bytes/s (0: unlimited), full at `now`.
    pub fn new(rate: u64, now: Instant) -> Self {
        let burst = Self::burst_for(rate);
        Self { rate, burst, tokens: burst, debt: 0, carry: 0, last: now }
    }

    fn burst_for(rate: u64) -> u64 {
        let t = u64::try_from(BURST_TIME.as_micros()).unwrap_or(u64::MAX);
        (rate.saturating_mul(t) / 1_000_000).max(MIN_BURST)
    }

    /// The rate in bytes/s (0: unlimited).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Change the rate from `now` on (tokens held are kept, up to the new
    /// burst; a debt is kept while there is a rate to pay it at).
    pub fn set_rate(&mut self, now: Instant, rate: u64) {
        self.refill(now);
        if rate == 0 {
            self.debt = 0;
        }
        self.rate = rate;
        self.burst = Self::burst_for(rate);
        self.tokens = self.tokens.min(self.burst);
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        if self.rate == 0 {
            return;
        }
        let dt = dt.as_micros();
        let acc = u128::from(self.carry) + dt * u128::from(self.rate);
        let mut add = u64::try_from(acc / 1_000_000).unwrap_or(u64::MAX);
        self.carry = (acc % 1_000_000) as u64;
        let pay = add.min(self.debt);
        self.debt -= pay;
        add -= pay;
        self.tokens = self.tokens.saturating_add(add).min(self.burst);
        if self.tokens == self.burst {
            self.carry = 0;
        }
    }

    /// Bytes that may be taken at `now` (`u64::MAX` when unlimited).
    pub fn budget(&mut self, now: Instant) -> u64 {
        if self.rate == 0 {
            return u64::MAX;
        }
        self.refill(now);
        self.tokens
    }

    /// `n` bytes were taken at `now`.
    pub fn consume(&mut self, now: Instant, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.refill(now);
        self.tokens = self.tokens.saturating_sub(n);
    }

    /// `n` bytes arrived at `now` without asking the bucket first: they take
    /// the tokens there are, and the rest is a debt that later reads pay.
    pub fn charge(&mut self, now: Instant, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.refill(now);
        let take = n.min(self.tokens);
        self.tokens -= take;
        self.debt = self.debt.saturating_add(n - take);
    }

    /// When at least `want` bytes (capped to the burst) will be available.
    pub fn ready_at(&mut self, now: Instant, want: u64) -> Instant {
        if self.rate == 0 {
            return now;
        }
        self.refill(now);
        let want = want.min(self.burst).max(1);
        if self.tokens >= want {
            return now;
        }
        // A debt exists only with no tokens left: it is paid first.
        let missing = (u128::from(want - self.tokens) + u128::from(self.debt)) * 1_000_000 - u128::from(self.carry);
        let micros = missing.div_ceil(u128::from(self.rate));
        now + Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    /// A greedy reader taking what the bucket allows, in reads of at most
    /// `read` bytes, for `secs` of virtual time. Returns bytes per 100 ms.
    fn drive(rate: u64, read: u64, secs: u64) -> Vec<u64> {
        let mut now = Instant::from_secs(1);
        let mut b = TokenBucket::new(rate, now);
        let end = now + Duration::from_secs(secs);
        let mut ticks = alloc::vec![0u64; (secs * 10) as usize];
        let start = now;
        while now < end {
            let n = b.budget(now).min(read);
            if n == 0 {
                now = b.ready_at(now, read);
                continue;
            }
            b.consume(now, n);
            let i = (now.saturating_duration_since(start).as_millis() / 100) as usize;
            if let Some(slot) = ticks.get_mut(i) {
                *slot += n;
            }
        }
        ticks
    }

    #[test]
    fn cap_holds_within_5_percent_over_every_10_s_window_from_16k_to_100m() {
        // Every 10 s window, sliding in 100 ms steps, not only back to back ones.
        for rate in [16 * 1024, 100_000, 1_000_000, 20_000_000, 100 * 1024 * 1024] {
            for read in [1_000, 16 * 1024, 64 * 1024] {
                let ticks = drive(rate, read, 40);
                for (i, w) in ticks.windows(100).enumerate() {
                    let got: u64 = w.iter().sum();
                    let want = rate * 10;
                    let err = (got as f64 - want as f64).abs() / want as f64;
                    assert!(
                        err <= 0.05,
                        "rate {rate} read {read} window from {} ms: {got} vs {want} ({:.2} %)",
                        i * 100,
                        err * 100.0
                    );
                }
            }
        }
    }

    #[test]
    fn bytes_charged_without_asking_are_paid_by_later_reads() {
        // 100 kB/s. A 300 kB manifest arrives unpaced, then fragments are
        // read greedily: over 10 s the agent still gets 1 MB in all, not 1.3.
        let t0 = Instant::from_secs(1);
        let mut b = TokenBucket::new(100_000, t0);
        b.charge(t0, 300_000);
        assert_eq!(b.budget(t0), 0);
        let (mut now, mut got) = (t0, 300_000u64);
        while now < t0 + Duration::from_secs(10) {
            let n = b.budget(now).min(16 * 1024);
            if n == 0 {
                now = b.ready_at(now, 16 * 1024);
                continue;
            }
            b.consume(now, n);
            got += n;
        }
        let err = (got as f64 - 1_000_000.0).abs() / 1_000_000.0;
        assert!(err <= 0.05, "{got} bytes in 10 s at 100 kB/s");
        // A charge within the tokens there are is no debt; none when unlimited.
        let mut c = TokenBucket::new(100_000, t0);
        c.charge(t0, 1_000);
        assert_eq!(c.budget(t0), 4_000);
        c.set_rate(t0, 0);
        c.charge(t0, 1 << 30);
        c.set_rate(t0, 100_000);
        assert_eq!(c.ready_at(t0, 5_000), t0 + Duration::from_millis(10), "no debt left from unlimited time");
    }

    #[test]
    fn unlimited_and_rate_changes() {
        let t = Instant::from_secs(1);
        let mut b = TokenBucket::new(0, t);
        assert_eq!(b.budget(t), u64::MAX);
        b.set_rate(t, 100_000);
        assert!(b.budget(t) <= MIN_BURST, "the burst stays small");
        let all = b.budget(t);
        b.consume(t, all);
        assert_eq!(b.budget(t), 0);
        let ready = b.ready_at(t, 10_000);
        assert_eq!(ready, t + Duration::from_millis(50), "a burst (5 kB, 50 ms at 100 kB/s), not 10 kB");
        assert_eq!(b.budget(ready), 5_000);
    }
}
