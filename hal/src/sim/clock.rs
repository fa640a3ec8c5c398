//! A clock that tests advance.

use core::cell::Cell;
use core::time::Duration;

use crate::time::{Clock, Instant};

/// A clock that moves only when the test says so.
#[derive(Debug, Default)]
pub struct SimClock {
    now: Cell<u64>,
    unix_base: u64,
}

impl SimClock {
    /// A clock at `Instant::ZERO` whose wall time starts at `unix_base`.
    pub fn new(unix_base: u64) -> Self {
        Self { now: Cell::new(0), unix_base }
    }

    /// Move time forward.
    pub fn advance(&self, d: Duration) {
        self.now.set((Instant::from_micros(self.now.get()) + d).as_micros());
    }

    /// Jump to `t` if it is later than now.
    pub fn advance_to(&self, t: Instant) {
        self.now.set(self.now.get().max(t.as_micros()));
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.now.get())
    }
    fn unix_time(&self) -> u64 {
        self.unix_base + self.now.get() / 1_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_clock_advances_only_when_told() {
        let c = SimClock::new(1_700_000_000);
        assert_eq!(c.now(), Instant::ZERO);
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now(), Instant::from_secs(90));
        assert_eq!(c.unix_time(), 1_700_000_090);
        c.advance_to(Instant::from_secs(10));
        assert_eq!(c.now(), Instant::from_secs(90));
    }
}
