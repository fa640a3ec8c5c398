//! Whether to fetch again after a failed fragment: a digest mismatch is a
//! transient fault (a flaky proxy, a passing attacker on the plain-HTTP
//! fragment path), never final after a burst.
//!
//! ```text
//!  corrupt answer ─► first of a series? record deadline = now + DIGEST_GIVE_UP_SECS
//!                ─► now ≥ deadline and ≥ MIN_DIGEST_FAULTS answers ─► GiveUp (ERR_BAD_DIGEST)
//!                ─► tries left in this run ─► RetryIn(backoff: 0.5 s, 1 s, 2 s … ≤ 30 s, jittered)
//!                ─► else Later (the next run; runs back off up to 15 min)
//!  a fragment verified ─► the series ends; backoff and tries start over
//! ```
//!
//! The series ([`DigestTrouble`]) is kept in the package record, so a
//! restart neither resets the deadline nor the count. The count guards
//! against a wall clock that jumps a day ahead: one run's tries never reach it.

use core::time::Duration;

use serde::{Deserialize, Serialize};

use super::backoff::Backoff;
use super::limits::DIGEST_GIVE_UP_SECS;

/// Corrupt answers needed, besides the deadline, before giving up.
pub const MIN_DIGEST_FAULTS: u32 = 10;
/// First delay between tries in one run.
pub const RETRY_BASE: Duration = Duration::from_millis(500);
/// Longest delay between tries in one run.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// An unbroken series of digest mismatches, as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestTrouble {
    /// Wall time (seconds since 1970) from which the series may end the package.
    pub deadline: u64,
    /// Corrupt answers in the series.
    pub faults: u32,
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this delay.
    RetryIn(Duration),
    /// Stop for this run; the package stays pending.
    Later,
    /// The digest has not matched for the whole bounded time: `ERR_BAD_DIGEST`.
    GiveUp,
}

/// Tries of one run, and the persisted series of digest mismatches.
#[derive(Debug, Clone)]
pub struct Refetch {
    backoff: Backoff,
    tries: u32,
    failures: u32,
    trouble: Option<DigestTrouble>,
}

impl Refetch {
    /// `tries` failures per run at most; `trouble` as the record kept it.
    pub fn new(tries: u32, trouble: Option<DigestTrouble>) -> Self {
        Self { backoff: Backoff::new(RETRY_BASE, RETRY_MAX), tries: tries.max(1), failures: 0, trouble }
    }

    /// A corrupt answer at wall time `now`.
    pub fn corrupt(&mut self, now: u64, random: u64) -> Verdict {
        let t = self
            .trouble
            .get_or_insert_with(|| DigestTrouble { deadline: now.saturating_add(DIGEST_GIVE_UP_SECS), faults: 0 });
        t.faults = t.faults.saturating_add(1);
        if now >= t.deadline && t.faults >= MIN_DIGEST_FAULTS {
            return Verdict::GiveUp;
        }
        self.failed(random)
    }

    /// Any other failed try (network, server).
    pub fn failed(&mut self, random: u64) -> Verdict {
        self.failures += 1;
        if self.failures >= self.tries { Verdict::Later } else { Verdict::RetryIn(self.backoff.next_delay(random)) }
    }

    /// A fragment (or the whole archive) verified: the series ends.
    pub fn verified(&mut self) {
        self.failures = 0;
        self.backoff.reset();
        self.trouble = None;
    }

    /// The series to persist.
    pub fn trouble(&self) -> Option<DigestTrouble> {
        self.trouble
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn a_burst_of_corrupt_answers_retries_with_growing_delays_and_never_gives_up() {
        let mut r = Refetch::new(5, None);
        let mut now = T0;
        let mut delays = Vec::new();
        for _ in 0..4 {
            match r.corrupt(now, u64::MAX) {
                Verdict::RetryIn(d) => {
                    delays.push(d);
                    now += d.as_secs();
                }
                v => panic!("{v:?}"),
            }
        }
        assert!(delays.windows(2).all(|w| w[1] > w[0]), "{delays:?}");
        assert_eq!(r.corrupt(now, 0), Verdict::Later, "the fifth ends the run, not the package");
        assert_eq!(r.trouble(), Some(DigestTrouble { deadline: T0 + DIGEST_GIVE_UP_SECS, faults: 5 }));
        // Then right answers: the series is over.
        r.verified();
        assert_eq!(r.trouble(), None);
        assert!(matches!(r.corrupt(now + 10, 0), Verdict::RetryIn(d) if d <= RETRY_BASE));
    }

    #[test]
    fn corrupt_answers_for_longer_than_the_deadline_give_up_across_restarts() {
        // One run per 15 minutes (the runs' own backoff), each a burst of 5,
        // each a fresh Refetch from the persisted series, as after a restart.
        let mut kept = None;
        let mut now = T0;
        let end = loop {
            let mut r = Refetch::new(5, kept);
            let v = loop {
                match r.corrupt(now, 7) {
                    Verdict::RetryIn(d) => now += d.as_secs(),
                    v => break v,
                }
            };
            kept = r.trouble();
            if v == Verdict::GiveUp {
                break now;
            }
            assert!(now < T0 + DIGEST_GIVE_UP_SECS, "still going after the deadline");
            now += 15 * 60;
        };
        let day = T0 + DIGEST_GIVE_UP_SECS;
        assert!((day..day + 16 * 60).contains(&end), "{}", end - T0);
    }

    #[test]
    fn a_clock_jumping_past_the_deadline_does_not_turn_a_burst_final() {
        let mut r = Refetch::new(5, Some(DigestTrouble { deadline: T0, faults: 1 }));
        for _ in 0..4 {
            assert_ne!(r.corrupt(T0 + 2 * DIGEST_GIVE_UP_SECS, 0), Verdict::GiveUp);
        }
        let mut r = Refetch::new(5, r.trouble());
        for _ in 0..4 {
            assert_ne!(r.corrupt(T0 + 2 * DIGEST_GIVE_UP_SECS, 0), Verdict::GiveUp);
        }
        assert_eq!(r.corrupt(T0 + 2 * DIGEST_GIVE_UP_SECS, 0), Verdict::GiveUp, "the tenth past the deadline");
    }
}
