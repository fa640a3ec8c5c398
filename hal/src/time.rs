//! Time as a value: a monotonic [`Instant`] in microseconds and a wall clock.
//!
//! Cores take `now` as an argument; only implementations of [`Clock`] read a
//! real clock.

use core::time::Duration;

/// A point on a monotonic clock, in microseconds since an arbitrary epoch.
///
/// Plain data: tests construct it (`Instant::from_secs(90)`), journals can
/// store it. Never goes backwards for one clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The epoch of the clock.
    pub const ZERO: Self = Self(0);

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000))
    }

    /// An instant `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Self {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(micros))
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
}

/// A source of time.
pub trait Clock {
    /// Monotonic time: never decreases between calls.
    fn now(&self) -> Instant;
    /// Wall-clock time in seconds since 1970-01-01 UTC (may jump).
    fn unix_time(&self) -> u64;
}

impl<T: Clock + ?Sized> Clock for &T {
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn unix_time(&self) -> u64 {
        (**self).unix_time()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        let a = Instant::from_secs(2);
        assert_eq!(a.saturating_duration_since(Instant::from_secs(3)), Duration::ZERO);
        assert_eq!(a + Duration::from_millis(500), Instant::from_millis(2_500));
        assert_eq!(Instant::from_micros(u64::MAX) + Duration::from_secs(1), Instant::from_micros(u64::MAX));
    }
}
