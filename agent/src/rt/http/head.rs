//! The response head: read into a buffer of at most [`MAX_HEAD`] bytes,
//! parsed by httparse into at most [`MAX_HEADERS`] fields, and turned once
//! into what the body reader needs (its framing and, on a 206, the range it
//! holds). Works over any [`BufRead`]: the client's connection, or the fuzz
//! target's bytes.

use std::io::{self, BufRead};
use std::time::{Duration, Instant};

use super::body::Framing;
use super::{Error, MAX_HEAD, MAX_HEADERS};

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The minor version: `HTTP/1.0` or `HTTP/1.1`.
    pub version: u8,
    /// Names in lower case, values trimmed (invalid UTF-8 replaced).
    headers: Vec<(String, String)>,
    pub(super) framing: Framing,
    /// HTTP/1.1, no `Connection: close`, and a body with an end.
    pub(super) keep_alive: bool,
    /// On a 206, the first and last byte (inclusive) of the resource that the
    /// body holds, from `Content-Range`; the body is refused past it.
    pub span: Option<(u64, u64)>,
    /// Bytes the head took on the wire, at most [`MAX_HEAD`].
    pub len: usize,
}

impl Head {
    /// A header's value (names are case-insensitive; the first of several).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header, in order, name in lower case.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The body's length when the head says it (`Content-Length`, or none).
    pub fn body_len(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }
}

/// Where the head ends (after its empty line), searching from `from`.
fn head_end(h: &[u8], from: usize) -> Option<usize> {
    (from..h.len()).find_map(|i| match &h[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// Digits only (no sign, no space inside), as RFC 9110 writes lengths.
fn number(s: &str) -> Option<u64> {
    s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse().ok()).flatten()
}

/// `bytes FIRST-LAST/TOTAL` (or `/*`): the first and last byte.
fn content_range(v: &str) -> Option<(u64, u64)> {
    let (range, _total) = v.strip_prefix("bytes ")?.trim_start().split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b) = (number(a)?, number(b)?);
    (a <= b).then_some((a, b))
}

/// Read and parse one response head from `r`, consuming exactly its bytes.
/// `head_only`: the answer to a HEAD (no body, whatever it says). With
/// `timeout` `(since, within)`, a head not complete `within` of `since` is
/// [`Error::Stalled`].
#[allow(clippy::disallowed_methods)] // the head deadline: runtime glue
pub fn read_head<R: BufRead>(r: &mut R, head_only: bool, timeout: Option<(Instant, Duration)>) -> Result<Head, Error> {
    let mut buf = Vec::new();
    let len = loop {
        let got = r.fill_buf()?;
        if got.is_empty() {
            return Err(if buf.is_empty() { Error::Closed } else { Error::Protocol("response head cut short") });
        }
        let start = buf.len();
        let take = got.len().min(MAX_HEAD - start);
        buf.extend_from_slice(&got[..take]);
        if let Some(end) = head_end(&buf, start.saturating_sub(2)) {
            r.consume(end - start);
            buf.truncate(end);
            break end;
        }
        r.consume(take);
        if buf.len() >= MAX_HEAD {
            return Err(Error::TooLarge { what: "head", limit: MAX_HEAD as u64 });
        }
        if let Some((since, within)) = timeout
            && since.elapsed() > within
        {
            return Err(Error::Stalled { what: "head", bytes: buf.len() as u64, secs: since.elapsed().as_secs() });
        }
    };
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    match resp.parse(&buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::TooLarge { what: "header count", limit: MAX_HEADERS as u64 });
        }
        _ => return Err(Error::Protocol("unparsable response head")),
    }
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Err(Error::Protocol("unparsable response head"));
    };
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_string()))
        .collect();
    let all = |n: &'static str| headers.iter().filter(move |(k, _)| k == n).map(|(_, v)| v.as_str());
    let mut length = None;
    for v in all("content-length") {
        let n = number(v).ok_or(Error::Protocol("bad content-length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(Error::Protocol("differing content-lengths"));
        }
        length = Some(n);
    }
    let mut codings = all("transfer-encoding").flat_map(|v| v.split(',')).map(str::trim).filter(|c| !c.is_empty());
    let chunked = match codings.next_back() {
        None => false,
        Some(c) if c.eq_ignore_ascii_case("chunked") => true,
        Some(_) => return Err(Error::Protocol("unsupported transfer-encoding")),
    };
    let framing = if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked { left: 0, done: false }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let span = if status == 206 { all("content-range").next().and_then(content_range) } else { None };
    if let (Some((a, b)), Framing::Length(n)) = (span, framing)
        && n != b - a + 1
        && !head_only
    {
        return Err(Error::Protocol("content-length disagrees with content-range"));
    }
    let close = all("connection").flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case("close"));
    let keep_alive = version == 1 && !close && framing != Framing::Close;
    Ok(Head { status, version, headers, framing, keep_alive, span, len })
}

/// `io::Error` for a stream that ended inside a body.
pub(super) fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "response body truncated")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Result<Head, Error> {
        read_head(&mut &bytes[..], false, None)
    }

    #[test]
    fn a_head_is_read_to_its_empty_line_and_no_further() {
        let mut r = &b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 3-7/10\r\nContent-Length: 5\r\n\r\nbody!"[..];
        let h = read_head(&mut r, false, None).unwrap();
        assert_eq!((h.status, h.span, h.body_len(), h.keep_alive), (206, Some((3, 7)), Some(5), true));
        assert_eq!(r, b"body!");
        let h = head(b"HTTP/1.0 200 OK\nX: y\n\nrest").unwrap();
        assert_eq!((h.version, h.header("x"), h.keep_alive, h.len), (0, Some("y"), false, 22));
    }

    #[test]
    fn a_head_without_an_end_is_cut_at_the_bound() {
        let endless = [b"HTTP/1.1 206 ".as_slice(), &[b'a'; 3 * MAX_HEAD]].concat();
        assert!(matches!(head(&endless), Err(Error::TooLarge { what: "head", .. })));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert!(matches!(head(many.as_bytes()), Err(Error::TooLarge { what: "header count", .. })));
        let lines = format!("HTTP/1.1 200 OK\r\n{}", "X: y\r\n".repeat(MAX_HEAD));
        assert!(matches!(head(lines.as_bytes()), Err(Error::TooLarge { what: "head", .. })));
        assert!(matches!(head(b""), Err(Error::Closed)));
        assert!(matches!(head(b"HTTP/1.1 200 OK\r\n"), Err(Error::Protocol(_))));
    }

    #[test]
    fn lengths_are_digits_that_agree_with_each_other_and_the_range() {
        for bad in [
            "Content-Length: +5",
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: 99999999999999999999",
            "Transfer-Encoding: gzip",
            "Content-Range: bytes 0-3/9\r\nContent-Length: 5",
        ] {
            let h = format!("HTTP/1.1 206 X\r\n{bad}\r\n\r\n");
            assert!(matches!(head(h.as_bytes()), Err(Error::Protocol(_))), "{bad}");
        }
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(h.body_len(), Some(5));
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Chunked { left: 0, done: false });
        let h = head(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn a_past_deadline_stops_an_unfinished_head() {
        struct Trickle;
        impl io::Read for Trickle {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                b[0] = b'x';
                Ok(1)
            }
        }
        #[allow(clippy::disallowed_methods)]
        let past = Some((Instant::now(), Duration::ZERO));
        let mut r = io::BufReader::new(Trickle);
        assert!(matches!(read_head(&mut r, false, past), Err(Error::Stalled { what: "head", .. })));
    }
}
