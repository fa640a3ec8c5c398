//! Deterministic simulators: a clock that tests advance and a disk whose
//! unsynced state vanishes on a power cut and that can run full.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::Cell;
use core::time::Duration;

use crate::storage::{DiskSpace, SpaceInfo};
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

/// A filesystem's space, set by the test: a disk that fills up, or gets
/// space back.
#[derive(Debug, Default, Clone)]
pub struct SimDisk {
    total: u64,
    available: u64,
    /// Fail every `space` call (a filesystem that cannot be asked).
    broken: bool,
}

impl SimDisk {
    /// An empty disk of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self { total: capacity, available: capacity, broken: false }
    }

    /// Make `available` bytes free (at most the capacity).
    pub fn set_available(&mut self, available: u64) {
        self.available = available.min(self.total);
    }

    /// Make the next `space` calls fail (`true`) or answer again (`false`).
    pub fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }
}

impl ErrorType for SimDisk {
    type Error = ErrorKind;
}

impl DiskSpace for SimDisk {
    fn space(&mut self) -> Result<SpaceInfo, ErrorKind> {
        if self.broken {
            return Err(ErrorKind::Io);
        }
        Ok(SpaceInfo { total: self.total, available: self.available })
    }
}

#[derive(Debug, Default, Clone)]
struct SimFile {
    durable: Option<Vec<u8>>,
    pending: Vec<u8>,
}

/// A [`BlockStore`](crate::storage::BlockStore) with a power switch.
///
/// Every file has a durable image (what survives) and a pending one (what
/// reads see). `sync` makes pending durable. `power_cut_after(n)`: the n-th
/// next `write_at` fails with [`ErrorKind::PowerLoss`]; with `torn`, a prefix
/// of that write reaches the durable image anyway. Until [`SimBlocks::reboot`]
/// every call fails. The capacity counts pending bytes: past it, writes fail
/// with [`ErrorKind::StorageFull`] without effect.
#[derive(Debug)]
pub struct SimBlocks {
    files: BTreeMap<String, SimFile>,
    capacity: u64,
    cut_after: Option<(u64, bool)>,
    dead: bool,
    writes: u64,
    bytes_written: u64,
}

impl SimBlocks {
    /// An empty disk of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self { files: BTreeMap::new(), capacity, cut_after: None, dead: false, writes: 0, bytes_written: 0 }
    }

    /// Change the capacity.
    pub fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    /// Cut the power at the `n`-th next write (0 = the next one), tearing it if `torn`.
    pub fn power_cut_after(&mut self, n: u64, torn: bool) {
        self.cut_after = Some((n, torn));
    }

    /// Power back on: everything not synced is gone.
    pub fn reboot(&mut self) {
        self.dead = false;
        self.cut_after = None;
        self.files.retain(|_, f| f.durable.is_some());
        for f in self.files.values_mut() {
            f.pending = f.durable.clone().unwrap_or_default();
        }
    }

    /// Whether the power is cut.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Successful `write_at` calls and the bytes they wrote.
    pub fn write_stats(&self) -> (u64, u64) {
        (self.writes, self.bytes_written)
    }

    /// The durable content of `name`.
    pub fn durable(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name)?.durable.as_deref()
    }

    /// Overwrite the durable and pending content of `name` (to plant garbage).
    pub fn plant(&mut self, name: &str, data: &[u8]) {
        self.files.insert(name.to_string(), SimFile { durable: Some(data.to_vec()), pending: data.to_vec() });
    }

    fn used(&self) -> u64 {
        self.files.values().map(|f| f.pending.len() as u64).sum()
    }

    fn alive(&self) -> Result<(), ErrorKind> {
        if self.dead { Err(ErrorKind::PowerLoss) } else { Ok(()) }
    }
}

impl ErrorType for SimBlocks {
    type Error = ErrorKind;
}

impl crate::storage::BlockStore for SimBlocks {
    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), ErrorKind> {
        self.alive()?;
        let off = usize::try_from(offset).map_err(|_| ErrorKind::Other)?;
        if let Some((n, torn)) = self.cut_after {
            if n == 0 {
                self.dead = true;
                if torn && !data.is_empty() {
                    let f = self.files.entry(name.to_string()).or_default();
                    let mut d = f.durable.clone().unwrap_or_default();
                    let keep = (data.len() / 2).max(1);
                    if d.len() < off + keep {
                        d.resize(off + keep, 0);
                    }
                    d[off..off + keep].copy_from_slice(&data[..keep]);
                    f.durable = Some(d);
                }
                return Err(ErrorKind::PowerLoss);
            }
            self.cut_after = Some((n - 1, torn));
        }
        let cur = self.files.get(name).map_or(0, |f| f.pending.len());
        let grow = (off + data.len()).saturating_sub(cur) as u64;
        if self.used() + grow > self.capacity {
            return Err(ErrorKind::StorageFull);
        }
        let f = self.files.entry(name.to_string()).or_default();
        if f.pending.len() < off + data.len() {
            f.pending.resize(off + data.len(), 0);
        }
        f.pending[off..off + data.len()].copy_from_slice(data);
        self.writes += 1;
        self.bytes_written += data.len() as u64;
        Ok(())
    }

    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.alive()?;
        let f = self.files.get(name).ok_or(ErrorKind::NotFound)?;
        let off = usize::try_from(offset).map_err(|_| ErrorKind::Other)?.min(f.pending.len());
        let n = buf.len().min(f.pending.len() - off);
        buf[..n].copy_from_slice(&f.pending[off..off + n]);
        Ok(n)
    }

    fn len(&mut self, name: &str) -> Result<u64, ErrorKind> {
        self.alive()?;
        self.files.get(name).map(|f| f.pending.len() as u64).ok_or(ErrorKind::NotFound)
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), ErrorKind> {
        self.alive()?;
        let len = usize::try_from(len).map_err(|_| ErrorKind::Other)?;
        self.files.entry(name.to_string()).or_default().pending.resize(len, 0);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> Result<(), ErrorKind> {
        self.alive()?;
        let f = self.files.entry(name.to_string()).or_default();
        f.durable = Some(f.pending.clone());
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), ErrorKind> {
        self.alive()?;
        self.files.remove(name);
        Ok(())
    }
}

/// Network interfaces whose states and counters tests script over time.
#[derive(Debug, Default)]
pub struct SimNet {
    /// `(name, state, counters)` of each interface.
    pub ifaces: Vec<(String, crate::net::LinkState, crate::net::Counters)>,
    /// The interface every address routes to.
    pub route: Option<String>,
}

impl SimNet {
    /// One interface `name` in `state`, carrying every route.
    pub fn one(name: &str, state: crate::net::LinkState) -> Self {
        Self { ifaces: alloc::vec![(name.to_string(), state, Default::default())], route: Some(name.to_string()) }
    }

    /// Set an interface's state.
    pub fn set_state(&mut self, name: &str, state: crate::net::LinkState) {
        if let Some(i) = self.ifaces.iter_mut().find(|i| i.0 == name) {
            i.1 = state;
        }
    }

    /// Add traffic to an interface's counters.
    pub fn add_traffic(&mut self, name: &str, rx: u64, tx: u64) {
        if let Some(i) = self.ifaces.iter_mut().find(|i| i.0 == name) {
            i.2.rx_bytes += rx;
            i.2.tx_bytes += tx;
        }
    }
}

impl ErrorType for SimNet {
    type Error = ErrorKind;
}

impl crate::net::NetMonitor for SimNet {
    fn interfaces(&mut self) -> Result<Vec<crate::net::Interface>, ErrorKind> {
        Ok(self.ifaces.iter().map(|i| crate::net::Interface { name: i.0.clone(), state: i.1 }).collect())
    }
    fn link_state(&mut self, iface: &str) -> Result<crate::net::LinkState, ErrorKind> {
        self.ifaces.iter().find(|i| i.0 == iface).map(|i| i.1).ok_or(ErrorKind::NotFound)
    }
    fn counters(&mut self, iface: &str) -> Result<crate::net::Counters, ErrorKind> {
        self.ifaces.iter().find(|i| i.0 == iface).map(|i| i.2).ok_or(ErrorKind::NotFound)
    }
    fn route_to(&mut self, _addr: core::net::IpAddr) -> Result<Option<String>, ErrorKind> {
        Ok(self.route.clone())
    }
}

/// Power control that counts reboot requests.
#[derive(Debug, Default)]
pub struct SimPower {
    /// Reboots requested so far.
    pub reboots: u32,
    /// What `user_logged_in` answers.
    pub logged_in: Option<bool>,
}

impl ErrorType for SimPower {
    type Error = ErrorKind;
}

impl crate::power::Power for SimPower {
    fn reboot(&mut self) -> Result<(), ErrorKind> {
        self.reboots += 1;
        Ok(())
    }
    fn user_logged_in(&mut self) -> Result<Option<bool>, ErrorKind> {
        Ok(self.logged_in)
    }
}

/// A fault a [`SimLink`] applies to the next transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// The connection drops after this many body bytes (a transfer error).
    DropAfter(usize),
    /// The body ends cleanly after this many bytes (a short response).
    Truncate(usize),
    /// One byte at this offset of the body arrives flipped.
    Corrupt(usize),
}

/// How a simulated transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEnd {
    /// Every byte arrived.
    Complete,
    /// The body ended early but cleanly.
    Short,
    /// The connection broke.
    Dropped,
    /// The link was down: nothing arrived.
    LinkDown,
}

/// A body delivered over a [`SimLink`]: chunks with their arrival times.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// `(arrival, bytes)` in order.
    pub chunks: Vec<(Instant, Vec<u8>)>,
    /// How it ended.
    pub end: TransferEnd,
}

/// A network path in virtual time: a bandwidth, a latency, periods when the
/// link is down, and faults applied to the next transfers.
#[derive(Debug, Clone)]
pub struct SimLink {
    /// Bytes per second (0: no limit).
    pub bandwidth: u64,
    /// Delay before the first byte of a response.
    pub latency: Duration,
    down: Vec<(Instant, Instant)>,
    faults: alloc::collections::VecDeque<LinkFault>,
}

impl SimLink {
    /// A link of `bandwidth` bytes per second and `latency`.
    pub fn new(bandwidth: u64, latency: Duration) -> Self {
        Self { bandwidth, latency, down: Vec::new(), faults: Default::default() }
    }

    /// The link is down from `from` until `until`.
    pub fn down_between(&mut self, from: Instant, until: Instant) {
        self.down.push((from, until));
    }

    /// Apply `f` to the next transfer (faults queue up, one per transfer).
    pub fn push_fault(&mut self, f: LinkFault) {
        self.faults.push_back(f);
    }

    /// Whether the link is up at `t`.
    pub fn is_up(&self, t: Instant) -> bool {
        !self.down.iter().any(|(a, b)| *a <= t && t < *b)
    }

    /// Deliver `body`, asked for at `now`, in chunks of `chunk` bytes paced by
    /// the bandwidth. A down period cuts the transfer where it begins.
    pub fn transfer(&mut self, now: Instant, body: &[u8], chunk: usize) -> Transfer {
        if !self.is_up(now) {
            return Transfer { chunks: Vec::new(), end: TransferEnd::LinkDown };
        }
        let mut body = body.to_vec();
        let mut end = TransferEnd::Complete;
        match self.faults.pop_front() {
            Some(LinkFault::DropAfter(n)) if n < body.len() => {
                body.truncate(n);
                end = TransferEnd::Dropped;
            }
            Some(LinkFault::Truncate(n)) if n < body.len() => {
                body.truncate(n);
                end = TransferEnd::Short;
            }
            Some(LinkFault::Corrupt(at)) => {
                if let Some(b) = body.get_mut(at) {
                    *b ^= 0x40;
                }
            }
            _ => {}
        }
        let start = now + self.latency;
        let mut chunks = Vec::new();
        let mut sent = 0u64;
        for c in body.chunks(chunk.max(1)) {
            sent += c.len() as u64;
            let micros = sent.saturating_mul(1_000_000).checked_div(self.bandwidth).unwrap_or(0);
            let at = start + Duration::from_micros(micros);
            if !self.is_up(at) {
                return Transfer { chunks, end: TransferEnd::Dropped };
            }
            chunks.push((at, c.to_vec()));
        }
        Transfer { chunks, end }
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
        d.set_available(0);
        assert_eq!(d.space().unwrap(), SpaceInfo { total: 10, available: 0 });
        d.set_available(99);
        assert_eq!(d.space().unwrap().available, 10, "never more than the capacity");
        d.set_broken(true);
        assert!(d.space().is_err());
    }

    #[test]
    fn unsynced_writes_vanish_on_a_power_cut() {
        use crate::storage::BlockStore;
        let mut d = SimBlocks::new(1 << 20);
        d.write_at("f", 0, b"durable").unwrap();
        d.sync("f").unwrap();
        d.write_at("f", 0, b"PENDING").unwrap();
        d.power_cut_after(0, false);
        assert_eq!(d.write_at("f", 7, b"x"), Err(ErrorKind::PowerLoss));
        assert_eq!(d.len("f"), Err(ErrorKind::PowerLoss), "dead until reboot");
        d.reboot();
        let mut b = [0u8; 16];
        let n = d.read_at("f", 0, &mut b).unwrap();
        assert_eq!(&b[..n], b"durable");
        // A torn write leaves half of the interrupted write on disk.
        d.power_cut_after(0, true);
        assert!(d.write_at("f", 0, b"ABCDEF").is_err());
        d.reboot();
        let n = d.read_at("f", 0, &mut b).unwrap();
        assert_eq!(&b[..n], b"ABCable");
        // Unsynced new files are gone entirely.
        d.write_at("g", 0, b"x").unwrap();
        d.power_cut_after(0, false);
        let _ = d.write_at("g", 1, b"y");
        d.reboot();
        assert_eq!(d.len("g"), Err(ErrorKind::NotFound));
    }

    #[test]
    fn blocks_run_full_without_effect() {
        use crate::storage::BlockStore;
        let mut d = SimBlocks::new(10);
        d.write_at("f", 0, b"12345678").unwrap();
        assert_eq!(d.write_at("f", 8, b"abc"), Err(ErrorKind::StorageFull));
        assert_eq!(d.len("f").unwrap(), 8);
        d.set_capacity(11);
        d.write_at("f", 8, b"abc").unwrap();
    }

    #[test]
    fn a_slow_link_paces_in_virtual_time_and_faults_apply_once() {
        let mut l = SimLink::new(100_000, Duration::from_millis(50));
        let t = l.transfer(Instant::ZERO, &[7u8; 300_000], 10_000);
        assert_eq!(t.end, TransferEnd::Complete);
        assert_eq!(t.chunks.len(), 30);
        assert_eq!(t.chunks.last().unwrap().0, Instant::from_millis(3_050), "300 kB at 100 kB/s + 50 ms");
        l.push_fault(LinkFault::DropAfter(25_000));
        let t = l.transfer(Instant::ZERO, &[7u8; 300_000], 10_000);
        assert_eq!((t.end, t.chunks.iter().map(|c| c.1.len()).sum::<usize>()), (TransferEnd::Dropped, 25_000));
        l.push_fault(LinkFault::Corrupt(3));
        let t = l.transfer(Instant::ZERO, &[0u8; 10], 10);
        assert_eq!(t.chunks[0].1[3], 0x40);
        assert_eq!(l.transfer(Instant::ZERO, &[0u8; 10], 10).chunks[0].1[3], 0, "once");
        l.down_between(Instant::from_secs(1), Instant::from_secs(2));
        assert_eq!(l.transfer(Instant::from_millis(1_500), &[0u8; 10], 10).end, TransferEnd::LinkDown);
        let t = l.transfer(Instant::ZERO, &[0u8; 300_000], 10_000);
        assert_eq!(t.end, TransferEnd::Dropped, "the link went down mid-transfer");
        assert!(t.chunks.last().unwrap().0 < Instant::from_secs(1));
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
