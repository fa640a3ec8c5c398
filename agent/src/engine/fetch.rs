//! Fetching one fragment, resumable at byte granularity (sans-IO).
//!
//! The runtime owns the socket and the file; this type decides what to ask
//! for and what to keep:
//!
//! ```text
//!  resume(durable prefix) ─► range() ─► [GET with Range] ─► handle_head(status, Content-Range)
//!        ─► handle_body(chunk)* → (offset, bytes to write) ─► finish() → Ok | Err
//! ```
//!
//! It copes with servers that ignore `Range` (200: the prefix it already has
//! is skipped, not written again), with a `Content-Range` that starts before
//! what it has (overlap skipped), and refuses one that leaves a gap, names
//! another size, or a body longer than announced. The SHA-256 of the
//! fragment is computed as bytes arrive and checked at the end.
//!
//! A fragment of an OCS package has no signed size or digest
//! ([`FragmentFetch::unsigned`]): it is as long as the server's whole answer
//! says (a 200's body, or the total of a `Content-Range`), within a bound,
//! and only the whole archive's digest checks it later.

use alloc::format;
use alloc::string::String;
use core::fmt;

/// Why a fetch attempt failed. All are worth a retry except where noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The server answered with this HTTP status.
    Status(u16),
    /// `Content-Range` is missing, malformed, for another size, or leaves a gap.
    BadContentRange,
    /// The body goes past the fragment's end.
    TooLong,
    /// The body ended before the fragment was complete (truncated response).
    Short,
    /// All bytes arrived but their SHA-256 is wrong: the runtime must discard
    /// the fragment's bytes and start it over.
    Corrupt,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "server answered {s}"),
            Self::BadContentRange => f.write_str("bad content-range"),
            Self::TooLong => f.write_str("body longer than the fragment"),
            Self::Short => f.write_str("body ended early"),
            Self::Corrupt => f.write_str("fragment digest mismatch"),
        }
    }
}

impl core::error::Error for FetchError {}

/// The state of one fragment's download.
#[derive(Clone)]
pub struct FragmentFetch {
    /// The size (signed), or the most it may hold (unsized).
    size: u64,
    /// The signed SHA-256; `None` for a fragment without signed metadata.
    expected: Option<[u8; 32]>,
    have: u64,
    hasher: ring::digest::Context,
    /// Bytes at the start of the current body that we already have.
    skip: u64,
    /// Offset one past the last byte the current body may carry.
    body_end: u64,
    /// Unsized: where the fragment ends, once an answer said so (a 200's
    /// body ends it; a `Content-Range` total names it).
    end: Option<u64>,
    /// Unsized, under a 200: the body's length so far.
    whole: Option<u64>,
}

impl fmt::Debug for FragmentFetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FragmentFetch").field("size", &self.size).field("have", &self.have).finish()
    }
}

/// Parse `bytes first-last/total` (total may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.trim().split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

impl FragmentFetch {
    /// A fragment of `size` bytes whose SHA-256 must be `sha256`.
    pub fn new(size: u64, sha256: [u8; 32]) -> Self {
        Self {
            size,
            expected: Some(sha256),
            have: 0,
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            skip: 0,
            body_end: 0,
            end: None,
            whole: None,
        }
    }

    /// A fragment whose size and digest nobody signed, of at most `max`
    /// bytes (an OCS package's; its archive digest checks it later).
    pub fn unsigned(max: u64) -> Self {
        Self { expected: None, ..Self::new(max, [0; 32]) }
    }

    /// Whether this fragment has a signed size and digest.
    pub fn is_signed(&self) -> bool {
        self.expected.is_some()
    }

    /// Feed bytes already durable on disk (the start of the fragment), after
    /// a restart. Bytes past the fragment's size are ignored.
    pub fn resume(&mut self, durable: &[u8]) {
        let room = (self.size - self.have) as usize;
        let take = &durable[..durable.len().min(room)];
        if self.is_signed() {
            self.hasher.update(take);
        }
        self.have += take.len() as u64;
    }

    /// Take `n` durable bytes on trust (an unsized fragment has no digest
    /// to feed; its bytes are only counted). Capped at the fragment's bound.
    pub fn resume_unsigned(&mut self, n: u64) {
        if !self.is_signed() {
            self.have = self.have.saturating_add(n).min(self.size);
        }
    }

    /// Bytes of the fragment held so far.
    pub fn have(&self) -> u64 {
        self.have
    }

    /// Size of the fragment.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether every byte has arrived.
    pub fn is_complete(&self) -> bool {
        match self.expected {
            Some(_) => self.have == self.size,
            None => self.end == Some(self.have),
        }
    }

    /// The `Range` header value for the next request, `None` for a plain GET
    /// (nothing held yet).
    pub fn range(&self) -> Option<String> {
        match self.expected {
            Some(_) => (self.have > 0).then(|| format!("bytes={}-{}", self.have, self.size - 1)),
            None => (self.have > 0).then(|| format!("bytes={}-", self.have)),
        }
    }

    /// Let the current answer carry at most `room` more bytes (the free
    /// disk space, for a fragment whose size nobody signed). Returns whether
    /// that cut the answer short of what the fragment may hold.
    pub fn limit(&mut self, room: u64) -> bool {
        let end = self.body_end.min(self.have.saturating_add(room));
        let cut = end < self.body_end;
        self.body_end = end;
        cut
    }

    /// Take the status line and `Content-Range` of a response.
    pub fn handle_head(&mut self, status: u16, content_range: Option<&str>) -> Result<(), FetchError> {
        match status {
            200 => {
                // Range ignored (or not sent): the body is the whole fragment.
                self.skip = self.have;
                self.body_end = self.size;
                self.whole = (!self.is_signed()).then_some(0);
                Ok(())
            }
            206 => {
                let (first, last, total) =
                    content_range.and_then(parse_content_range).ok_or(FetchError::BadContentRange)?;
                let signed = self.is_signed();
                // Unsigned, the total names the size; past the bound the
                // fragment is too long (what is held stays: every later try
                // fails at once), and a range past it is cut at the bound.
                if !signed && total.is_some_and(|t| t > self.size) {
                    return Err(FetchError::TooLong);
                }
                let bad_total =
                    if signed { total.is_some_and(|t| t != self.size) } else { total.is_some_and(|t| last >= t) };
                if bad_total || last < first || (signed && last >= self.size) || first > self.have {
                    return Err(FetchError::BadContentRange);
                }
                self.whole = None;
                if !signed {
                    self.end = Some(total.unwrap_or(last + 1));
                }
                self.skip = self.have - first;
                self.body_end = (last + 1).min(self.size);
                if self.body_end <= self.have {
                    // Nothing new in it: at the bound (unsigned), or a range
                    // that ends before what is held.
                    return Err(if last >= self.size { FetchError::TooLong } else { FetchError::BadContentRange });
                }
                Ok(())
            }
            s => Err(FetchError::Status(s)),
        }
    }

    /// Take the next body chunk. Returns the offset in the fragment and the
    /// bytes the runtime must write there (possibly empty).
    pub fn handle_body<'a>(&mut self, chunk: &'a [u8]) -> Result<(u64, &'a [u8]), FetchError> {
        let skip = self.skip.min(chunk.len() as u64) as usize;
        self.skip -= skip as u64;
        let data = &chunk[skip..];
        if self.have + data.len() as u64 > self.body_end {
            return Err(FetchError::TooLong);
        }
        if let Some(w) = self.whole.as_mut() {
            *w += chunk.len() as u64;
        }
        let offset = self.have;
        if self.is_signed() {
            self.hasher.update(data);
        }
        self.have += data.len() as u64;
        Ok((offset, data))
    }

    /// The body has ended. `Ok` when the fragment is complete and verified;
    /// `Short` when more is needed (resume with a new request); `Corrupt`
    /// when all bytes are there but wrong.
    ///
    /// Unsized, the answer says where the fragment ends: a 200's body is all
    /// of it (one shorter than what was already held means the fragment
    /// changed: `Corrupt`, start over), a `Content-Range` total names it.
    pub fn finish(&mut self) -> Result<(), FetchError> {
        let Some(expected) = self.expected else {
            if let Some(len) = self.whole.take() {
                self.end = Some(len);
            }
            return match self.end {
                Some(end) if end == self.have => Ok(()),
                Some(end) if end < self.have => Err(FetchError::Corrupt),
                _ => Err(FetchError::Short),
            };
        };
        if self.have < self.size {
            return Err(FetchError::Short);
        }
        let got = self.hasher.clone().finish();
        if got.as_ref() == expected { Ok(()) } else { Err(FetchError::Corrupt) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::manifest::sha256;
    use alloc::vec::Vec;

    const DATA: &[u8] = b"0123456789abcdefghij";

    fn fetch() -> FragmentFetch {
        FragmentFetch::new(DATA.len() as u64, sha256(DATA))
    }

    /// Feed a response; collect what would be written.
    fn run(
        f: &mut FragmentFetch,
        status: u16,
        cr: Option<&str>,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FetchError> {
        f.handle_head(status, cr)?;
        for c in body.chunks(3) {
            let (off, w) = f.handle_body(c)?;
            assert_eq!(off as usize, out.len(), "writes are contiguous");
            out.extend_from_slice(w);
        }
        f.finish()
    }

    #[test]
    fn truncated_body_resumes_with_range() {
        let mut f = fetch();
        let mut out = Vec::new();
        assert_eq!(run(&mut f, 200, None, &DATA[..7], &mut out), Err(FetchError::Short));
        assert_eq!(f.range().as_deref(), Some("bytes=7-19"));
        run(&mut f, 206, Some("bytes 7-19/20"), &DATA[7..], &mut out).unwrap();
        assert_eq!(out, DATA);
    }

    #[test]
    fn range_ignored_skips_what_we_have() {
        let mut f = fetch();
        f.resume(&DATA[..12]);
        let mut out = DATA[..12].to_vec();
        run(&mut f, 200, None, DATA, &mut out).unwrap();
        assert_eq!(out, DATA);
    }

    #[test]
    fn overlapping_content_range_is_skipped_gap_is_refused() {
        let mut f = fetch();
        f.resume(&DATA[..10]);
        let mut out = DATA[..10].to_vec();
        run(&mut f, 206, Some("bytes 5-19/20"), &DATA[5..], &mut out).unwrap();
        assert_eq!(out, DATA);

        let mut g = fetch();
        g.resume(&DATA[..10]);
        assert_eq!(g.handle_head(206, Some("bytes 12-19/20")), Err(FetchError::BadContentRange));
        assert_eq!(g.handle_head(206, Some("bytes 10-19/21")), Err(FetchError::BadContentRange));
        assert_eq!(g.handle_head(206, Some("bytes 10-25/20")), Err(FetchError::BadContentRange));
        assert_eq!(g.handle_head(206, Some("garbage")), Err(FetchError::BadContentRange));
        assert_eq!(g.handle_head(206, None), Err(FetchError::BadContentRange));
        assert_eq!(g.handle_head(503, None), Err(FetchError::Status(503)));
    }

    #[test]
    fn an_unsigned_fragment_ends_where_the_answer_says_within_its_bound() {
        // A whole 200 body is the fragment.
        let mut f = FragmentFetch::unsigned(100);
        let mut out = Vec::new();
        run(&mut f, 200, None, DATA, &mut out).unwrap();
        assert_eq!((out.as_slice(), f.have(), f.is_complete()), (DATA, 20, true));

        // Cut (the transfer broke), then resumed to the end with an open range.
        let mut f = FragmentFetch::unsigned(100);
        let mut out = Vec::new();
        f.handle_head(200, None).unwrap();
        out.extend_from_slice(f.handle_body(&DATA[..7]).unwrap().1);
        assert_eq!(f.range().as_deref(), Some("bytes=7-"));
        run(&mut f, 206, Some("bytes 7-19/20"), &DATA[7..], &mut out).unwrap();
        assert_eq!(out, DATA);
        // After a restart, the kept bytes are counted; a 200 skips them.
        let mut g = FragmentFetch::unsigned(100);
        g.resume_unsigned(12);
        let mut out = DATA[..12].to_vec();
        run(&mut g, 200, None, DATA, &mut out).unwrap();
        assert_eq!(out, DATA);

        // Past the bound, a total past it, a range past the total: refused.
        let mut f = FragmentFetch::unsigned(19);
        assert_eq!(run(&mut f, 200, None, DATA, &mut Vec::new()), Err(FetchError::TooLong));
        let mut f = FragmentFetch::unsigned(19);
        assert_eq!(f.handle_head(206, Some("bytes 0-9/20")), Err(FetchError::TooLong));
        let mut f = FragmentFetch::unsigned(19);
        assert_eq!(run(&mut f, 206, Some("bytes 0-19/*"), DATA, &mut Vec::new()), Err(FetchError::TooLong));
        let mut f = FragmentFetch::unsigned(100);
        assert_eq!(f.handle_head(206, Some("bytes 0-19/10")), Err(FetchError::BadContentRange));
        // The room left on disk bounds an answer too.
        let mut f = FragmentFetch::unsigned(100);
        f.handle_head(200, None).unwrap();
        f.limit(10);
        assert_eq!(f.handle_body(DATA), Err(FetchError::TooLong));

        // A 206 cut short of its total is short; a 200 shorter than what was
        // held means the fragment changed: start over.
        let mut f = FragmentFetch::unsigned(100);
        assert_eq!(run(&mut f, 206, Some("bytes 0-9/20"), &DATA[..10], &mut Vec::new()), Err(FetchError::Short));
        let mut f = FragmentFetch::unsigned(100);
        f.resume_unsigned(15);
        assert_eq!(run(&mut f, 200, None, &DATA[..12], &mut DATA[..15].to_vec()), Err(FetchError::Corrupt));
    }

    #[test]
    fn corrupt_byte_and_overlong_body_are_caught() {
        let mut f = fetch();
        let mut bad = DATA.to_vec();
        bad[4] ^= 0x20;
        let mut out = Vec::new();
        assert_eq!(run(&mut f, 200, None, &bad, &mut out), Err(FetchError::Corrupt));

        let mut g = fetch();
        let mut long = DATA.to_vec();
        long.push(b'!');
        assert_eq!(run(&mut g, 200, None, &long, &mut Vec::new()), Err(FetchError::TooLong));
    }
}
