//! TCP socket options the agent's pacer moves, and the kernel's path
//! measurements (`TCP_INFO`).
#![allow(unsafe_code)]

use std::io;
use std::net::TcpStream;
use std::time::Duration;

/// An integer socket option on `tcp`, saturated to a C int.
fn set_int_option(tcp: &TcpStream, level: libc::c_int, name: libc::c_int, value: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor, a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// What the kernel has measured on a connection's path (TCP_INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathInfo {
    /// The receiver's own RTT estimate, from the TCP timestamps the sender
    /// echoes in its data (RFC 7323): the time from an ACK of ours to the
    /// data sent in answer, so it includes the queue that data waited in at
    /// the bottleneck (what receiver-side LEDBAT, RFC 9840, measures).
    /// `None` before the first sample, and always when the connection has no
    /// timestamps (then the kernel only keeps a lower bound, which cannot see
    /// a queue).
    pub rcv_rtt: Option<Duration>,
    /// The connection uses TCP timestamps.
    pub timestamps: bool,
    /// The smoothed RTT of what the agent sent (handshake, requests).
    pub rtt: Duration,
}

/// TCPI_OPT_TIMESTAMPS in `tcp_info.tcpi_options` (linux/tcp.h).
const TCPI_OPT_TIMESTAMPS: u8 = 1;

/// The kernel's measurements of `tcp` (TCP_INFO).
pub fn path_info(tcp: &TcpStream) -> io::Result<PathInfo> {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain integers, so all-zero is a valid value.
    let mut info = unsafe { std::mem::zeroed::<libc::tcp_info>() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid socket descriptor; the kernel writes at most `len`
    // bytes into `info` and says how many in `len`.
    let r = unsafe {
        libc::getsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let timestamps = info.tcpi_options & TCPI_OPT_TIMESTAMPS != 0;
    Ok(PathInfo {
        rcv_rtt: (timestamps && info.tcpi_rcv_rtt > 0).then(|| Duration::from_micros(info.tcpi_rcv_rtt.into())),
        timestamps,
        rtt: Duration::from_micros(info.tcpi_rtt.into()),
    })
}

/// Set the receive buffer of `tcp` to `bytes` (SO_RCVBUF; the kernel doubles
/// it for its bookkeeping and stops autotuning it). Unlike the window clamp,
/// it bounds the data the sender may push while the reader is paced.
pub fn set_recv_buffer(tcp: &TcpStream, bytes: usize) -> io::Result<()> {
    set_int_option(tcp, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes as u64)
}

/// Clamp the window `tcp` advertises to `bytes` (TCP_WINDOW_CLAMP): a
/// receiver's way to bound the data in flight towards it, and so the queue
/// it can build at a bottleneck (receiver-side LEDBAT). It can move at any
/// time during a transfer; the kernel's receive-buffer autotuning raises the
/// clamp as it grows the buffer, so callers set it again as they read.
pub fn set_window_clamp(tcp: &TcpStream, bytes: u32) -> io::Result<()> {
    set_int_option(tcp, libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP, u64::from(bytes))
}

/// The window clamp `tcp` advertises now (TCP_WINDOW_CLAMP).
pub fn window_clamp(tcp: &TcpStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket descriptor, a live c_int and its length.
    let r = unsafe {
        libc::getsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_WINDOW_CLAMP,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u32::try_from(v).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_window_clamp_and_receive_buffer_reach_the_socket() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        super::set_window_clamp(&c, 40_000).unwrap();
        assert_eq!(super::window_clamp(&c).unwrap(), 40_000);
        super::set_recv_buffer(&c, 64 * 1024).unwrap();
        let info = super::path_info(&c).unwrap();
        assert!(info.rcv_rtt.is_none() || info.timestamps, "a receiver RTT only with timestamps");
    }
}
