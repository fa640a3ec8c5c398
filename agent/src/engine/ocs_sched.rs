//! The OCS download scheduler (periods, cycles, priorities, latencies), pure
//! and fed `now`, without the real agent's bugs.
//!
//! The rules, from the CONF (`shared/reference/ocs-protocol.md` §7.3):
//! a period has `PERIOD_LENGTH` cycles `i = 1..=PERIOD_LENGTH`; in cycle `i` a
//! package of priority `p ≥ 1` gets a slot when `i % p == 0`; priority-0
//! packages get a slot in every cycle, before the others; `FRAG_LATENCY` is
//! waited after each slot, `CYCLE_LATENCY` after each cycle, `PERIOD_LATENCY`
//! after each period. A slot is one fragment, or the install once all
//! fragments are there. `TIMEOUT` days after a package was first seen it ends
//! with `ERR_TIMEOUT`.
//!
//! Unlike the Unix agent 2.10: priority 0 never starves the others (they get
//! their slots in the same cycle); a priority above `PERIOD_LENGTH` still
//! progresses (it counts as `PERIOD_LENGTH`); slot order is deterministic
//! (priority, then id) instead of hash order; a package whose slots keep
//! failing ends after [`MAX_SLOT_FAILURES`] (`ERR_DOWNLOAD_PACK`); the timeout
//! is checked before every slot, not only between periods.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use super::ocs::Conf;

/// Consecutive failed slots after which a package is given up.
pub const MAX_SLOT_FAILURES: u32 = 10;

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Give this package one slot now: one fragment, or its install.
    Slot(u64),
    /// Wait this long (a latency), then ask again.
    Wait(Duration),
    /// This package passed its TIMEOUT: report `ERR_TIMEOUT`. It is removed.
    Expired(u64),
    /// Nothing left to schedule.
    Idle,
}

#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    priority: u8,
    first_seen: u64,
    failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    StartCycle,
    InCycle,
    AfterSlot,
}

/// The scheduler. Call [`Scheduler::next`] with the wall time; report each
/// slot's result with [`Scheduler::slot_done`] or [`Scheduler::slot_failed`].
#[derive(Debug, Clone)]
pub struct Scheduler {
    conf: Conf,
    entries: Vec<Entry>,
    cycle: u32,
    queue: VecDeque<u64>,
    stage: Stage,
    max_failures: u32,
}

impl Scheduler {
    /// A scheduler for `conf` (a zero `period_length` counts as 1).
    pub fn new(conf: Conf) -> Self {
        Self {
            conf,
            entries: Vec::new(),
            cycle: 1,
            queue: VecDeque::new(),
            stage: Stage::StartCycle,
            max_failures: MAX_SLOT_FAILURES,
        }
    }

    /// Give a package up after `n` consecutive failed slots (at least 1)
    /// instead of [`MAX_SLOT_FAILURES`].
    pub fn with_max_failures(mut self, n: u32) -> Self {
        self.max_failures = n.max(1);
        self
    }

    /// Schedule a package (no effect if already there). `first_seen` is the
    /// wall time (seconds since 1970) it was first offered.
    pub fn add(&mut self, id: u64, priority: u8, first_seen: u64) {
        if !self.entries.iter().any(|e| e.id == id) {
            self.entries.push(Entry { id, priority, first_seen, failures: 0 });
        }
    }

    /// Stop scheduling a package (finished or failed).
    pub fn remove(&mut self, id: u64) {
        self.entries.retain(|e| e.id != id);
        self.queue.retain(|q| *q != id);
    }

    /// Packages still scheduled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The slot of `id` worked: its failure count starts over.
    pub fn slot_done(&mut self, id: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.failures = 0;
        }
    }

    /// The slot of `id` failed. Returns `true` when the package must be
    /// given up (`ERR_DOWNLOAD_PACK`); it is then removed.
    pub fn slot_failed(&mut self, id: u64) -> bool {
        let Some(e) = self.entries.iter_mut().find(|e| e.id == id) else { return false };
        e.failures += 1;
        let give_up = e.failures >= self.max_failures;
        if give_up {
            self.remove(id);
        }
        give_up
    }

    fn period_length(&self) -> u32 {
        self.conf.period_length.max(1)
    }

    fn fill_cycle(&mut self) {
        let len = self.period_length();
        let mut due: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.priority == 0 || self.cycle.is_multiple_of(u32::from(e.priority).min(len)))
            .collect();
        // Priority 0 first, then by priority and id; ids are unique, so the unstable sort is exact.
        due.sort_unstable_by_key(|e| (e.priority, e.id));
        self.queue = due.into_iter().map(|e| e.id).collect();
    }

    /// The next step at wall time `now` (seconds since 1970).
    pub fn next(&mut self, now: u64) -> Next {
        let timeout = u64::from(self.conf.timeout) * 86_400;
        if let Some(e) = self.entries.iter().find(|e| now.saturating_sub(e.first_seen) > timeout) {
            let id = e.id;
            self.remove(id);
            return Next::Expired(id);
        }
        if self.entries.is_empty() {
            return Next::Idle;
        }
        // At most two periods of empty cycles before a slot must come up.
        for _ in 0..=2 * self.period_length() + 1 {
            match self.stage {
                Stage::AfterSlot => {
                    self.stage = Stage::InCycle;
                    if self.conf.frag_latency > 0 {
                        return Next::Wait(Duration::from_secs(self.conf.frag_latency.into()));
                    }
                }
                Stage::StartCycle => {
                    self.fill_cycle();
                    self.stage = Stage::InCycle;
                }
                Stage::InCycle => {
                    if let Some(id) = self.queue.pop_front() {
                        self.stage = Stage::AfterSlot;
                        return Next::Slot(id);
                    }
                    // End of the cycle, maybe of the period.
                    let mut wait = u64::from(self.conf.cycle_latency);
                    self.cycle += 1;
                    if self.cycle > self.period_length() {
                        self.cycle = 1;
                        wait += u64::from(self.conf.period_latency);
                    }
                    self.stage = Stage::StartCycle;
                    if wait > 0 {
                        return Next::Wait(Duration::from_secs(wait));
                    }
                }
            }
        }
        Next::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn conf(period_length: u32, frag: u32, cycle: u32, period: u32) -> Conf {
        Conf {
            frag_latency: frag,
            cycle_latency: cycle,
            period_latency: period,
            period_length,
            timeout: 30,
            ..Conf::default()
        }
    }

    /// Drive in virtual time: each package needs `slots` slots. Returns
    /// (time, id) of every slot.
    fn drive(s: &mut Scheduler, mut slots: Vec<(u64, u32)>, limit: usize) -> Vec<(u64, u64)> {
        let mut now = 1_000;
        let mut out = Vec::new();
        while out.len() < limit {
            match s.next(now) {
                Next::Slot(id) => {
                    out.push((now, id));
                    let left = slots.iter_mut().find(|(i, _)| *i == id).map(|(_, n)| n).unwrap();
                    *left -= 1;
                    s.slot_done(id);
                    if *left == 0 {
                        s.remove(id);
                    }
                }
                Next::Wait(d) => now += d.as_secs(),
                Next::Expired(_) | Next::Idle => break,
            }
        }
        out
    }

    #[test]
    fn slots_follow_the_ocs_rules_with_latencies() {
        // PERIOD_LENGTH 4, FRAG 1 s, CYCLE 10 s, PERIOD 100 s.
        let mut s = Scheduler::new(conf(4, 1, 10, 100));
        s.add(30, 2, 1_000); // cycles 2, 4
        s.add(10, 0, 1_000); // every cycle, first
        s.add(20, 1, 1_000); // every cycle
        let got = drive(&mut s, vec![(10, 2), (20, 3), (30, 2)], 100);
        assert_eq!(
            got,
            vec![
                (1_000, 10), // cycle 1: p0 first
                (1_001, 20),
                (1_012, 10), // cycle 2 after frag + cycle latency; 10 done
                (1_013, 20),
                (1_014, 30),
                (1_025, 20), // cycle 3: 20 done
                (1_036, 30), // cycle 4
            ]
        );
    }

    #[test]
    fn priority_zero_never_starves_the_others() {
        // The real agent: a PRI-0 package left over at the end of a period
        // starves every other package. Here the others keep their slots.
        let mut s = Scheduler::new(conf(2, 0, 0, 0));
        s.add(1, 0, 0);
        s.add(2, 1, 0);
        let got = drive(&mut s, vec![(1, 50), (2, 3)], 20);
        let twos: Vec<usize> = got.iter().enumerate().filter(|(_, (_, id))| *id == 2).map(|(i, _)| i).collect();
        assert_eq!(twos, vec![1, 3, 5], "package 2 gets a slot every cycle: {got:?}");
    }

    #[test]
    fn priority_above_period_length_still_progresses() {
        let mut s = Scheduler::new(conf(3, 0, 1, 0));
        s.add(7, 9, 0);
        let got = drive(&mut s, vec![(7, 2)], 10);
        assert_eq!(got.len(), 2, "it gets the last cycle of each period: {got:?}");
    }

    #[test]
    fn failing_slots_end_the_package_and_timeouts_expire() {
        let mut s = Scheduler::new(conf(1, 0, 0, 0));
        s.add(1, 1, 0);
        for i in 1..MAX_SLOT_FAILURES {
            assert_eq!(s.next(0), Next::Slot(1));
            assert!(!s.slot_failed(1), "try {i}");
        }
        assert_eq!(s.next(0), Next::Slot(1));
        assert!(s.slot_failed(1));
        assert_eq!(s.next(0), Next::Idle);

        let mut t = Scheduler::new(conf(10, 0, 0, 0));
        t.add(5, 5, 100);
        assert_eq!(t.next(100 + 30 * 86_400), Next::Slot(5));
        assert_eq!(t.next(101 + 30 * 86_400), Next::Expired(5));
        assert!(t.is_empty());
    }

    #[test]
    fn empty_cycles_are_skipped_without_zero_latency_spin() {
        let mut s = Scheduler::new(conf(10, 0, 0, 0));
        s.add(1, 10, 0);
        assert_eq!(s.next(0), Next::Slot(1), "cycles 1-9 are empty");
        let mut w = Scheduler::new(conf(10, 0, 5, 0));
        w.add(1, 10, 0);
        let mut waited = 0;
        loop {
            match w.next(0) {
                Next::Wait(d) => waited += d.as_secs(),
                Next::Slot(1) => break,
                n => panic!("{n:?}"),
            }
        }
        assert_eq!(waited, 45, "nine empty cycles, each with its latency");
    }
}
