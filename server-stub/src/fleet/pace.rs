//! How often rollouts are moved on ([`super::rollout::evaluate`]).
//!
//! An evaluation reads every device while a rollout lives: microseconds
//! with a hundred devices, about a quarter of a second with 100,000, and
//! the database is the server's while it runs. Run at each report group
//! (as it once was), one rollout on a group of no device brought a server
//! with 100,000 devices from 19,000 reports a second to 80. `serve` now
//! asks once a second, on a thread of its own (`crate::every_second`).
//!
//! An evaluation that cost [`CHEAP`] or more lets the next run only after
//! ten times its cost from its start (at most a tenth of the time goes to
//! evaluations); what asks meanwhile is remembered and done by the first
//! ask or [`Pace::start`] after that. Cheaper ones (small fleets) run
//! whenever asked, as if there were no pacing. Pure: the caller gives the
//! time.

use std::time::{Duration, Instant};

/// An evaluation that cost less than this does not delay the next.
pub const CHEAP: Duration = Duration::from_millis(5);
/// An evaluation's cost, times this, is the least time from its start to
/// the next one's.
pub const SPACING: u32 = 10;

/// When the next evaluation may run.
#[derive(Debug, Default)]
pub struct Pace {
    /// An evaluation was asked for and has not run since.
    wanted: bool,
    /// One runs now.
    running: bool,
    /// Not before this.
    next: Option<Instant>,
}

impl Pace {
    /// Nothing asked for yet.
    pub const fn new() -> Self {
        Self { wanted: false, running: false, next: None }
    }

    /// An evaluation is asked for.
    pub fn ask(&mut self) {
        self.wanted = true;
    }

    /// Whether the evaluation asked for runs now: then the caller runs it
    /// and says so with [`Pace::ran`].
    pub fn start(&mut self, now: Instant) -> bool {
        let go = self.wanted && !self.running && self.next.is_none_or(|n| now >= n);
        if go {
            (self.wanted, self.running) = (false, true);
        }
        go
    }

    /// The evaluation started at `start` took `cost`.
    pub fn ran(&mut self, start: Instant, cost: Duration) {
        self.running = false;
        self.next = (cost >= CHEAP).then(|| start + cost * SPACING);
    }

    /// Whether an evaluation asked for waits.
    #[cfg(test)]
    fn waiting(&self) -> bool {
        self.wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheap_evaluations_run_whenever_asked() {
        let (mut p, t) = (Pace::new(), crate::time::monotonic_now());
        assert!(!p.start(t), "nothing asked");
        for i in 0..3 {
            p.ask();
            assert!(p.start(t + Duration::from_micros(i)));
            p.ran(t, Duration::from_micros(200));
        }
    }

    #[test]
    fn a_costly_evaluation_spaces_the_next_and_what_asked_meanwhile_runs_then() {
        let (mut p, t) = (Pace::new(), crate::time::monotonic_now());
        let cost = Duration::from_millis(250);
        p.ask();
        assert!(p.start(t));
        p.ask();
        assert!(!p.start(t + Duration::from_millis(1)), "one at a time");
        p.ran(t, cost);
        assert!(p.waiting(), "asked while it ran: remembered");
        assert!(!p.start(t + cost * 5), "a tenth of the time at most");
        assert!(p.start(t + cost * SPACING), "then the one asked for runs");
        p.ran(t + cost * SPACING, Duration::from_millis(1));
        assert!(!p.waiting());
        assert!(!p.start(t + cost * 11), "nothing asked since");
        p.ask();
        assert!(p.start(t + cost * 11), "cheap again: at once");
    }
}
