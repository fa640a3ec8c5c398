//! Which location a package's fragments come from: the depots the poll
//! reply lists (a branch nginx, a CDN) and the offer's own `pack_loc`
//! (sans-IO; the runtime probes and transfers, then tells the result).
//!
//! Every byte is checked against the signed manifest whatever served it, so
//! sources can be mixed freely, even within one fragment: the download
//! engine resumes at the byte where the last one stopped.
//!
//! ```text
//!   new(locations) ─► handle_probe(i, now, connect time | unreachable)   (once each)
//!   loop: poll_source(now) → i ─► [GET from i] ─► handle_transfer(i, now, bytes, took, ok)
//! ```
//!
//! The choice: sources demoted after a failure or stall sit out a backoff
//! (1 s doubling to 5 min). Among the others, connect time comes first: only
//! the *near* ones, within twice the lowest connect time (plus
//! [`NEAR_SLACK`]), serve, so a branch office's depot keeps fragments off
//! the WAN while it works. Among those, each not yet measured serves once, in
//! order of connect time; then the highest throughput (EWMA of transfers of
//! at least [`MIN_SAMPLE`] bytes) serves. When every source is demoted, the
//! one back soonest is given (the lifecycle paces its tries).

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use outpost_hal::time::Instant;

use super::limits::MAX_DEPOTS;

/// Most sources: the depots and the offer's own location.
pub const MAX_SOURCES: usize = MAX_DEPOTS + 1;
/// Fewest bytes a transfer must carry to count as a throughput sample.
pub const MIN_SAMPLE: u64 = 64 * 1024;
/// Connect times this close to the lowest count as near, whatever the ratio
/// (on a LAN they are all noise).
pub const NEAR_SLACK: Duration = Duration::from_millis(2);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Source {
    loc: String,
    /// Measured connect time (`None`: not probed).
    connect: Option<Duration>,
    /// Throughput, bytes/s, EWMA (`None`: not measured).
    rate: Option<u64>,
    /// Failures in a row.
    fails: u32,
    /// Demoted until then.
    until: Instant,
}

/// The sources of one package's fragments and what is known of each.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    list: Vec<Source>,
}

impl Sources {
    /// The sources at `locs`, in order of preference for ties, duplicates
    /// dropped, at most [`MAX_SOURCES`].
    pub fn new<'a>(locs: impl IntoIterator<Item = &'a str>) -> Self {
        let mut list: Vec<Source> = Vec::new();
        for loc in locs {
            if list.len() < MAX_SOURCES && !list.iter().any(|s| s.loc == loc) {
                let s = Source { loc: loc.into(), connect: None, rate: None, fails: 0, until: Instant::ZERO };
                list.push(s);
            }
        }
        Self { list }
    }

    /// Number of sources.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The location of source `i` (`host[:port]/path`).
    pub fn loc(&self, i: usize) -> &str {
        self.list.get(i).map_or("", |s| s.loc.as_str())
    }

    /// A probe of source `i` at `now`: its connect time, or `None` when it
    /// could not be reached (demoted).
    pub fn handle_probe(&mut self, i: usize, now: Instant, connect: Option<Duration>) {
        match connect {
            Some(d) => {
                if let Some(s) = self.list.get_mut(i) {
                    s.connect = Some(d);
                }
            }
            None => self.demote(i, now),
        }
    }

    /// A transfer from source `i` ended at `now`: `bytes` arrived in `took`;
    /// `ok` unless it failed, stalled or broke off.
    pub fn handle_transfer(&mut self, i: usize, now: Instant, bytes: u64, took: Duration, ok: bool) {
        if !ok {
            return self.demote(i, now);
        }
        let Some(s) = self.list.get_mut(i) else { return };
        s.fails = 0;
        if bytes >= MIN_SAMPLE {
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
            let sample = u64::try_from(u128::from(bytes) * 1_000_000 / u128::from(micros)).unwrap_or(u64::MAX);
            s.rate = Some(s.rate.map_or(sample, |r| r / 4 * 3 + sample / 4));
        }
    }

    fn demote(&mut self, i: usize, now: Instant) {
        let Some(s) = self.list.get_mut(i) else { return };
        let wait = BACKOFF_MIN.saturating_mul(1 << s.fails.min(16)).min(BACKOFF_MAX);
        s.fails = s.fails.saturating_add(1);
        s.until = now + wait;
    }

    /// The source to fetch from at `now` (`None` only when there is none).
    pub fn poll_source(&self, now: Instant) -> Option<usize> {
        let connect = |s: &Source| s.connect.unwrap_or_default();
        let usable = || self.list.iter().enumerate().filter(move |(_, s)| s.until <= now);
        let nearest = usable().map(|(_, s)| connect(s)).min();
        let near = |s: &Source| nearest.is_some_and(|m| connect(s) <= m.saturating_mul(2).saturating_add(NEAR_SLACK));
        let unmeasured = usable().filter(|(_, s)| near(s) && s.rate.is_none()).min_by_key(|(_, s)| connect(s));
        // max_by_key keeps the last of equals: reverse to prefer the first.
        let fastest = || usable().rev().filter(|(_, s)| near(s)).max_by_key(|(_, s)| s.rate);
        let back_soonest = || self.list.iter().enumerate().min_by_key(|(_, s)| s.until);
        unmeasured.or_else(fastest).or_else(back_soonest).map(|(i, _)| i)
    }

    /// Whether source `i` is demoted at `now`.
    pub fn is_demoted(&self, i: usize, now: Instant) -> bool {
        self.list.get(i).is_some_and(|s| s.until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const MIB: u64 = 1 << 20;

    fn t(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    #[test]
    fn the_nearest_is_tried_first_then_the_fastest_serves() {
        let mut s = Sources::new(["branch/o", "cdn/o", "central/o", "branch/o"]);
        assert_eq!(s.len(), 3, "duplicates dropped");
        s.handle_probe(0, t(0), Some(12 * MS));
        s.handle_probe(1, t(0), Some(5 * MS));
        s.handle_probe(2, t(0), Some(80 * MS));
        assert_eq!(s.poll_source(t(0)), Some(1), "lowest connect time first");
        s.handle_transfer(1, t(1), 4 * MIB, Duration::from_secs(4), true); // 1 MiB/s
        assert_eq!(s.poll_source(t(1)), Some(0), "then the next near one not yet measured");
        s.handle_transfer(0, t(2), 4 * MIB, Duration::from_millis(400), true); // 10 MiB/s
        for n in 2..10 {
            assert_eq!(s.poll_source(t(n)), Some(0), "the fastest near one serves from now on");
            s.handle_transfer(0, t(n), 4 * MIB, Duration::from_millis(400), true);
        }
        // The far one (over the WAN) only when no near one can.
        s.handle_transfer(0, t(10), 0, Duration::ZERO, false);
        assert_eq!(s.poll_source(t(10)), Some(1));
        s.handle_transfer(1, t(10), 0, Duration::ZERO, false);
        assert_eq!(s.poll_source(t(10)), Some(2));
        assert_eq!(s.poll_source(t(11)), Some(0), "back to the branch after its backoff");
    }

    #[test]
    fn a_failed_source_is_left_at_once_and_retried_after_its_backoff() {
        let mut s = Sources::new(["a/o", "b/o"]);
        s.handle_probe(0, t(0), Some(MS));
        s.handle_probe(1, t(0), Some(2 * MS));
        s.handle_transfer(0, t(0), 4 * MIB, Duration::from_secs(1), true);
        s.handle_transfer(1, t(0), 4 * MIB, Duration::from_secs(4), true);
        assert_eq!(s.poll_source(t(0)), Some(0));
        // a breaks off mid-fragment: b takes over at once.
        s.handle_transfer(0, t(10), 300_000, Duration::from_millis(100), false);
        assert!(s.is_demoted(0, t(10)));
        assert_eq!(s.poll_source(t(10)), Some(1));
        assert_eq!(s.poll_source(t(11)), Some(0), "back after 1 s");
        s.handle_transfer(0, t(11), 0, Duration::ZERO, false);
        assert_eq!(s.poll_source(t(12)), Some(1), "2 s the second time");
        assert_eq!(s.poll_source(t(13)), Some(0));
        // Both down: the one back soonest.
        s.handle_transfer(1, t(13), 0, Duration::ZERO, false);
        s.handle_transfer(0, t(13), 0, Duration::ZERO, false);
        assert_eq!(s.poll_source(t(13)), Some(1), "b is back at 14, a at 17");
    }

    #[test]
    fn an_unreachable_source_is_skipped_from_the_start() {
        let mut s = Sources::new(["dead/o", "live/o"]);
        s.handle_probe(0, t(0), None);
        assert!(s.is_demoted(0, t(0)));
        assert_eq!(s.poll_source(t(0)), Some(1), "not even tried, before one probed faster");
        s.handle_probe(1, t(0), Some(50 * MS));
        assert_eq!(s.poll_source(t(0)), Some(1));
    }

    #[test]
    fn a_source_that_slows_down_is_demoted_by_its_average() {
        let mut s = Sources::new(["a/o", "b/o"]);
        s.handle_transfer(0, t(0), 8 * MIB, Duration::from_secs(1), true); // 8 MiB/s
        s.handle_transfer(1, t(0), 2 * MIB, Duration::from_secs(1), true); // 2 MiB/s
        let mut n = 0;
        while s.poll_source(t(1)) == Some(0) {
            s.handle_transfer(0, t(1), MIB, Duration::from_secs(1), true); // now 1 MiB/s
            n += 1;
            assert!(n < 20, "a slow source keeps its place");
        }
        assert!(n > 1, "one slow sample does not move it (an average), {n} did");
        assert_eq!(s.poll_source(t(1)), Some(1));
        // Short transfers say nothing about throughput.
        s.handle_transfer(1, t(1), 100, Duration::from_secs(10), true);
        assert_eq!(s.poll_source(t(1)), Some(1));
    }
}
