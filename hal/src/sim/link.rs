//! A network path in virtual time, with faults.

use alloc::vec::Vec;
use core::time::Duration;

use crate::time::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
