//! One connection: TCP (with the socket options the pacer moves), optionally
//! rustls on top, and the stall meter that drops a server sending slower
//! than [`MIN_RATE`] while the agent waits for it.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::{Error, MIN_RATE, Url};

pub use outpost_hal::linux::{PathInfo, path_info, set_recv_buffer, set_window_clamp};

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// A connection, plain or TLS, that meters its reads while a body is read:
/// over every `window` (the I/O timeout) of time spent waiting in `read`,
/// fewer than [`MIN_RATE`] bytes a second is a stall (`TimedOut`). Time the
/// agent spends elsewhere (pacing, writing to disk) does not count, so a
/// slow reader is never taken for a slow server.
pub(super) struct Conn {
    stream: Stream,
    window: Duration,
    metering: bool,
    waited: Duration,
    got: u64,
}

impl Conn {
    /// The TCP socket under it.
    pub(super) fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Start (afresh) or stop metering: on for bodies, off for heads (they
    /// have a deadline instead, which also covers the server's think time).
    pub(super) fn meter(&mut self, on: bool) {
        self.metering = on;
        self.waited = Duration::ZERO;
        self.got = 0;
    }

    /// Count one read that waited `waited` and got `n` bytes.
    fn account(&mut self, waited: Duration, n: usize) -> io::Result<()> {
        self.waited += waited;
        self.got += n as u64;
        if self.waited < self.window {
            return Ok(());
        }
        let need = MIN_RATE.saturating_mul(u64::try_from(self.waited.as_millis()).unwrap_or(u64::MAX)) / 1000;
        if self.got < need {
            let e = Error::Stalled { what: "body", bytes: self.got, secs: self.waited.as_secs() };
            return Err(io::Error::new(io::ErrorKind::TimedOut, e));
        }
        self.meter(true);
        Ok(())
    }
}

impl Read for Conn {
    #[allow(clippy::disallowed_methods)] // the stall meter: runtime glue
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = self.metering.then(Instant::now);
        let r = retry_interrupted(|| match &mut self.stream {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        });
        if let Some(t) = started {
            self.account(t.elapsed(), *r.as_ref().unwrap_or(&0))?;
        }
        r
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        retry_interrupted(|| match &mut self.stream {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        retry_interrupted(|| match &mut self.stream {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        })
    }
}

/// Run `f` again while it fails with `Interrupted`: a signal handled without
/// `SA_RESTART` elsewhere in the process (a fuzzer's timer, a host's own
/// handler) is not a failed transfer.
fn retry_interrupted<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Describe a TLS failure in one line a person can act on.
fn explain_tls(host: &str, e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "its certificate is neither signed by nor one of the certificates in server.ca_cert".to_string()
        }
        // webpki's CaUsedAsEndEntity: a CA:TRUE certificate (`openssl req
        // -x509`) that is not the one pinned.
        rustls::Error::InvalidCertificate(C::Other(o)) if o.to_string().contains("CaUsedAsEndEntity") => {
            "its certificate is a self-signed CA certificate that is not in server.ca_cert".to_string()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!("its certificate is not valid for the name {host:?}")
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "its certificate has expired".to_string()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "its certificate is not valid yet (is the clock right?)".to_string()
        }
        other => other.to_string(),
    };
    format!("TLS verification of {host} failed: {why}; nothing was downloaded from it")
}

/// How long to wait for a TCP connection, and for anything after it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// Per address tried.
    pub connect: Duration,
    /// Per read and write on the socket; also the deadline of a TLS
    /// handshake and of a response head, and the stall meter's window.
    pub io: Duration,
}

/// Connect to `url` (every address in turn), with the receive window
/// clamped to `window` bytes from the start, and shake hands when it is TLS.
#[allow(clippy::disallowed_methods)] // the handshake deadline: runtime glue
pub(super) fn connect(tls: &Arc<ClientConfig>, url: &Url, window: Option<u32>, t: Timeouts) -> Result<Conn, Error> {
    let addr = format!("{}:{}", url.host, url.port);
    let addrs: Vec<_> =
        (url.host.as_str(), url.port).to_socket_addrs().map_err(|e| Error::Connect(addr.clone(), e))?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, t.connect) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or(Error::Connect(addr, last))?;
    tcp.set_read_timeout(Some(t.io))?;
    tcp.set_write_timeout(Some(t.io))?;
    let _ = tcp.set_nodelay(true);
    if let Some(w) = window {
        set_window_clamp(&tcp, w)?;
    }
    let conn = |stream| Conn { stream, window: t.io, metering: false, waited: Duration::ZERO, got: 0 };
    if !url.tls {
        return Ok(conn(Stream::Plain(tcp)));
    }
    let name = ServerName::try_from(url.host.clone()).map_err(|_| Error::BadUrl(url.to_string()))?;
    let session = ClientConnection::new(tls.clone(), name).map_err(|e| Error::Tls(e.to_string()))?;
    let mut s = StreamOwned::new(session, tcp);
    // rustls holds at most 64 KiB of a handshake message; the deadline,
    // checked after every read (rustls's own complete_io would wait for a
    // whole handshake), stops a server that trickles one.
    let started = Instant::now();
    let mut bytes = 0u64;
    while s.conn.is_handshaking() {
        if let Err(e) = handshake_step(&mut s, &mut bytes) {
            let tls_err = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
            return Err(match tls_err {
                Some(te) => Error::Tls(explain_tls(&url.host, te)),
                None => Error::Tls(format!("TLS handshake with {} failed: {e}", url.host)),
            });
        }
        if started.elapsed() > t.io {
            return Err(Error::Stalled { what: "TLS handshake", bytes, secs: started.elapsed().as_secs() });
        }
    }
    Ok(conn(Stream::Tls(Box::new(s))))
}

/// One round of a TLS handshake: send what rustls has to send, then at
/// most one read from the socket, processed at once. Counts bytes read.
/// A signal that interrupts a call is not a failure: the step is retried
/// (the caller's deadline still holds).
fn handshake_step(s: &mut StreamOwned<ClientConnection, TcpStream>, bytes: &mut u64) -> io::Result<()> {
    let interrupted = |e: &io::Error| e.kind() == io::ErrorKind::Interrupted;
    while s.conn.wants_write() {
        match s.conn.write_tls(&mut s.sock) {
            Err(e) if interrupted(&e) => return Ok(()),
            r => r?,
        };
    }
    if !s.conn.is_handshaking() || !s.conn.wants_read() {
        return Ok(());
    }
    let n = match s.conn.read_tls(&mut s.sock) {
        Err(e) if interrupted(&e) => return Ok(()),
        r => r?,
    };
    match n {
        0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection")),
        n => *bytes += n as u64,
    }
    if let Err(e) = s.conn.process_new_packets() {
        // The alert that says why, if the socket takes it.
        let _ = s.conn.write_tls(&mut s.sock);
        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn plain(window: Duration) -> (Conn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", l.local_addr().unwrap())).unwrap();
        let cfg = super::super::client::tests::tls_config();
        let c = connect(&cfg, &url, None, Timeouts { connect: window, io: window }).unwrap();
        (c, l.accept().unwrap().0)
    }

    /// Runs `f` on a thread and sends it a signal (handled without
    /// `SA_RESTART`) every 10 ms until it returns: every blocking call in it
    /// that waits is interrupted at least once.
    fn under_signals<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        outpost_hal::linux::interrupt_with_sigusr2().unwrap();
        let t = std::thread::spawn(f);
        while !t.is_finished() {
            let _ = outpost_hal::linux::interrupt(&t);
            crate::rt::sleep(Duration::from_millis(10));
        }
        t.join().unwrap()
    }

    #[test]
    fn a_signal_during_a_handshake_or_a_read_is_not_a_failure() {
        // A server that takes 300 ms to answer: the client waits in a read
        // (plain) or in the handshake (TLS) and is interrupted meanwhile.
        let slow_server = |answer: &'static [u8]| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                crate::rt::sleep(Duration::from_millis(300));
                let _ = s.write_all(answer);
            });
            addr
        };
        let t = Timeouts { connect: Duration::from_secs(5), io: Duration::from_secs(5) };
        let addr = slow_server(b"hello");
        let got = under_signals(move || {
            let url = Url::parse(&format!("http://{addr}/")).unwrap();
            let mut c = connect(&super::super::client::tests::tls_config(), &url, None, t).unwrap();
            let mut b = [0u8; 5];
            c.read_exact(&mut b).map(|()| b)
        });
        assert_eq!(&got.unwrap(), b"hello");

        // Not TLS: the handshake fails on what the server sent, not on the
        // signal.
        let addr = slow_server(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        let e = under_signals(move || {
            let url = Url::parse(&format!("https://{addr}/")).unwrap();
            connect(&super::super::client::tests::tls_config(), &url, None, t).err().unwrap()
        });
        assert!(!e.to_string().contains("nterrupted"), "{e}");
    }

    #[test]
    fn a_server_trickling_under_the_floor_stalls_and_a_fast_one_does_not() {
        let (mut c, mut server) = plain(Duration::from_millis(300));
        std::thread::spawn(move || {
            for _ in 0..40 {
                if server.write_all(b"x").is_err() {
                    return;
                }
                crate::rt::sleep(Duration::from_millis(50));
            }
        });
        c.meter(true);
        let mut b = [0u8; 16];
        let e = (0..40).find_map(|_| c.read(&mut b).err()).expect("a stall");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("body stalled"), "{e}");

        let (mut c, mut server) = plain(Duration::from_millis(200));
        std::thread::spawn(move || server.write_all(&vec![1u8; 1 << 20]));
        c.meter(true);
        let mut got = 0;
        let mut b = vec![0u8; 4096];
        while got < 1 << 20 {
            got += c.read(&mut b).unwrap();
        }
    }
}
