//! Content-defined chunking (a gear rolling hash with FastCDC's normalised
//! cut points): a file is cut where the hash of the last 64 bytes has its
//! top bits zero, never before [`MIN`] bytes nor after [`MAX`], with a
//! harder condition before [`AVG`] and an easier one after it, so chunk
//! sizes cluster around [`AVG`]. Cut points depend only on nearby content:
//! an insertion or a changed region moves the boundaries around it, the
//! rest of the file keeps its chunks (and their objects).

use std::io::{self, Read};

/// The smallest chunk (but a file's last).
pub const MIN: usize = 64 * 1024;
/// The size chunks cluster around.
pub const AVG: usize = 256 * 1024;
/// The largest chunk ([`outpost_agent::engine::tree::MAX_CHUNK`]).
pub const MAX: usize = outpost_agent::engine::tree::MAX_CHUNK as usize;

/// Top bits that must be zero before [`AVG`] (harder) and after (easier).
const MASK_HARD: u64 = !0 << (64 - 20);
const MASK_EASY: u64 = !0 << (64 - 16);

/// 256 fixed pseudo-random words (splitmix64 from a fixed seed): the same
/// on every server, so every server cuts the same content the same way.
const GEAR: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut s: u64 = 0x6f75_7470_6f73_7431;
    let mut i = 0;
    while i < 256 {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
};

/// Length of the first chunk of `data` (all of it when it holds no cut
/// point before [`MAX`], or is shorter than [`MIN`]).
pub fn cut(data: &[u8]) -> usize {
    if data.len() <= MIN {
        return data.len();
    }
    let end = data.len().min(MAX);
    let mut h = 0u64;
    for (i, &b) in data.iter().enumerate().take(end).skip(MIN) {
        h = (h << 1).wrapping_add(GEAR[b as usize]);
        let mask = if i < AVG { MASK_HARD } else { MASK_EASY };
        if h & mask == 0 {
            return i + 1;
        }
    }
    end
}

/// Cuts what `r` yields into chunks, reading at most [`MAX`] bytes ahead.
pub struct Chunker<R> {
    r: R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    /// Chunks of `r`.
    pub fn new(r: R) -> Self {
        Self { r, buf: Vec::with_capacity(2 * MAX), eof: false }
    }

    /// The next chunk; `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        while !self.eof && self.buf.len() < MAX {
            let have = self.buf.len();
            self.buf.resize(MAX, 0);
            let n = self.r.read(&mut self.buf[have..])?;
            self.buf.truncate(have + n);
            self.eof = n == 0;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let n = cut(&self.buf);
        let rest = self.buf.split_off(n);
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect()
    }

    fn chunks(data: &[u8]) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(data);
        let mut out = Vec::new();
        while let Some(x) = c.next_chunk().unwrap() {
            out.push(x);
        }
        out
    }

    #[test]
    fn chunks_are_within_bounds_and_rebuild_the_input() {
        let data = noise(8 << 20, 1);
        let c = chunks(&data);
        assert_eq!(c.concat(), data);
        for x in &c[..c.len() - 1] {
            assert!((MIN..=MAX).contains(&x.len()), "{}", x.len());
        }
        let avg = data.len() / c.len();
        assert!((AVG / 2..AVG * 2).contains(&avg), "average {avg}");
        assert_eq!(chunks(b"small"), vec![b"small".to_vec()]);
        assert!(chunks(b"").is_empty());
        // Runs of one byte value have no cut point: MAX-sized chunks.
        assert!(chunks(&vec![0u8; 3 << 20]).iter().all(|x| x.len() == MAX));
    }

    #[test]
    fn boundaries_are_stable_after_an_insertion() {
        let data = noise(16 << 20, 2);
        let mut edited = data.clone();
        let at = 5 << 20;
        edited.splice(at..at, noise(1000, 3));
        let before: std::collections::HashSet<_> = chunks(&data).into_iter().collect();
        let after = chunks(&edited);
        let new: usize = after.iter().filter(|c| !before.contains(*c)).map(Vec::len).sum();
        // Only the chunks around the insertion are new: at most two or three.
        assert!(new <= 3 * MAX, "{new} new bytes of {}", edited.len());
        assert!(new >= 1000);
    }
}
