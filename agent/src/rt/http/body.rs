//! The response body, read on demand over any [`BufRead`]: framed by
//! `Content-Length`, chunked encoding (size lines of at most
//! [`MAX_CHUNK_LINE`] bytes) or the connection's close, and never past its
//! limit (a 206's `Content-Range`, or what the caller accepts: a body that
//! announces or brings more is refused). A body that ends before its
//! announced length is an `UnexpectedEof` error, never a silent short read.

use std::io::{self, BufRead, Read};

use super::head::{Head, truncated};
use super::{Error, MAX_CHUNK_LINE};

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked: bytes left in the current chunk; the last chunk was seen.
    Chunked { left: u64, done: bool },
    /// Everything until the connection closes.
    Close,
}

/// A response body over `R`.
pub struct Body<R> {
    r: R,
    framing: Framing,
    /// Most bytes accepted, and how many were read.
    limit: Option<u64>,
    read: u64,
}

/// `InvalidData` carrying a typed [`Error`].
fn invalid(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// One line of at most `max` bytes before its `\n` (a `\r` before it is
/// dropped) into `out`.
fn line<R: BufRead>(r: &mut R, out: &mut Vec<u8>, max: usize, what: &'static str) -> io::Result<()> {
    out.clear();
    loop {
        let got = r.fill_buf()?;
        if got.is_empty() {
            return Err(truncated());
        }
        let (take, end) = got.iter().position(|&b| b == b'\n').map_or((got.len(), false), |i| (i, true));
        if out.len() + take > max {
            return Err(invalid(Error::TooLarge { what, limit: max as u64 }));
        }
        out.extend_from_slice(&got[..take]);
        r.consume(take + usize::from(end));
        if end {
            if out.last() == Some(&b'\r') {
                out.pop();
            }
            return Ok(());
        }
    }
}

/// A chunk-size line: 1 to 16 hex digits, then optional `;extensions`.
fn chunk_size(l: &[u8]) -> Option<u64> {
    let hex = l.split(|&b| b == b';').next()?.trim_ascii();
    if hex.is_empty() || hex.len() > 16 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

impl<R: BufRead> Body<R> {
    /// The body that follows `head` on `r`; a 206 is limited to its range.
    pub fn new(r: R, head: &Head) -> Self {
        Self { r, framing: head.framing, limit: head.span.map(|(a, b)| b - a + 1), read: 0 }
    }

    /// Accept at most `max` bytes: a body announced longer is refused now,
    /// one that brings more fails when it does.
    pub fn limit(&mut self, max: u64) -> Result<(), Error> {
        if let Framing::Length(n) = self.framing
            && self.read.saturating_add(n) > max
        {
            return Err(Error::TooLarge { what: "body", limit: max });
        }
        self.limit = Some(self.limit.map_or(max, |l| l.min(max)));
        Ok(())
    }

    /// Whether every byte of a body of known length has been read.
    pub fn is_done(&self) -> bool {
        self.framing == Framing::Length(0)
    }

    /// The reader under it.
    pub fn get_ref(&self) -> &R {
        &self.r
    }

    /// The reader under it, mutably.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.r
    }

    /// Give back the reader.
    pub fn into_inner(self) -> R {
        self.r
    }

    fn read_framed(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let cap = |left: u64| buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match self.framing {
            Framing::Length(0) | Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Length(left) => {
                let want = cap(left);
                let n = self.r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(truncated());
                }
                self.framing = Framing::Length(left - n as u64);
                Ok(n)
            }
            Framing::Close => match self.r.read(buf) {
                // A TLS peer that closes without close_notify is still the end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
            Framing::Chunked { mut left, .. } => {
                let mut l = Vec::new();
                if left == 0 {
                    line(&mut self.r, &mut l, MAX_CHUNK_LINE, "chunk-size line")?;
                    left = chunk_size(&l).ok_or_else(|| invalid(Error::Protocol("bad chunk size")))?;
                    if left == 0 {
                        // Trailers stay unread: the connection is not kept.
                        self.framing = Framing::Chunked { left: 0, done: true };
                        return Ok(0);
                    }
                }
                let want = cap(left);
                let n = self.r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(truncated());
                }
                left -= n as u64;
                if left == 0 {
                    let longer = || invalid(Error::Protocol("chunk longer than its size"));
                    match line(&mut self.r, &mut l, 1, "chunk end") {
                        Ok(()) if l.is_empty() => {}
                        Err(e) if e.kind() != io::ErrorKind::InvalidData => return Err(e),
                        _ => return Err(longer()),
                    }
                }
                self.framing = Framing::Chunked { left, done: false };
                Ok(n)
            }
        }
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(limit) = self.limit else { return self.read_framed(buf) };
        let left = limit - self.read;
        if left == 0 {
            // Every byte allowed was given: one more is enough to see that
            // the body runs over.
            return match self.read_framed(&mut [0u8; 1])? {
                0 => Ok(0),
                _ => Err(invalid(Error::TooLarge { what: "body", limit })),
            };
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.read_framed(&mut buf[..want])?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::head::read_head;
    use super::*;

    fn body(resp: &[u8], limit: Option<u64>) -> Result<Vec<u8>, Error> {
        let mut r = resp;
        let h = read_head(&mut r, false, None)?;
        let mut b = Body::new(r, &h);
        if let Some(m) = limit {
            b.limit(m)?;
        }
        let mut out = Vec::new();
        b.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn bodies_are_framed_by_length_chunks_or_close() {
        assert_eq!(body(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef", None).unwrap(), b"abc");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\n0\r\n\r\n";
        assert_eq!(body(chunked, None).unwrap(), b"abc0123456789");
        assert_eq!(body(b"HTTP/1.0 200 OK\r\n\r\nto the end", None).unwrap(), b"to the end");
        assert!(matches!(body(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", None), Err(Error::Io(_))));
    }

    #[test]
    fn chunk_lines_are_bounded_and_strict() {
        let long =
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}1\r\nx\r\n0\r\n\r\n", "0".repeat(2000));
        assert!(matches!(body(long.as_bytes(), None), Err(Error::TooLarge { what: "chunk-size line", .. })));
        for bad in ["+3\r\nabc\r\n", "3\r\nabcd\r\n", "x\r\n", "11111111111111111\r\n"] {
            let r = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{bad}0\r\n\r\n");
            assert!(matches!(body(r.as_bytes(), None), Err(Error::Protocol(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_body_past_its_limit_or_range_is_refused() {
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\nabc";
        assert!(matches!(body(huge, Some(1 << 20)), Err(Error::TooLarge { what: "body", limit: 1_048_576 })));
        let endless = [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), &[b'x'; 5000]].concat();
        assert!(matches!(body(&endless, Some(4096)), Err(Error::TooLarge { what: "body", limit: 4096 })));
        assert_eq!(body(&endless, Some(5000)).unwrap().len(), 5000);
        let past_range = [b"HTTP/1.1 206 P\r\nContent-Range: bytes 0-9/99\r\n\r\n".as_slice(), &[b'x'; 50]].concat();
        assert!(matches!(body(&past_range, None), Err(Error::TooLarge { what: "body", limit: 10 })));
        let chunked =
            b"HTTP/1.1 206 P\r\nContent-Range: bytes 0-1/9\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(matches!(body(chunked, None), Err(Error::TooLarge { .. })));
    }
}
