//! A stream whose writes fail once they make no progress for a while: a
//! client that stops reading a download (its window closed, the socket
//! buffers full) is dropped instead of holding its connection, its
//! descriptors and its task forever.
//!
//! The clock starts when a write, flush or close first has to wait, and is
//! stopped by any progress; so a slow reader that keeps taking bytes is
//! served, however long the whole response takes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use smol::Timer;
use smol::future::Future;
use smol::io::{AsyncRead, AsyncWrite};

/// `S`, with writes that time out after `limit` without progress. Reads pass
/// through (they have their own deadlines in [`crate::http`]).
pub struct StallLimit<S> {
    inner: S,
    limit: Duration,
    timer: Timer,
    armed: bool,
}

impl<S> StallLimit<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit, timer: Timer::never(), armed: false }
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
}

impl<S: AsyncRead + Unpin> AsyncRead for StallLimit<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallLimit<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => this.answered(r),
            Poll::Pending => this.waited(cx),
        }
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
            let mut w = StallLimit::new(Valve { open: 5, taken: 0 }, Duration::from_millis(50));
            let e = w.write_all(&[0; 100]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(w.get_ref().taken, 50, "what could be written was");
            let mut fine = StallLimit::new(Valve { open: 100, taken: 0 }, Duration::from_millis(50));
            fine.write_all(&[0; 100]).await.unwrap();
        });
    }
}
