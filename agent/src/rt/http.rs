//! A small blocking HTTP/1.1 client over TCP or rustls.
//!
//! GET and HEAD keep their connection for the next request to the same
//! server (one idle connection, dropped after [`IDLE_KEEP`]; a connection the
//! server has closed meanwhile is replaced by a fresh one, once): a package in
//! many fragments does not pay a TCP and TLS handshake per fragment. Other
//! methods send `Connection: close`. Bodies are framed by `Content-Length`,
//! chunked encoding or connection close. A body that ends
//! before its announced length is an `UnexpectedEof` error, never a silent
//! short read. TLS trusts exactly one CA (the configured one).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How long an idle connection is kept for the next request.
pub const IDLE_KEEP: Duration = Duration::from_secs(5);

/// The idle connection: `scheme://host:port`, when it went idle, the stream,
/// the receive buffer set on it (none: the kernel autotunes it).
type Idle = Arc<Mutex<Option<(String, Instant, BufReader<Stream>, Option<usize>)>>>;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// TLS or not.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse an absolute http(s) URL.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(Error::BadUrl(s.to_string()));
        };
        let (auth, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(h) = auth.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or_else(|| Error::BadUrl(s.to_string()))?;
            (h, p.strip_prefix(':'))
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (auth, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| Error::BadUrl(s.to_string()))?,
            None => default_port,
        };
        if host.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::BadUrl(s.to_string()));
        }
        Ok(Self { tls, host: host.to_string(), port, path: path.to_string() })
    }

    /// `scheme://loc/suffix` for a scheme-less OCS location.
    pub fn from_location(tls: bool, loc: &str, suffix: &str) -> Result<Self, Error> {
        let scheme = if tls { "https" } else { "http" };
        Self::parse(&format!("{scheme}://{}/{}", loc.trim_end_matches('/'), suffix.trim_start_matches('/')))
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == if self.tls { 443 } else { 80 } { host } else { format!("{host}:{}", self.port) }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", if self.tls { "https" } else { "http" }, self.host_header(), self.path)
    }
}

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
    /// The response is not valid HTTP/1.1.
    Protocol(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadUrl(u) => write!(f, "bad url {u:?}"),
            Self::Connect(a, e) => write!(f, "cannot connect to {a}: {e}"),
            Self::Tls(m) => f.write_str(m),
            Self::Io(e) => write!(f, "transfer failed: {e}"),
            Self::Protocol(m) => write!(f, "bad http response: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// An integer socket option on `tcp`, saturated to a C int.
#[allow(unsafe_code)]
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
#[allow(unsafe_code)]
fn path_info(tcp: &TcpStream) -> io::Result<PathInfo> {
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
fn set_recv_buffer(tcp: &TcpStream, bytes: usize) -> io::Result<()> {
    set_int_option(tcp, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes as u64)
}

/// Clamp the window `tcp` advertises to `bytes` (TCP_WINDOW_CLAMP): a
/// receiver's way to bound the data in flight towards it, and so the queue
/// it can build at a bottleneck (receiver-side LEDBAT). It can move at any
/// time during a transfer; the kernel's receive-buffer autotuning raises the
/// clamp as it grows the buffer, so callers set it again as they read.
fn set_window_clamp(tcp: &TcpStream, bytes: u32) -> io::Result<()> {
    set_int_option(tcp, libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP, u64::from(bytes))
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// Describe a TLS failure in one line a person can act on.
fn explain_tls(host: &str, e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "its certificate is not signed by the configured CA (server.ca_cert)".to_string()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!("its certificate is not valid for the name {host:?}")
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "its certificate has expired".to_string()
        }
        other => other.to_string(),
    };
    format!("TLS verification of {host} failed: {why}; nothing was downloaded from it")
}

/// Issues requests; cheap to clone.
#[derive(Clone)]
pub struct Client {
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    io_timeout: Duration,
    user_agent: String,
    idle: Idle,
}

impl Client {
    /// A client trusting only the CA certificates in `ca_pem`.
    pub fn new(ca_pem: &str, connect_timeout: Duration, io_timeout: Duration) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            let cert = cert.map_err(|_| Error::Tls("server.ca_cert is not valid PEM".into()))?;
            roots.add(cert).map_err(|e| Error::Tls(format!("server.ca_cert is not a usable CA: {e}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(Error::Tls("server.ca_cert holds no certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: Arc::new(cfg),
            connect_timeout,
            io_timeout,
            user_agent: format!("outpost-agent/{}", env!("CARGO_PKG_VERSION")),
            idle: Arc::default(),
        })
    }

    fn connect(&self, url: &Url, window: Option<u32>) -> Result<Stream, Error> {
        let addr = format!("{}:{}", url.host, url.port);
        let addrs: Vec<_> =
            (url.host.as_str(), url.port).to_socket_addrs().map_err(|e| Error::Connect(addr.clone(), e))?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or(Error::Connect(addr, last))?;
        tcp.set_read_timeout(Some(self.io_timeout))?;
        tcp.set_write_timeout(Some(self.io_timeout))?;
        let _ = tcp.set_nodelay(true);
        if let Some(w) = window {
            set_window_clamp(&tcp, w)?;
        }
        if !url.tls {
            return Ok(Stream::Plain(tcp));
        }
        let name = ServerName::try_from(url.host.clone()).map_err(|_| Error::BadUrl(url.to_string()))?;
        let conn = ClientConnection::new(self.tls.clone(), name).map_err(|e| Error::Tls(e.to_string()))?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            if let Err(e) = s.conn.complete_io(&mut s.sock) {
                let tls_err = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
                return Err(match tls_err {
                    Some(te) => Error::Tls(explain_tls(&url.host, te)),
                    None => Error::Tls(format!("TLS handshake with {} failed: {e}", url.host)),
                });
            }
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    /// Send a request and read the response head. `headers` are extra
    /// `(name, value)` pairs; `body` is sent with a Content-Length.
    pub fn request(&self, method: &str, url: &Url, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, Error> {
        self.request_with_window(method, url, headers, body, None)
    }

    /// [`Client::request`] with the TCP receive window clamped to `window`
    /// bytes from the start (see [`Response::set_window`]).
    pub fn request_with_window(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
        window: Option<u32>,
    ) -> Result<Response, Error> {
        let key = format!("{}://{}:{}", if url.tls { "https" } else { "http" }, url.host, url.port);
        let keep = method == "GET" || method == "HEAD";
        if keep && let Some((s, rcvbuf)) = self.take_idle(&key) {
            if let Some(w) = window {
                let _ = set_window_clamp(s.get_ref().tcp(), w);
            }
            match self.exchange(s, method, url, headers, body, Some(&key)) {
                Ok(mut r) => {
                    r.rcvbuf = rcvbuf;
                    return Ok(r);
                }
                // Closed by the server while idle: a fresh connection.
                Err(e) => log::debug!(target: "outpost", "{url}: idle connection gone ({e}); reconnecting"),
            }
        }
        let s = BufReader::with_capacity(64 * 1024, self.connect(url, window)?);
        self.exchange(s, method, url, headers, body, keep.then_some(key.as_str()))
    }

    /// The idle connection to `key`, if there is one young enough.
    #[allow(clippy::disallowed_methods)] // connection age: runtime glue
    fn take_idle(&self, key: &str) -> Option<(BufReader<Stream>, Option<usize>)> {
        let (k, at, s, rcvbuf) = self.idle.lock().ok()?.take()?;
        (k == key && at.elapsed() < IDLE_KEEP).then_some((s, rcvbuf))
    }

    /// Send one request on `s` and read the response head. With `keep`, the
    /// connection may go back to the idle slot under that key.
    fn exchange(
        &self,
        mut s: BufReader<Stream>,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
        keep: Option<&str>,
    ) -> Result<Response, Error> {
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\n",
            url.path,
            url.host_header(),
            self.user_agent
        );
        if keep.is_none() {
            head.push_str("Connection: close\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let w = s.get_mut();
        w.write_all(head.as_bytes())?;
        w.write_all(body)?;
        w.flush()?;
        let mut r = Response::read(s, method == "HEAD")?;
        if let Some(k) = keep.filter(|_| r.keep_alive) {
            r.idle = Some((self.idle.clone(), k.to_string()));
        }
        Ok(r)
    }

    /// GET a small resource into memory, refusing more than `max` bytes.
    pub fn get_small(&self, url: &Url, headers: &[(&str, &str)], max: usize) -> Result<(u16, Vec<u8>), Error> {
        let mut r = self.request("GET", url, headers, &[])?;
        let body = r.read_to_vec(max)?;
        let status = r.status;
        r.release();
        Ok((status, body))
    }
}

enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    Close,
}

/// A response whose body is read on demand.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    headers: Vec<(String, String)>,
    stream: BufReader<Stream>,
    framing: Framing,
    /// HTTP/1.1 without `Connection: close`.
    keep_alive: bool,
    /// Where the connection goes when the body has been read.
    idle: Option<(Idle, String)>,
    /// The receive buffer last set on the connection (none: autotuned).
    rcvbuf: Option<usize>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response").field("status", &self.status).finish()
    }
}

impl Response {
    fn read(mut stream: BufReader<Stream>, head_only: bool) -> Result<Self, Error> {
        let mut head = Vec::new();
        loop {
            let n = stream.read_until(b'\n', &mut head)?;
            if n == 0 {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response",
                )));
            }
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                break;
            }
            if head.len() > MAX_HEAD {
                return Err(Error::Protocol("response head too large"));
            }
        }
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(Error::Protocol("unparsable response head")),
        }
        let status = resp.code.ok_or(Error::Protocol("no status"))?;
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_string()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let framing = if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            Framing::Chunked { left: 0, done: false }
        } else if let Some(v) = get("content-length") {
            Framing::Length(v.parse().map_err(|_| Error::Protocol("bad content-length"))?)
        } else {
            Framing::Close
        };
        let keep_alive = resp.version == Some(1)
            && !get("connection").is_some_and(|v| v.to_ascii_lowercase().contains("close"))
            && !matches!(framing, Framing::Close);
        Ok(Self { status, headers, stream, framing, keep_alive, idle: None, rcvbuf: None })
    }

    /// Clamp the connection's receive window to `bytes` from now on
    /// (receiver-side LEDBAT; see [`Client::request_with_window`]).
    pub fn set_window(&self, bytes: u32) -> io::Result<()> {
        set_window_clamp(self.stream.get_ref().tcp(), bytes)
    }

    /// What the kernel has measured on this connection's path.
    pub fn path_info(&self) -> io::Result<PathInfo> {
        path_info(self.stream.get_ref().tcp())
    }

    /// Set the connection's receive buffer to `bytes` (a system call only
    /// when it changes). The kernel stops autotuning it for good.
    pub fn set_recv_buffer(&mut self, bytes: usize) -> io::Result<()> {
        if self.rcvbuf != Some(bytes) {
            set_recv_buffer(self.stream.get_ref().tcp(), bytes)?;
            self.rcvbuf = Some(bytes);
        }
        Ok(())
    }

    /// No bound on the receive buffer from now on: a buffer that was set
    /// goes to the largest the system allows, and the connection is not
    /// kept, so the next request gets a new one the kernel autotunes.
    pub fn unlock_recv_buffer(&mut self) {
        if self.rcvbuf.take().is_some() {
            let _ = set_recv_buffer(self.stream.get_ref().tcp(), usize::MAX);
            self.idle = None;
        }
    }

    /// Done with this response: when its body has been read to the end and
    /// the server keeps the connection, it becomes the client's idle one.
    #[allow(clippy::disallowed_methods)] // connection age: runtime glue
    pub fn release(self) {
        // Chunked bodies are not kept: their trailer may still be unread.
        let done = matches!(self.framing, Framing::Length(0));
        if let Some((idle, key)) = self.idle
            && done
            && self.stream.buffer().is_empty()
            && let Ok(mut slot) = idle.lock()
        {
            *slot = Some((key, Instant::now(), self.stream, self.rcvbuf));
        }
    }

    /// A header's value (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// Read the whole body, refusing more than `max` bytes.
    pub fn read_to_vec(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > max {
                return Err(Error::Protocol("response body too large"));
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn chunk_size_line(&mut self) -> io::Result<u64> {
        let mut line = String::new();
        self.stream.by_ref().take(1024).read_line(&mut line)?;
        let hex = line.trim().split(';').next().unwrap_or("");
        u64::from_str_radix(hex, 16).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "response body truncated");
        match self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.stream.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(eof());
                }
                self.framing = Framing::Length(left - n as u64);
                Ok(n)
            }
            Framing::Close => match self.stream.read(buf) {
                // A TLS peer that closes without close_notify is still the end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { left, .. } => {
                let mut left = left;
                if left == 0 {
                    left = self.chunk_size_line()?;
                    if left == 0 {
                        self.framing = Framing::Chunked { left: 0, done: true };
                        return Ok(0);
                    }
                }
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.stream.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(eof());
                }
                left -= n as u64;
                if left == 0 {
                    let mut crlf = [0u8; 2];
                    self.stream.read_exact(&mut crlf)?;
                }
                self.framing = Framing::Chunked { left, done: false };
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://127.0.0.1:8443/api/v1/poll").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "127.0.0.1", 8443, "/api/v1/poll"));
        let u = Url::from_location(false, "cdn.example/download/", "/17/17-1").unwrap();
        assert_eq!(u.to_string(), "http://cdn.example/download/17/17-1");
        assert_eq!(Url::parse("http://[::1]:80/x").unwrap().host, "::1");
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("http://h:99999/").is_err());
        assert!(Url::parse("http://h/a b").is_err());
    }

    #[allow(unsafe_code)]
    fn window_clamp(r: &Response) -> i32 {
        use std::os::fd::AsRawFd;
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        let fd = r.stream.get_ref().tcp().as_raw_fd();
        // SAFETY: a valid socket, a live c_int and its length.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_WINDOW_CLAMP,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        v
    }

    #[test]
    fn the_window_clamp_is_set_at_connect_and_moves_during_the_transfer() {
        // The delay detector's only lever: if this stops reaching the socket,
        // dynamic mode silently stops bounding the queue.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        });
        let c = Client::new(TEST_CA, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let mut r = c.request_with_window("GET", &url, &[], &[], Some(40_000)).unwrap();
        assert_eq!(window_clamp(&r), 40_000);
        r.set_window(100_000).unwrap();
        assert_eq!(window_clamp(&r), 100_000);
        r.set_window(20_000).unwrap();
        assert_eq!(window_clamp(&r), 20_000);
        assert_eq!(r.read_to_vec(100).unwrap(), b"hello");
        server.join().unwrap();
    }

    #[test]
    fn gets_reuse_the_connection_and_survive_a_server_that_closed_it() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            // The first connection serves two requests, then closes without
            // saying so; the second serves one.
            for requests in [2, 1] {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut s = s;
                for _ in 0..requests {
                    let mut line = String::new();
                    while r.read_line(&mut line).unwrap() > 0 && !line.ends_with("\r\n\r\n") {}
                    assert!(!line.contains("Connection: close"), "a GET asks to keep the connection: {line}");
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
                }
            }
        });
        let c = Client::new(TEST_CA, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        for _ in 0..3 {
            let mut r = c.request("GET", &url, &[], &[]).unwrap();
            assert_eq!(r.read_to_vec(10).unwrap(), b"ok");
            r.release();
        }
        server.join().unwrap(); // two connections for three requests, or the third times out
    }

    #[test]
    fn the_receivers_rtt_comes_from_the_timestamps_the_server_echoes() {
        // Dynamic mode's delay signal: if TCP_INFO stops giving it, the agent
        // must notice (no timestamps) and time connects instead.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n").unwrap();
            s.write_all(&vec![7u8; 4_000_000]).unwrap();
        });
        let c = Client::new(TEST_CA, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let mut r = c.request("GET", &url, &[], &[]).unwrap();
        assert_eq!(r.read_to_vec(4_000_000).unwrap().len(), 4_000_000);
        server.join().unwrap();
        let p = r.path_info().unwrap();
        let stamped = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_timestamps").map_or(true, |v| v.trim() != "0");
        assert_eq!(p.timestamps, stamped, "{p:?}");
        if stamped {
            let rtt = p.rcv_rtt.expect("4 MB over loopback with timestamps gives receiver RTT samples");
            assert!(rtt < Duration::from_secs(1), "{p:?}");
        } else {
            assert_eq!(p.rcv_rtt, None);
        }
    }

    #[test]
    fn a_set_buffer_stays_with_the_kept_connection_until_it_is_unlocked() {
        // A buffer that was set stops the kernel's autotuning for good: it
        // goes back to the idle slot with the connection, and once the
        // pacer lets go of it the connection is not kept.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = accepted.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut s = s;
                    loop {
                        let mut line = String::new();
                        while r.read_line(&mut line).unwrap_or(0) > 0 && !line.ends_with("\r\n\r\n") {}
                        if line.is_empty() || s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let c = Client::new(TEST_CA, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let mut r = c.request("GET", &url, &[], &[]).unwrap();
        r.set_recv_buffer(32 * 1024).unwrap();
        assert_eq!(r.read_to_vec(10).unwrap(), b"ok");
        r.release();
        let mut r = c.request("GET", &url, &[], &[]).unwrap();
        assert_eq!(r.rcvbuf, Some(32 * 1024), "the kept connection remembers its buffer");
        r.unlock_recv_buffer();
        assert_eq!(r.read_to_vec(10).unwrap(), b"ok");
        r.release();
        let mut r = c.request("GET", &url, &[], &[]).unwrap();
        assert_eq!(r.rcvbuf, None);
        assert_eq!(r.read_to_vec(10).unwrap(), b"ok");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "a new connection after the unlock");
    }

    /// A CA made by `outpost-server init`; plain HTTP never uses it.
    const TEST_CA: &str = include_str!("testdata/ca-cert.pem");
}
