//! A token bucket in integer arithmetic, sans-IO (`now` in Unix seconds):
//! how many new OCS DEVICEIDs one client may register per hour.
//!
//! One token is [`UNIT`] units; a bucket of `per_hour` tokens refills
//! `per_hour` units a second, so it is full again an hour after it was
//! emptied, and a client may register `per_hour` devices at once and then
//! one every `3600 / per_hour` seconds.

/// Units per token (one token a second at one unit per second per token-per-hour).
pub const UNIT: u64 = 3600;

/// A bucket's state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Units available at `updated`.
    pub units: u64,
    /// When `units` was last computed (Unix seconds).
    pub updated: u64,
}

impl Bucket {
    /// A full bucket for `per_hour` tokens at `now`.
    pub fn full(per_hour: u32, now: u64) -> Self {
        Self { units: u64::from(per_hour) * UNIT, updated: now }
    }

    /// Refill to `now` (time never runs backwards here: an earlier `now` adds nothing).
    fn refilled(self, per_hour: u32, now: u64) -> Self {
        let cap = u64::from(per_hour) * UNIT;
        let gained = now.saturating_sub(self.updated).saturating_mul(u64::from(per_hour));
        Self { units: self.units.saturating_add(gained).min(cap), updated: now.max(self.updated) }
    }

    /// Take one token at `now`: the new state, or `Err(seconds)` until one is available.
    pub fn take(self, per_hour: u32, now: u64) -> Result<Self, u64> {
        if per_hour == 0 {
            return Err(UNIT);
        }
        let b = self.refilled(per_hour, now);
        match b.units.checked_sub(UNIT) {
            Some(units) => Ok(Self { units, ..b }),
            None => Err((UNIT - b.units).div_ceil(u64::from(per_hour))),
        }
    }

    /// Whether the bucket is full again at `now` (its row can be forgotten).
    pub fn is_full(self, per_hour: u32, now: u64) -> bool {
        self.refilled(per_hour, now).units >= u64::from(per_hour) * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn a_burst_of_per_hour_then_one_per_share_of_the_hour() {
        let mut b = Bucket::full(60, T0);
        for _ in 0..60 {
            b = b.take(60, T0).expect("the burst");
        }
        assert_eq!(b.take(60, T0), Err(60), "one a minute after the burst");
        assert_eq!(b.take(60, T0 + 30), Err(30));
        b = b.take(60, T0 + 60).expect("a minute later");
        assert!(b.take(60, T0 + 60).is_err());
        assert!(!b.is_full(60, T0 + 3599) && b.is_full(60, T0 + 3660));
    }

    #[test]
    fn refill_stops_at_the_capacity_and_ignores_a_clock_going_back() {
        let b = Bucket { units: 0, updated: T0 };
        let b = b.take(2, T0 + 100 * UNIT).expect("refilled");
        assert_eq!(b.units, UNIT, "capacity 2 tokens, one taken");
        assert!(b.take(2, T0).is_ok(), "an earlier now neither refills nor panics");
        assert_eq!(Bucket::full(5, T0).take(0, T0), Err(UNIT), "0 per hour: never");
    }
}
