//! Deterministic simulators: a clock that tests advance and a disk whose
//! unsynced state vanishes on a power cut and that can run full.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::Cell;
use core::time::Duration;

use crate::storage::{DiskSpace, DurableStore, SpaceInfo};
use crate::time::{Clock, Instant};
use crate::{ErrorKind, ErrorType};

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

/// A disk of named objects with a capacity and a power switch.
///
/// `write_atomic` is durable when it returns. `power_cut_after(n)` makes the
/// n-th following write fail with [`ErrorKind::PowerLoss`] without effect;
/// the objects written before it survive.
#[derive(Debug, Default)]
pub struct SimDisk {
    objects: BTreeMap<String, Vec<u8>>,
    capacity: u64,
    writes: u64,
    bytes_written: u64,
    cut_after: Option<u64>,
}

impl SimDisk {
    /// An empty disk of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self { capacity, ..Self::default() }
    }

    /// Change the capacity (a disk that fills up or gets space back).
    pub fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    /// Cut the power at the n-th write from now (0 = the next one).
    pub fn power_cut_after(&mut self, n: u64) {
        self.cut_after = Some(n);
    }

    /// Number of successful writes and bytes written so far.
    pub fn write_stats(&self) -> (u64, u64) {
        (self.writes, self.bytes_written)
    }

    fn used(&self) -> u64 {
        self.objects.values().map(|v| v.len() as u64).sum()
    }
}

impl ErrorType for SimDisk {
    type Error = ErrorKind;
}

impl DiskSpace for SimDisk {
    fn space(&mut self) -> Result<SpaceInfo, ErrorKind> {
        Ok(SpaceInfo { total: self.capacity, available: self.capacity.saturating_sub(self.used()) })
    }
}

impl DurableStore for SimDisk {
    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<(), ErrorKind> {
        if let Some(n) = self.cut_after {
            if n == 0 {
                self.cut_after = None;
                return Err(ErrorKind::PowerLoss);
            }
            self.cut_after = Some(n - 1);
        }
        let old = self.objects.get(name).map_or(0, |v| v.len() as u64);
        if self.used() - old + data.len() as u64 > self.capacity {
            return Err(ErrorKind::StorageFull);
        }
        self.objects.insert(name.to_string(), data.to_vec());
        self.writes += 1;
        self.bytes_written += data.len() as u64;
        Ok(())
    }

    fn read(&mut self, name: &str, out: &mut Vec<u8>) -> Result<(), ErrorKind> {
        let v = self.objects.get(name).ok_or(ErrorKind::NotFound)?;
        out.clear();
        out.extend_from_slice(v);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), ErrorKind> {
        self.objects.remove(name);
        Ok(())
    }
}

/// A user who answers from a script, and a record of what was asked.
#[derive(Debug, Default)]
pub struct SimNotifier {
    answers: alloc::collections::VecDeque<crate::notify::Answer>,
    /// `(kind, package, text)` of every notice, in order.
    pub asked: Vec<(crate::notify::NoticeKind, u64, String)>,
}

impl SimNotifier {
    /// Answer with `answers` in turn, then `Proceed`.
    pub fn new(answers: &[crate::notify::Answer]) -> Self {
        Self { answers: answers.iter().copied().collect(), asked: Vec::new() }
    }
}

impl ErrorType for SimNotifier {
    type Error = ErrorKind;
}

impl crate::notify::Notifier for SimNotifier {
    fn ask(&mut self, n: &crate::notify::Notice<'_>) -> Result<crate::notify::Answer, ErrorKind> {
        self.asked.push((n.kind, n.package, n.text.to_string()));
        Ok(self.answers.pop_front().unwrap_or(crate::notify::Answer::Proceed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_then_space_returns() {
        let mut d = SimDisk::new(10);
        d.write_atomic("a", b"12345678").unwrap();
        assert_eq!(d.write_atomic("b", b"123"), Err(ErrorKind::StorageFull));
        d.set_capacity(20);
        d.write_atomic("b", b"123").unwrap();
        assert_eq!(d.space().unwrap().available, 9);
    }

    #[test]
    fn power_cut_keeps_old_content() {
        let mut d = SimDisk::new(100);
        d.write_atomic("s", b"old").unwrap();
        d.power_cut_after(0);
        assert_eq!(d.write_atomic("s", b"new"), Err(ErrorKind::PowerLoss));
        let mut out = Vec::new();
        d.read("s", &mut out).unwrap();
        assert_eq!(out, b"old");
    }

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
