//! A small blocking HTTP/1.1 client over TCP or rustls.
//!
//! GET and HEAD keep their connection for the next request to the same
//! server (one idle connection, dropped after [`IDLE_KEEP`]; a connection the
//! server has closed meanwhile is replaced by a fresh one, once): a package in
//! many fragments does not pay a TCP and TLS handshake per fragment. Other
//! methods send `Connection: close`. TLS trusts exactly the certificates of
//! `server.ca_cert`, as CAs or as the server's own pinned certificate
//! (`pin.rs`).
//!
//! Fragment servers are plain HTTP and untrusted, so every read is bounded,
//! in bytes and in time, and each bound has its own [`Error`]:
//! - the response head: at most [`MAX_HEAD`] bytes (`head.rs`), at most
//!   [`MAX_HEADERS`] fields, complete within the I/O timeout;
//! - a chunk-size line: at most [`MAX_CHUNK_LINE`] bytes, 1 to 16 hex digits;
//!   a chunk's data is followed by its line end and nothing else (`body.rs`);
//! - a body: never more than the caller accepts ([`Response::limit`],
//!   [`Response::read_to_vec`]), never past a 206's `Content-Range`, and
//!   a 206 never past the range asked for; one that ends early is an
//!   `UnexpectedEof` error, never a silent short read;
//! - time: each read and write waits at most the I/O timeout, a TLS
//!   handshake and a head must finish within it, and a body that arrives
//!   slower than [`MIN_RATE`] while the agent waits for it is a stall
//!   (`conn.rs`);
//! - TLS: rustls buffers at most one record (16 KiB) of ciphertext beyond a
//!   64 KiB handshake message, and at most 16 KiB of unread plaintext.
//!
//! The head and body readers work over any `BufRead`, so the fuzz target
//! `http_response` feeds them arbitrary bytes.

use std::io;
use std::time::Duration;

mod body;
mod client;
mod conn;
mod head;
mod pin;
mod url;

pub use body::Body;
pub use client::{Client, Response};
pub use conn::PathInfo;
pub use head::{Head, read_head};

pub use url::Url;

/// Largest response head accepted, status line and empty line included.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in a response head.
pub const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (size and extensions), before its line end.
pub const MAX_CHUNK_LINE: usize = 1024;
/// Slowest body accepted, bytes a second, measured over the I/O timeout of
/// time spent waiting for the server (2 kbit/s: no link that can usefully
/// deliver a package is slower).
pub const MIN_RATE: u64 = 256;
/// How long an idle connection is kept for the next request.
pub const IDLE_KEEP: Duration = Duration::from_secs(5);

/// What went wrong with a request.
#[derive(Debug)]
pub enum Error {
    /// The URL cannot be used.
    BadUrl(String),
    /// TCP connect failed or timed out.
    Connect(String, io::Error),
    /// TLS failed: the certificate was not trusted, or the handshake broke.
    Tls(String),
    /// Reading or writing failed mid-request.
    Io(io::Error),
    /// The server closed the connection before sending a byte of the
    /// response (on a kept connection: it closed it while idle).
    Closed,
    /// The response is not valid HTTP/1.1.
    Protocol(&'static str),
    /// A part of the response is larger than its bound: `what` (the head,
    /// the header count, a chunk-size line, the body) and the bound.
    TooLarge {
        /// Which part.
        what: &'static str,
        /// Its bound (bytes, or fields for the header count).
        limit: u64,
    },
    /// The server sends too slowly: `what` (the TLS handshake, the head, the
    /// body) got `bytes` in `secs` seconds.
    Stalled {
        /// Which part.
        what: &'static str,
        /// Bytes received meanwhile.
        bytes: u64,
        /// Seconds waited.
        secs: u64,
    },
}

impl Error {
    /// Whether a kept connection was found closed: worth one fresh try.
    pub(crate) fn is_stale(&self) -> bool {
        use io::ErrorKind as K;
        match self {
            Self::Closed => true,
            Self::Io(e) => matches!(e.kind(), K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe),
            _ => false,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadUrl(u) => write!(f, "bad url {u:?}"),
            Self::Connect(a, e) => write!(f, "cannot connect to {a}: {e}"),
            Self::Tls(m) => f.write_str(m),
            Self::Io(e) => write!(f, "transfer failed: {e}"),
            Self::Closed => f.write_str("connection closed before the response"),
            Self::Protocol(m) => write!(f, "bad http response: {m}"),
            Self::TooLarge { what, limit } => write!(f, "bad http response: {what} larger than {limit}"),
            Self::Stalled { what, bytes, secs } => {
                write!(f, "server too slow: {what} stalled ({bytes} bytes in {secs} s)")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    /// An `io::Error` that carries an [`Error`] (from the body reader or the
    /// stall meter) gives it back; any other is [`Error::Io`].
    fn from(e: io::Error) -> Self {
        if !e.get_ref().is_some_and(|i| i.is::<Self>()) {
            return Self::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|b| b.downcast::<Self>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Self::Io(io::Error::new(kind, other)),
            None => Self::Io(kind.into()),
        }
    }
}
