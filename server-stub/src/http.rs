//! Minimal HTTP/1.1 server side: read a request (bounded head and body, with
//! a deadline), write a response (bytes or a file range), and `Range`
//! handling (single ranges → 206 + Content-Range; unsatisfiable → 416;
//! several ranges → the whole file, as RFC 9110 allows).
//!
//! Framing is strict where leniency lets two parsers disagree (request
//! smuggling): `Content-Length` is digits only, and differing values are a
//! 400 (RFC 9112 §6.3); `Transfer-Encoding` is refused. A response goes out
//! with its head and (first part of its) body in one write, so that with
//! `TCP_NODELAY` a small answer is one segment and never waits for the
//! client's delayed ACK.

use std::time::Duration;

use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use smol::prelude::AsyncRead;

use crate::sendfile::Transport;

/// Largest request head.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 256 * 1024;
/// Time allowed to receive a request head once its first byte arrived, and
/// again for its body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `Content-Length` value read, in digits (any 19 digits fit a u64).
const MAX_LENGTH_DIGITS: usize = 19;
/// Most bytes one read of a request body asks for (and grows its buffer by).
const BODY_CHUNK: usize = 16 * 1024;
/// File bytes read (on the blocking pool) and written at a time where they
/// cannot go by `sendfile` (TLS).
const FILE_CHUNK: usize = 256 * 1024;
/// What a connection over its cap is told before it is closed.
pub const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 10\r\nConnection: close\r\n\r\nserver busy\n";

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
    /// What becomes of the connection after the response.
    pub connection: Connection,
}

/// What becomes of a connection after a response, and the `Connection`
/// header that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1: kept open, no header needed.
    Persistent,
    /// An HTTP/1.0 client asked for `keep-alive`: kept open, and the
    /// response says `Connection: keep-alive` (an HTTP/1.0 client closes, or
    /// waits for the server to, unless told; RFC 9112 §9.3 and C.2.2). Every
    /// response has a `Content-Length`, so the client can tell where it ends.
    KeepAlive,
    /// `Connection: close`: closed after the response.
    Close,
}

impl Connection {
    /// What `Connection` headers ask for, for HTTP/1.`minor`.
    fn of(minor: Option<u8>, headers: &[(String, String)]) -> Self {
        let (mut close, mut keep_alive) = (false, false);
        for token in headers.iter().filter(|(k, _)| k == "connection").flat_map(|(_, v)| v.split(',')) {
            close |= token.trim().eq_ignore_ascii_case("close");
            keep_alive |= token.trim().eq_ignore_ascii_case("keep-alive");
        }
        match minor {
            _ if close => Self::Close,
            Some(1) => Self::Persistent,
            _ if keep_alive => Self::KeepAlive,
            _ => Self::Close,
        }
    }
}

/// The body length that `Content-Length` headers declare (none: 0). Every
/// value, and every element of a comma-separated one, must be digits only,
/// and all must agree.
fn content_length(headers: &[(String, String)]) -> Result<usize, ReadError> {
    let mut declared: Option<u64> = None;
    for v in headers.iter().filter(|(k, _)| k == "content-length").flat_map(|(_, v)| v.split(',')) {
        let v = v.trim();
        if v.is_empty() || v.len() > MAX_LENGTH_DIGITS || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReadError::Reject(400, "bad content-length"));
        }
        let n: u64 = v.parse().map_err(|_| ReadError::Reject(400, "bad content-length"))?;
        if declared.is_some_and(|d| d != n) {
            return Err(ReadError::Reject(400, "conflicting content-length"));
        }
        declared = Some(n);
    }
    match usize::try_from(declared.unwrap_or(0)) {
        Ok(len) if len <= MAX_BODY => Ok(len),
        _ => Err(ReadError::Reject(413, "request body too large")),
    }
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

/// Read one request, waiting up to [`REQUEST_TIMEOUT`] for its first byte.
pub async fn read_request<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Result<Request, ReadError> {
    read_request_within(s, REQUEST_TIMEOUT).await
}

/// Read one request: wait up to `idle` for its first byte (on a kept-alive
/// connection, the time between requests), then up to [`REQUEST_TIMEOUT`]
/// for the head and as long again for the body.
pub async fn read_request_within<S: AsyncRead + Unpin>(
    s: &mut BufReader<S>,
    idle: Duration,
) -> Result<Request, ReadError> {
    let first_byte = async {
        match s.fill_buf().await {
            Ok(b) if !b.is_empty() => Ok(()),
            _ => Err(ReadError::Closed),
        }
    };
    smol::future::or(first_byte, async {
        smol::Timer::after(idle).await;
        Err(ReadError::Closed)
    })
    .await?;
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
    let len = content_length(&headers)?;
    let connection = Connection::of(req.version, &headers);
    let body = smol::future::or(read_body(s, len), async {
        smol::Timer::after(REQUEST_TIMEOUT).await;
        Err(ReadError::Reject(408, "request body timed out"))
    })
    .await?;
    Ok(Request { method, path, headers, body, connection })
}

/// Read a body of `len` bytes into a buffer that grows as they arrive, by
/// at most [`BODY_CHUNK`] a read and never past `len`: a head announcing
/// [`MAX_BODY`] with no body behind it costs no more than what was sent.
async fn read_body<S: AsyncRead + Unpin>(s: &mut BufReader<S>, len: usize) -> Result<Vec<u8>, ReadError> {
    const TRUNCATED: ReadError = ReadError::Reject(400, "truncated body");
    let mut body = Vec::new();
    while body.len() < len {
        let at = body.len();
        let end = at + (len - at).min(BODY_CHUNK);
        if body.capacity() < end {
            body.reserve_exact(end.max(body.capacity() * 2).min(len) - at);
        }
        body.resize(end, 0);
        let n = s.read(&mut body[at..]).await.map_err(|_| TRUNCATED)?;
        body.truncate(at + n);
        if n == 0 {
            return Err(TRUNCATED);
        }
    }
    Ok(body)
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

    /// The body's length in bytes.
    pub fn body_len(&self) -> u64 {
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
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Write `resp`, its head and the start of its body in one write; with
/// `head_only` the body is left out (HEAD). A file body goes out by
/// `sendfile` where `s` has a [`FileSink`](crate::sendfile::FileSink) (plain TCP), its head sent with
/// `MSG_MORE` so that the two still share segments; otherwise it is read and
/// written 256 KiB at a time. A file that ends early is an error
/// after what it had was sent (the caller closes the connection).
pub async fn write_response<S: Transport>(
    s: &mut S,
    resp: Response,
    head_only: bool,
    connection: Connection,
) -> std::io::Result<()> {
    let mut head =
        format!("HTTP/1.1 {} {}\r\nContent-Length: {}\r\n", resp.status, reason(resp.status), resp.body_len());
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match connection {
        Connection::Persistent => {}
        Connection::KeepAlive => head.push_str("Connection: keep-alive\r\n"),
        Connection::Close => head.push_str("Connection: close\r\n"),
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    match resp.body {
        _ if head_only => {}
        Body::Bytes(b) => out.extend_from_slice(&b),
        Body::File { file, offset, len } => match s.file_sink() {
            Some(sink) => {
                crate::sendfile::send(sink, &out, &file, offset, len).await?;
                out.clear();
            }
            None => copy_file(s, &mut out, file, offset, len).await?,
        },
    }
    if !out.is_empty() {
        s.write_all(&out).await?;
    }
    s.flush().await
}

/// Write `out` (the head) followed by `len` bytes of `file` from `offset`,
/// read [`FILE_CHUNK`] at a time on the blocking pool (a read that waits
/// for the disk stalls no other connection); `out` is left empty.
async fn copy_file<S: AsyncWrite + Unpin>(
    s: &mut S,
    out: &mut Vec<u8>,
    mut file: std::fs::File,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    let mut buf = std::mem::take(out);
    let mut left = len;
    let mut at = Some(offset).filter(|&o| o > 0);
    while left > 0 {
        let want = FILE_CHUNK.min(usize::try_from(left).unwrap_or(FILE_CHUNK));
        let n;
        (file, buf, n) = smol::unblock(move || {
            let n = read_chunk(&mut file, &mut buf, at, want);
            (file, buf, n)
        })
        .await;
        at = None;
        match n? {
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank")),
            n => left -= n as u64,
        }
        s.write_all(&buf).await?;
        buf.clear();
    }
    *out = buf;
    Ok(())
}

/// Append up to `want` bytes of `f` to `buf`, from `at` if given (else
/// where the last read ended); the bytes appended.
fn read_chunk(f: &mut std::fs::File, buf: &mut Vec<u8>, at: Option<u64>, want: usize) -> std::io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    if let Some(o) = at {
        f.seek(SeekFrom::Start(o))?;
    }
    let start = buf.len();
    buf.resize(start + want, 0);
    let n = f.read(&mut buf[start..]);
    buf.truncate(start + *n.as_ref().unwrap_or(&0));
    n
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
mod tests;
