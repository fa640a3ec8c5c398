//! Minimal HTTP/1.1 server side: read a request (bounded head and body, with
//! a deadline), write a response (bytes or a file range), and `Range`
//! handling (single ranges → 206 + Content-Range; unsatisfiable → 416;
//! several ranges → the whole file, as RFC 9110 allows).

use std::time::Duration;

use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use smol::prelude::AsyncRead;

/// Largest request head.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 256 * 1024;
/// Time allowed to receive a whole request once its first byte arrived, and
/// to wait for the next request on a kept-alive connection.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Target path (query string stripped).
    pub path: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Whether the client asked to close after this request.
    pub close: bool,
}

impl Request {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed or timed out between requests: not an error.
    Closed,
    /// Answer this status and close.
    Reject(u16, &'static str),
}

/// Read one request.
pub async fn read_request<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Result<Request, ReadError> {
    let mut head = Vec::with_capacity(1024);
    let head_done = async {
        loop {
            let n = (&mut *s).take((MAX_HEAD + 1 - head.len()) as u64).read_until(b'\n', &mut head).await;
            match n {
                Ok(0) if head.is_empty() => return Err(ReadError::Closed),
                Ok(0) => return Err(ReadError::Reject(400, "truncated request")),
                Ok(_) if head.len() > MAX_HEAD => {
                    return Err(ReadError::Reject(431, "request head too large"));
                }
                Ok(_) if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") => return Ok(()),
                Ok(_) if head == b"\r\n" => head.clear(), // tolerate a stray CRLF between requests
                Ok(_) => {}
                Err(_) => return Err(ReadError::Closed),
            }
        }
    };
    smol::future::or(head_done, async {
        smol::Timer::after(REQUEST_TIMEOUT).await;
        Err(ReadError::Closed)
    })
    .await?;
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hs);
    match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ReadError::Reject(400, "malformed request")),
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_string()))
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    if get("transfer-encoding").is_some() {
        return Err(ReadError::Reject(411, "send a Content-Length"));
    }
    let len: usize = match get("content-length") {
        None => 0,
        Some(v) => v.parse().map_err(|_| ReadError::Reject(400, "bad content-length"))?,
    };
    if len > MAX_BODY {
        return Err(ReadError::Reject(413, "request body too large"));
    }
    let conn = get("connection").unwrap_or("").to_ascii_lowercase();
    let close = conn.contains("close") || (req.version == Some(0) && !conn.contains("keep-alive"));
    let mut body = vec![0u8; len];
    let read_body = async { s.read_exact(&mut body).await.map_err(|_| ReadError::Reject(400, "truncated body")) };
    smol::future::or(read_body, async {
        smol::Timer::after(REQUEST_TIMEOUT).await;
        Err(ReadError::Reject(408, "request body timed out"))
    })
    .await?;
    Ok(Request { method, path, headers, body, close })
}

/// A response body.
pub enum Body {
    /// In memory.
    Bytes(Vec<u8>),
    /// `len` bytes of a file from `offset`.
    File {
        /// The open file.
        file: std::fs::File,
        /// First byte.
        offset: u64,
        /// Byte count.
        len: u64,
    },
}

/// A response.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Body,
}

impl Response {
    /// A small text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: Body::Bytes(body.into().into_bytes()),
        }
    }

    fn len(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Write `resp`; with `head_only` the body is left out (HEAD).
pub async fn write_response<S: AsyncWrite + Unpin>(
    s: &mut S,
    resp: Response,
    head_only: bool,
    close: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\nContent-Length: {}\r\n", resp.status, reason(resp.status), resp.len());
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    if !head_only {
        match resp.body {
            Body::Bytes(b) => s.write_all(&b).await?,
            Body::File { file, offset, len } => {
                use std::io::{Read, Seek, SeekFrom};
                let mut file = file;
                file.seek(SeekFrom::Start(offset))?;
                let mut left = len;
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let want = buf.len().min(left as usize);
                    let n = file.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank"));
                    }
                    s.write_all(&buf[..n]).await?;
                    left -= n as u64;
                }
            }
        }
    }
    s.flush().await
}

/// What a `Range` header asks of a resource of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Send everything (no header, several ranges, or not understood).
    Full,
    /// Send bytes `first..=last`.
    Partial(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Interpret a `Range` header for `len` bytes.
pub fn range(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = if a.is_empty() {
        // Suffix: the last b bytes.
        match b.parse::<u64>() {
            Ok(0) | Err(_) => {
                return if b == "0" { RangeAnswer::Unsatisfiable } else { RangeAnswer::Full };
            }
            Ok(n) => Some((len.saturating_sub(n), len.saturating_sub(1))),
        }
    } else {
        match (a.parse::<u64>(), if b.is_empty() { Ok(u64::MAX) } else { b.parse::<u64>() }) {
            (Ok(first), Ok(last)) if first <= last => Some((first, last.min(len.saturating_sub(1)))),
            _ => return RangeAnswer::Full,
        }
    };
    match parsed {
        Some((first, last)) if len > 0 && first < len => RangeAnswer::Partial(first, last),
        _ => RangeAnswer::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range(None, 10), RangeAnswer::Full);
        assert_eq!(range(Some("bytes=2-5"), 10), RangeAnswer::Partial(2, 5));
        assert_eq!(range(Some("bytes=2-"), 10), RangeAnswer::Partial(2, 9));
        assert_eq!(range(Some("bytes=2-100"), 10), RangeAnswer::Partial(2, 9));
        assert_eq!(range(Some("bytes=-3"), 10), RangeAnswer::Partial(7, 9));
        assert_eq!(range(Some("bytes=10-"), 10), RangeAnswer::Unsatisfiable);
        assert_eq!(range(Some("bytes=0-1,4-5"), 10), RangeAnswer::Full);
        assert_eq!(range(Some("bytes=5-2"), 10), RangeAnswer::Full);
        assert_eq!(range(Some("items=1-2"), 10), RangeAnswer::Full);
    }

    #[test]
    fn requests_are_bounded() {
        smol::block_on(async {
            let ok = b"POST /x?y HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc".to_vec();
            let r = read_request(&mut BufReader::new(&ok[..])).await.unwrap();
            assert_eq!((r.method.as_str(), r.path.as_str(), &r.body[..]), ("POST", "/x", &b"abc"[..]));
            let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
            assert!(matches!(read_request(&mut BufReader::new(big.as_bytes())).await, Err(ReadError::Reject(431, _))));
            let huge = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
            assert!(matches!(read_request(&mut BufReader::new(huge.as_bytes())).await, Err(ReadError::Reject(413, _))));
            let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            assert!(matches!(read_request(&mut BufReader::new(&chunked[..])).await, Err(ReadError::Reject(411, _))));
            let garbage = b"\x00\x01 nonsense\r\n\r\n".to_vec();
            assert!(matches!(read_request(&mut BufReader::new(&garbage[..])).await, Err(ReadError::Reject(400, _))));
            assert!(matches!(read_request(&mut BufReader::new(&b""[..])).await, Err(ReadError::Closed)));
        });
    }
}
