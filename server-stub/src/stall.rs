//! A stream whose writes fail once they make no progress for a while: a
//! client that stops reading a download (its window closed, the socket
//! buffers full) is dropped instead of holding its connection, its
//! descriptors and its task forever.
//!
//! The clock starts when a write, flush or close first has to wait, and is
//! stopped by any progress. Progress alone is not enough, though: a client
//! that reads a few KB every 50 s would hold its connection forever. So a
//! response must also average a minimum rate: once it has run for `limit`,
//! the bytes it sent in each window of `limit` (checked at the first write
//! after the window ends) must be at least `min_rate` × the window's length.
//! A response starts at the first write after a read (the request's bytes):
//! the time a kept-alive connection waits for its next request, or a request
//! waits to be handled, is not charged. File bodies sent by `sendfile` on
//! plain connections ([`crate::sendfile`]) are timed and counted the same way.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smol::Timer;
use smol::future::Future;
use smol::io::{AsyncRead, AsyncWrite};

use crate::sendfile::{FileSink, Transport};

/// `S`, with writes that time out after `limit` without progress, or that
/// average less than `min_rate` bytes a second over a window of `limit`.
/// Reads pass through (they have their own deadlines in [`crate::http`]).
pub struct StallLimit<S> {
    inner: S,
    limit: Duration,
    timer: Timer,
    armed: bool,
    /// Bytes a second (0: no minimum).
    min_rate: u64,
    /// Start of the current rate window (`None`: no response under way).
    window: Option<Instant>,
    /// Bytes written in the current window.
    sent: u64,
}

impl<S> StallLimit<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, limit: Duration, min_rate: u64) -> Self {
        Self { inner, limit, timer: Timer::never(), armed: false, min_rate, window: None, sent: 0 }
    }

    /// `n` bytes were written now: count them, and once the window has run
    /// for `limit`, fail if it averaged less than the minimum rate, or start
    /// the next one.
    fn wrote(&mut self, n: usize) -> io::Result<usize> {
        let now = crate::time::monotonic_now();
        let start = *self.window.get_or_insert(now);
        self.sent = self.sent.saturating_add(n as u64);
        let ran = now.duration_since(start);
        if self.min_rate > 0 && ran >= self.limit {
            if (self.sent as f64) < self.min_rate as f64 * ran.as_secs_f64() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the peer reads slower than the minimum rate"));
            }
            (self.window, self.sent) = (Some(now), 0);
        }
        Ok(n)
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `inner` was `Pending`: start the clock if it is not running, and fail
    /// once it has run out.
    fn waited<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.armed {
            self.timer.set_after(self.limit);
            self.armed = true;
        }
        match Pin::new(&mut self.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// `inner` answered: progress (or a final error) stops the clock.
    fn answered<T>(&mut self, r: io::Result<T>) -> Poll<io::Result<T>> {
        self.armed = false;
        Poll::Ready(r)
    }

    /// What a write of `inner` gave: bytes are counted against the minimum
    /// rate, waiting against the write timeout.
    fn account(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                let r = self.wrote(n);
                self.answered(r)
            }
            Poll::Ready(r) => self.answered(r),
            Poll::Pending => self.waited(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimit<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            // A request's bytes: the next write starts a new response.
            (this.window, this.sent) = (None, 0);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimit<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.account(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => this.answered(r),
            Poll::Pending => this.waited(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_close(cx) {
            Poll::Ready(r) => this.answered(r),
            Poll::Pending => this.waited(cx),
        }
    }
}

/// Zero-copy writes are timed and counted as [`AsyncWrite`]'s are.
impl<S: FileSink> FileSink for StallLimit<S> {
    fn poll_send_more(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = self.inner.poll_send_more(cx, buf);
        self.account(cx, r)
    }

    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        offset: &mut u64,
        count: usize,
    ) -> Poll<io::Result<usize>> {
        let r = self.inner.poll_send_file(cx, file, offset, count);
        self.account(cx, r)
    }
}

/// A plain connection: file bodies go out by `sendfile`, under the limits.
impl Transport for StallLimit<smol::net::TcpStream> {
    fn file_sink(&mut self) -> Option<&mut (dyn FileSink + Send)> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use smol::io::AsyncWriteExt;

    use super::*;

    /// A writer that takes `n` bytes a call while `open`, and waits forever
    /// once closed (like a socket whose peer stopped reading).
    struct Valve {
        open: usize,
        taken: usize,
    }

    impl AsyncWrite for Valve {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            if self.open == 0 {
                return Poll::Pending;
            }
            self.open -= 1;
            let n = buf.len().min(10);
            self.taken += n;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_write_without_progress_times_out_and_progress_is_not_charged() {
        smol::block_on(async {
            let mut w = StallLimit::new(Valve { open: 5, taken: 0 }, Duration::from_millis(50), 0);
            let e = w.write_all(&[0; 100]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(w.get_ref().taken, 50, "what could be written was");
            let mut fine = StallLimit::new(Valve { open: 100, taken: 0 }, Duration::from_millis(50), 1);
            fine.write_all(&[0; 100]).await.unwrap();
        });
    }

    #[test]
    fn a_reader_slower_than_the_minimum_rate_is_dropped_once_a_window_has_run() {
        smol::block_on(async {
            // 10 bytes every 10 ms: 1,000 B/s, always some progress.
            let trickle =
                |min_rate| StallLimit::new(Valve { open: usize::MAX, taken: 0 }, Duration::from_millis(50), min_rate);
            let mut slow = trickle(4000);
            let mut failed = None;
            for i in 0..30 {
                if let Err(e) = slow.write_all(&[0; 10]).await {
                    failed = Some((i, e.kind()));
                    break;
                }
                Timer::after(Duration::from_millis(10)).await;
            }
            let (at, kind) = failed.expect("dropped");
            assert_eq!(kind, io::ErrorKind::TimedOut);
            assert!((1..=8).contains(&at), "dropped at write {at}, after one window of 50 ms");
            let mut fast_enough = trickle(100);
            for _ in 0..30 {
                fast_enough.write_all(&[0; 10]).await.unwrap();
                Timer::after(Duration::from_millis(10)).await;
            }
        });
    }
}
