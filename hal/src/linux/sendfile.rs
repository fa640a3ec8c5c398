//! Zero-copy file serving: `sendfile(2)` from a file into a socket, and a
//! `send(2)` with `MSG_MORE` that holds a response head back until the file
//! bytes behind it can share its segments (what nginx's `tcp_nopush` does
//! with `TCP_CORK`).
//!
//! Both work on non-blocking sockets too: a full socket buffer is
//! [`io::ErrorKind::WouldBlock`], and the caller waits for writability.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Most bytes one call asks the kernel for (its own ceiling is 0x7ffff000).
pub const MAX_SENDFILE: usize = 0x7fff_f000;

/// Send up to `count` bytes of `file`, from `offset`, into the socket `out`,
/// without copying them through user space; `offset` moves past what was
/// sent, and the file's own position is left alone. Returns the bytes sent:
/// 0 when `offset` is at or past the end of the file (a file that shrank),
/// fewer than `count` when the socket buffer filled. A non-blocking socket
/// with no room gives [`io::ErrorKind::WouldBlock`]; `EINTR` is retried.
pub fn sendfile(out: BorrowedFd<'_>, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
    let mut off = libc::off64_t::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset out of range"))?;
    loop {
        // SAFETY: two descriptors that stay open for the call (borrowed),
        // and a pointer to a live off64_t that the kernel updates.
        let r = unsafe { libc::sendfile64(out.as_raw_fd(), file.as_raw_fd(), &mut off, count.min(MAX_SENDFILE)) };
        if r >= 0 {
            *offset = u64::try_from(off).unwrap_or(*offset);
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Send `buf` on the socket `out` with `MSG_MORE` (the kernel holds a
/// partial segment back for the data that follows; the next send without
/// it, such as the end of a `sendfile`, pushes everything) and
/// `MSG_NOSIGNAL` (a closed peer is `EPIPE`, never `SIGPIPE`). Returns the
/// bytes taken; [`io::ErrorKind::WouldBlock`] as for [`sendfile`].
pub fn send_more(out: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: a descriptor that stays open for the call, and a pointer
        // to `buf.len()` readable bytes.
        let r =
            unsafe { libc::send(out.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_MORE | libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (c, l.accept().unwrap().0)
    }

    fn temp_file(name: &str, bytes: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!("outpost-sendfile-{name}-{}", std::process::id()));
        File::create(&path).unwrap().write_all(bytes).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn a_head_and_a_file_range_arrive_in_order_and_the_offset_moves() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let file = temp_file("range", &body);
        let (tx, mut rx) = pair();
        assert_eq!(send_more(tx.as_fd(), b"head:").unwrap(), 5);
        let mut offset = 10;
        let mut left = 50_000;
        while left > 0 {
            let n = sendfile(tx.as_fd(), &file, &mut offset, left).unwrap();
            assert!(n > 0);
            left -= n;
        }
        assert_eq!(offset, 50_010);
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(&got[..5], b"head:");
        assert_eq!(&got[5..], &body[10..50_010]);
    }

    #[test]
    fn at_the_end_of_the_file_nothing_is_sent() {
        let file = temp_file("end", b"0123456789");
        let (tx, _rx) = pair();
        let mut offset = 8;
        assert_eq!(sendfile(tx.as_fd(), &file, &mut offset, 100).unwrap(), 2, "what is left, not what was asked");
        assert_eq!(sendfile(tx.as_fd(), &file, &mut offset, 100).unwrap(), 0);
        assert_eq!(offset, 10);
    }

    #[test]
    fn a_full_non_blocking_socket_would_block() {
        let file = temp_file("full", &vec![1u8; 1 << 20]);
        let (tx, _rx) = pair();
        tx.set_nonblocking(true).unwrap();
        let mut offset = 0;
        let e = loop {
            match sendfile(tx.as_fd(), &file, &mut offset, 1 << 20) {
                Ok(_) if offset == 1 << 20 => offset = 0,
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(send_more(tx.as_fd(), b"x").unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
