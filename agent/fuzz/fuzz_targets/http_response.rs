//! The agent's HTTP response reader (what a fragment server, untrusted by
//! design, sends back), fed arbitrary bytes a few at a time: reading never
//! panics, the head reader takes at most `MAX_HEAD` bytes and exactly the
//! head's, a body never brings more than the caller accepts or a 206's
//! range, and a body of known length brings exactly that or fails.
#![no_main]

use std::io::{self, BufRead, Read};

use libfuzzer_sys::fuzz_target;
use outpost_agent::rt::http::{Body, MAX_HEAD, MAX_HEADERS, read_head};

/// The input, handed out at most `step` bytes per read, like a socket.
struct Socket<'a> {
    data: &'a [u8],
    pos: usize,
    step: usize,
}

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.len().min(buf.len());
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl BufRead for Socket<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let end = self.data.len().min(self.pos + self.step);
        Ok(&self.data[self.pos..end])
    }
    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

fuzz_target!(|data: &[u8]| {
    let [step, flags, limit, rest @ ..] = data else { return };
    let step = usize::from(*step % 64) + 1;
    let head_only = flags & 1 != 0;
    let limit = (flags & 2 != 0).then_some(u64::from(*limit) * 64);
    let mut s = Socket { data: rest, pos: 0, step };
    let Ok(head) = read_head(&mut s, head_only, None) else {
        assert!(s.pos <= MAX_HEAD, "a refused head read {} bytes", s.pos);
        return;
    };
    assert!(head.len <= MAX_HEAD && head.len == s.pos, "head of {} bytes, {} read", head.len, s.pos);
    assert!(head.headers().count() <= MAX_HEADERS);
    let mut body = Body::new(s, &head);
    if let Some(max) = limit
        && body.limit(max).is_err()
    {
        assert!(head.body_len().is_some_and(|n| n > max), "refused at once only when announced longer");
        return;
    }
    let mut buf = [0u8; 700];
    let mut got = 0u64;
    let ended = loop {
        match body.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got += n as u64,
            Err(_) => break false,
        }
        if let Some(max) = limit {
            assert!(got <= max, "{got} bytes past the limit {max}");
        }
        if let Some((a, b)) = head.span {
            assert!(got <= b - a + 1, "{got} bytes past the range {a}-{b}");
        }
    };
    if ended && let Some(n) = head.body_len() {
        assert_eq!(got, n, "a body of known length ends at it");
    }
    if head_only {
        assert_eq!(got, 0, "a HEAD answer has no body");
    }
});
