//! Download progress for `outpost-agent status`: per package being
//! downloaded, bytes held of the total, percent, rate and time left.
//!
//! Bytes held are what the journal's newest checkpoint vouches for (read
//! without re-hashing, [`crate::engine::download::durable_bytes`]): bytes
//! received since the last checkpoint are not counted. The rate is
//! measured, not guessed: each `status` keeps what it saw (package, bytes
//! held, time) in `STATE/status-sample`, and the next `status`, between 1 s
//! and [`MAX_SAMPLE_AGE_MS`] later, divides the bytes gained since by the
//! time passed. A first `status`, or one too long after the previous, shows
//! no rate and no time left (`-`); so does a package whose bytes went down
//! (its download started over). Time left is the bytes missing at that
//! rate; an OCS package's total (hence percent and time left) is unknown
//! until its last fragment is here.

use std::path::Path;

/// Oldest previous sample a rate is measured against (ms).
pub const MAX_SAMPLE_AGE_MS: u64 = 600_000;
/// Youngest (ms): closer samples say nothing useful.
pub const MIN_SAMPLE_AGE_MS: u64 = 1_000;
/// Samples read from the file at most (one per package downloading).
const MAX_SAMPLES: usize = 256;
/// The sample file, in the state directory.
pub const SAMPLE_FILE: &str = "status-sample";

/// What one `status` saw of one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Package id.
    pub id: u64,
    /// Bytes held.
    pub held: u64,
    /// Wall time, ms since 1970 UTC.
    pub at_ms: u64,
}

/// One package's download progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes held (checkpointed).
    pub held: u64,
    /// The archive's size, when known.
    pub total: Option<u64>,
    /// Measured bytes a second, when measurable.
    pub rate: Option<u64>,
}

impl Progress {
    /// Percent held, in tenths (0..=1000), when the total is known.
    pub fn permille(&self) -> Option<u64> {
        let t = self.total?;
        // Saturating: exact below 18 PB.
        Some(self.held.min(t).saturating_mul(1000).checked_div(t).unwrap_or(1000))
    }

    /// Seconds until the total is held at the measured rate.
    pub fn seconds_left(&self) -> Option<u64> {
        let missing = self.total?.saturating_sub(self.held);
        match self.rate? {
            _ if missing == 0 => Some(0),
            0 => None,
            r => Some(missing.div_ceil(r)),
        }
    }
}

/// The rate of package `now.id` since its sample in `prev`, if one is
/// between [`MIN_SAMPLE_AGE_MS`] and [`MAX_SAMPLE_AGE_MS`] old and the
/// bytes did not go down.
pub fn rate(prev: &[Sample], now: Sample) -> Option<u64> {
    let p = prev.iter().find(|p| p.id == now.id)?;
    let age = now.at_ms.checked_sub(p.at_ms)?;
    if !(MIN_SAMPLE_AGE_MS..=MAX_SAMPLE_AGE_MS).contains(&age) {
        return None;
    }
    Some(now.held.checked_sub(p.held)?.saturating_mul(1000) / age)
}

/// The samples in `text` (lines `ID HELD AT_MS`); malformed lines skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut w = l.split(' ').map(|n| n.parse::<u64>().unwrap_or(u64::MAX));
        let (id, held, at_ms) = (w.next(), w.next(), w.next());
        if let (Some(id), Some(held), Some(at_ms)) = (id, held, at_ms)
            && id != u64::MAX
            && held != u64::MAX
            && at_ms != u64::MAX
            && out.len() < MAX_SAMPLES
        {
            out.push(Sample { id, held, at_ms });
        }
    }
    out
}

/// The previous samples kept in `state_dir` (none if unreadable), bounded,
/// never through a link.
pub fn load(state_dir: &Path) -> Vec<Sample> {
    let p = state_dir.join(SAMPLE_FILE);
    // Bounded: a larger file is not one status wrote.
    if std::fs::symlink_metadata(&p).map_or(true, |m| !m.is_file() || m.len() > 64 * 1024) {
        return Vec::new();
    }
    let bytes = outpost_hal::linux::read_nofollow(&p).unwrap_or_default();
    parse(core::str::from_utf8(&bytes).unwrap_or_default())
}

/// Keep `samples` for the next `status`, as the agent writes every file
/// (a new 0600 file, never through a link, renamed into place). Best
/// effort: a status that cannot write them still shows what it saw.
pub fn save(state_dir: &Path, samples: &[Sample]) {
    let mut text = String::new();
    for s in samples.iter().take(MAX_SAMPLES) {
        for (n, sep) in [(s.id, ' '), (s.held, ' '), (s.at_ms, '\n')] {
            text += &num(n);
            text.push(sep);
        }
    }
    let _ = outpost_hal::linux::write_atomic(&state_dir.join(SAMPLE_FILE), text.as_bytes());
}

/// `n` in decimal: one out-of-line copy for every number `status` prints
/// (`to_string` inlines its own at each call).
#[inline(never)]
pub fn num(mut n: u64) -> String {
    let mut d = [0u8; 20];
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    d[i..].iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn s(id: u64, held: u64, at_ms: u64) -> Sample {
        Sample { id, held, at_ms }
    }

    #[test]
    fn the_rate_is_the_bytes_gained_over_the_time_between_two_samples() {
        let prev = [s(1, 1_000, 10_000), s(2, 500, 10_000)];
        assert_eq!(rate(&prev, s(1, 201_000, 12_000)), Some(100_000));
        assert_eq!(rate(&prev, s(2, 500, 20_000)), Some(0), "stalled");
        assert_eq!(rate(&prev, s(3, 9, 12_000)), None, "no previous sample");
        assert_eq!(rate(&prev, s(1, 2_000, 10_500)), None, "too close");
        assert_eq!(rate(&prev, s(1, 2_000, 10_000 + MAX_SAMPLE_AGE_MS + 1)), None, "too old");
        assert_eq!(rate(&prev, s(1, 10, 12_000)), None, "started over");
        assert_eq!(rate(&prev, s(1, 2_000, 9_000)), None, "the clock went back");
    }

    #[test]
    fn percent_and_time_left() {
        let p = Progress { held: 250, total: Some(1_000), rate: Some(50) };
        assert_eq!((p.permille(), p.seconds_left()), (Some(250), Some(15)));
        let ocs = Progress { held: 250, total: None, rate: Some(50) };
        assert_eq!((ocs.permille(), ocs.seconds_left()), (None, None));
        let stalled = Progress { rate: Some(0), ..p };
        assert_eq!(stalled.seconds_left(), None);
        let done = Progress { held: 1_000, total: Some(1_000), rate: None };
        assert_eq!((done.permille(), done.seconds_left()), (Some(1000), None));
        let empty = Progress { held: 0, total: Some(0), rate: Some(0) };
        assert_eq!((empty.permille(), empty.seconds_left()), (Some(1000), Some(0)));
    }

    #[test]
    fn samples_round_trip_and_garbage_is_skipped() {
        let t = std::env::temp_dir().join(format!("outpost-progress-{}", std::process::id()));
        std::fs::create_dir_all(&t).unwrap();
        let v = [s(1, 2, 3), s(17, 1 << 40, 1_700_000_000_000)];
        save(&t, &v);
        assert_eq!(load(&t), v);
        assert_eq!([num(0), num(7), num(u64::MAX)], ["0", "7", "18446744073709551615"]);
        assert_eq!(parse("1 2 3\nx y z\n4 5\n\n6 7 8 9\n-1 2 3\n"), [s(1, 2, 3), s(6, 7, 8)]);
        std::fs::remove_dir_all(&t).unwrap();
    }
}
