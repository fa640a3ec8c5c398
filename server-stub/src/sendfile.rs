//! File bodies on plain HTTP without copying them through the server:
//! `sendfile(2)` from the page cache into the socket, driven by the
//! executor's readiness events (the socket is non-blocking).
//!
//! ```text
//!  write_response ── Transport::file_sink() ──► Some: plain TCP (under StallLimit)
//!    │                                            head: send(MSG_MORE), body: sendfile
//!    └─► None (TLS): read + write, bytes pass through rustls
//! ```
//!
//! The head goes out with `MSG_MORE`, so it shares its segments with the
//! first file bytes, as it does in one write on the copying path. Every
//! byte passes through [`StallLimit`](crate::stall::StallLimit)'s
//! accounting, so the write timeout and the minimum send rate hold on both
//! paths. The system calls themselves live in `outpost_hal::linux`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::task::{Context, Poll};

use smol::Async;
use smol::io::AsyncWrite;

/// A socket that can take a response head and file bytes directly.
pub trait FileSink {
    /// Send `buf` with more data to follow (`MSG_MORE`); the bytes taken.
    fn poll_send_more(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Send up to `count` bytes of `file` from `offset`, moving `offset` on;
    /// the bytes sent, 0 once `offset` is past the end of the file.
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Poll<io::Result<usize>>;
}

/// A connection [`crate::http::write_response`] writes to: bytes always,
/// and file bodies through [`FileSink`] where there is one.
pub trait Transport: AsyncWrite + Unpin {
    /// The plain socket under this stream, for zero-copy file bodies;
    /// `None` (the default) where bytes must pass through (TLS).
    fn file_sink(&mut self) -> Option<&mut (dyn FileSink + Send)> {
        None
    }
}

impl<S: AsyncWrite + smol::io::AsyncRead + Unpin> Transport for futures_rustls::server::TlsStream<S> {}

/// Run `op` on the socket until it does not block, waiting for
/// writability in between.
fn drive(
    tcp: &smol::net::TcpStream,
    cx: &mut Context<'_>,
    mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    let source: Arc<Async<std::net::TcpStream>> = tcp.clone().into();
    loop {
        match op(source.as_fd()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match source.poll_writable(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            },
            r => return Poll::Ready(r),
        }
    }
}

impl FileSink for smol::net::TcpStream {
    fn poll_send_more(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        drive(self, cx, |fd| outpost_hal::linux::send_more(fd, buf))
    }

    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Poll<io::Result<usize>> {
        drive(self, cx, |fd| outpost_hal::linux::sendfile(fd, file, offset, count))
    }
}

/// Send `head`, then `len` bytes of `file` from `offset`, into `sink`. A
/// file that ends before `len` is an error ("file shrank"): the caller
/// drops the connection, so the client sees a body shorter than its
/// `Content-Length`, never one padded with other bytes.
pub async fn send(
    sink: &mut (dyn FileSink + Send),
    head: &[u8],
    file: &File,
    mut offset: u64,
    len: u64,
) -> io::Result<()> {
    let mut at = 0;
    while at < head.len() {
        match smol::future::poll_fn(|cx| sink.poll_send_more(cx, &head[at..])).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => at += n,
        }
    }
    let mut left = len;
    while left > 0 {
        let count = usize::try_from(left).unwrap_or(usize::MAX);
        match smol::future::poll_fn(|cx| sink.poll_send_file(cx, file, &mut offset, count)).await? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank")),
            n => left -= n as u64,
        }
    }
    Ok(())
}
