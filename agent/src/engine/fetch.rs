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
    size: u64,
    expected: [u8; 32],
    have: u64,
    hasher: ring::digest::Context,
    /// Bytes at the start of the current body that we already have.
    skip: u64,
    /// Offset one past the last byte the current body may carry.
    body_end: u64,
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
            expected: sha256,
            have: 0,
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            skip: 0,
            body_end: 0,
        }
    }

    /// Feed bytes already durable on disk (the start of the fragment), after
    /// a restart. Bytes past the fragment's size are ignored.
    pub fn resume(&mut self, durable: &[u8]) {
        let room = (self.size - self.have) as usize;
        let take = &durable[..durable.len().min(room)];
        self.hasher.update(take);
        self.have += take.len() as u64;
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
        self.have == self.size
    }

    /// The `Range` header value for the next request, `None` for a plain GET
    /// (nothing held yet).
    pub fn range(&self) -> Option<String> {
        (self.have > 0).then(|| format!("bytes={}-{}", self.have, self.size - 1))
    }

    /// Take the status line and `Content-Range` of a response.
    pub fn handle_head(&mut self, status: u16, content_range: Option<&str>) -> Result<(), FetchError> {
        match status {
            200 => {
                // Range ignored (or not sent): the body is the whole fragment.
                self.skip = self.have;
                self.body_end = self.size;
                Ok(())
            }
            206 => {
                let (first, last, total) =
                    content_range.and_then(parse_content_range).ok_or(FetchError::BadContentRange)?;
                if total.is_some_and(|t| t != self.size) || last < first || last >= self.size || first > self.have {
                    return Err(FetchError::BadContentRange);
                }
                self.skip = self.have - first;
                self.body_end = last + 1;
                if self.body_end <= self.have {
                    return Err(FetchError::BadContentRange);
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
        let offset = self.have;
        self.hasher.update(data);
        self.have += data.len() as u64;
        Ok((offset, data))
    }

    /// The body has ended. `Ok` when the fragment is complete and verified;
    /// `Short` when more is needed (resume with a new request); `Corrupt`
    /// when all bytes are there but wrong.
    pub fn finish(&self) -> Result<(), FetchError> {
        if self.have < self.size {
            return Err(FetchError::Short);
        }
        let got = self.hasher.clone().finish();
        if got.as_ref() == self.expected { Ok(()) } else { Err(FetchError::Corrupt) }
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
