//! The client: one request at a time, one idle connection kept for the next
//! GET or HEAD to the same server, and the [`Response`] whose body is read on
//! demand through the connection's socket options.

use std::io::{self, BufReader, Read, Write};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};

use super::body::Body;
use super::conn::{self, Conn, PathInfo, Timeouts};
use super::head::{Head, read_head};
use super::pin::Verifier;
use super::{Error, IDLE_KEEP, Url};

/// Receive buffer of a connection's reader, bytes.
const READ_BUFFER: usize = 64 * 1024;

/// The idle connection: `scheme://host:port`, when it went idle, the stream,
/// the receive buffer set on it (none: the kernel autotunes it).
type Idle = Arc<Mutex<Option<(String, Instant, BufReader<Conn>, Option<usize>)>>>;

/// Issues requests; cheap to clone (clones share the TLS configuration,
/// client certificate included, and the idle connection).
#[derive(Clone)]
pub struct Client {
    tls: Arc<RwLock<Arc<ClientConfig>>>,
    /// The client certificate and key presented (`set_identity`), kept for
    /// [`Client::trusting`].
    identity: Arc<RwLock<Option<CertAndKey>>>,
    provider: Arc<CryptoProvider>,
    verifier: Arc<Verifier>,
    timeouts: Timeouts,
    user_agent: String,
    idle: Idle,
}

/// A client certificate and its private key (PKCS#8), both DER.
type CertAndKey = (Vec<u8>, Vec<u8>);

/// The last byte a `Range: bytes=A-B` request asks for (`B`).
fn asked_last(headers: &[(&str, &str)]) -> Option<u64> {
    let (_, v) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("range"))?;
    v.strip_prefix("bytes=")?.split_once('-')?.1.trim().parse().ok()
}

impl Client {
    /// A client trusting only the certificates in `ca_pem`: as CAs, and each
    /// also as the server's own certificate (a pin; `pin.rs`). Each read
    /// and write waits at most `io_timeout`, which also bounds a TLS
    /// handshake and a response head, and is the stall meter's window.
    pub fn new(ca_pem: &str, connect_timeout: Duration, io_timeout: Duration) -> Result<Self, Error> {
        let certs = rustls_pemfile::certs(&mut ca_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Error::Tls("server.ca_cert is not valid PEM".into()))?;
        if certs.is_empty() {
            return Err(Error::Tls("server.ca_cert holds no certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(Verifier::new(certs, &provider).map_err(Error::Tls)?);
        let cfg = tls_config(&provider, &verifier, None)?;
        Ok(Self {
            tls: Arc::new(RwLock::new(cfg)),
            identity: Arc::default(),
            provider,
            verifier,
            timeouts: Timeouts { connect: connect_timeout, io: io_timeout },
            user_agent: format!("outpost-agent/{}", env!("CARGO_PKG_VERSION")),
            idle: Arc::default(),
        })
    }

    /// From now on, present the client certificate `cert` (DER), signed with
    /// its private `key` (PKCS#8 DER, ECDSA), to servers that ask for one;
    /// both empty: present none. Clones of this client follow, and the idle
    /// connection, made with the previous one, is dropped.
    pub fn set_identity(&self, cert: &[u8], key: &[u8]) -> Result<(), Error> {
        let pair = (!cert.is_empty()).then_some((cert, key));
        let cfg = tls_config(&self.provider, &self.verifier, pair)?;
        *self.tls.write().map_err(|_| Error::Tls("TLS configuration lock poisoned".into()))? = cfg;
        *self.identity.write().map_err(|_| Error::Tls("TLS configuration lock poisoned".into()))? =
            pair.map(|(c, k)| (c.to_vec(), k.to_vec()));
        if let Ok(mut idle) = self.idle.lock() {
            *idle = None;
        }
        Ok(())
    }

    /// Whether [`Client::set_identity`] would take `cert` and `key`: checked
    /// before new credentials are stored, so that none the agent cannot use
    /// replaces ones it can.
    pub fn check_identity(&self, cert: &[u8], key: &[u8]) -> Result<(), Error> {
        if cert.is_empty() {
            return Ok(());
        }
        tls_config(&self.provider, &self.verifier, Some((cert, key))).map(drop)
    }

    /// A client like this one (its timeouts, its client certificate)
    /// trusting the certificates in `ca_pem` instead: the configured CA and
    /// those a trust bundle brought.
    pub fn trusting(&self, ca_pem: &str) -> Result<Self, Error> {
        let c = Self::new(ca_pem, self.timeouts.connect, self.timeouts.io)?;
        let identity = self.identity.read().map_err(|_| Error::Tls("TLS configuration lock poisoned".into()))?.clone();
        if let Some((cert, key)) = identity {
            c.set_identity(&cert, &key)?;
        }
        Ok(c)
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
        let key = url.origin();
        let keep = method == "GET" || method == "HEAD";
        if keep && let Some((s, rcvbuf)) = self.take_idle(&key) {
            if let Some(w) = window {
                let _ = conn::set_window_clamp(s.get_ref().tcp(), w);
            }
            match self.exchange(s, method, url, headers, body, Some(&key)) {
                Ok(mut r) => {
                    r.rcvbuf = rcvbuf;
                    return Ok(r);
                }
                // Closed by the server while idle: a fresh connection. Any
                // other failure is the server's answer, not asked twice.
                Err(e) if e.is_stale() => {
                    log::debug!(target: "outpost", "{url}: idle connection gone ({e}); reconnecting");
                }
                Err(e) => return Err(e),
            }
        }
        let tls = self.tls.read().map_err(|_| Error::Tls("TLS configuration lock poisoned".into()))?.clone();
        let s = BufReader::with_capacity(READ_BUFFER, conn::connect(&tls, url, window, self.timeouts)?);
        self.exchange(s, method, url, headers, body, keep.then_some(key.as_str()))
    }

    /// The idle connection to `key`, if there is one young enough.
    #[allow(clippy::disallowed_methods)] // connection age: runtime glue
    fn take_idle(&self, key: &str) -> Option<(BufReader<Conn>, Option<usize>)> {
        let (k, at, s, rcvbuf) = self.idle.lock().ok()?.take()?;
        (k == key && at.elapsed() < IDLE_KEEP).then_some((s, rcvbuf))
    }

    /// Send one request on `s` and read the response head. With `keep`, the
    /// connection may go back to the idle slot under that key.
    #[allow(clippy::disallowed_methods)] // the head deadline: runtime glue
    fn exchange(
        &self,
        mut s: BufReader<Conn>,
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
        w.meter(false);
        w.write_all(head.as_bytes())?;
        w.write_all(body)?;
        w.flush()?;
        let h = read_head(&mut s, method == "HEAD", Some((Instant::now(), self.timeouts.io)))?;
        if let (Some(last), Some((_, end))) = (asked_last(headers), h.span)
            && end > last
        {
            return Err(Error::Protocol("206 answer runs past the range asked for"));
        }
        s.get_mut().meter(true);
        let idle = keep.filter(|_| h.keep_alive).map(|k| (self.idle.clone(), k.to_string()));
        Ok(Response { status: h.status, body: Body::new(s, &h), head: h, idle, rcvbuf: None })
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

/// The agent's TLS client configuration: the server verified by `verifier`,
/// and `cert` (certificate and PKCS#8 key, DER) presented when the server
/// asks for a client certificate: an ECDSA key (`device add` makes P-256).
fn tls_config(
    provider: &Arc<CryptoProvider>,
    verifier: &Arc<Verifier>,
    cert: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone());
    let Some((cert, key)) = cert else { return Ok(Arc::new(builder.with_no_client_auth())) };
    let bad = |e: rustls::Error| Error::Tls(format!("the client certificate or its key cannot be used: {e}"));
    let key = PrivatePkcs8KeyDer::from(key.to_vec());
    let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key.into()).map_err(bad)?;
    let certified = CertifiedKey::new(vec![CertificateDer::from(cert.to_vec())], signer);
    certified.keys_match().map_err(bad)?;
    Ok(Arc::new(builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))))
}

/// A response whose body is read on demand.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    head: Head,
    body: Body<BufReader<Conn>>,
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
    fn tcp(&self) -> &std::net::TcpStream {
        self.body.get_ref().get_ref().tcp()
    }

    /// Clamp the connection's receive window to `bytes` from now on
    /// (receiver-side LEDBAT; see [`Client::request_with_window`]).
    pub fn set_window(&self, bytes: u32) -> io::Result<()> {
        conn::set_window_clamp(self.tcp(), bytes)
    }

    /// What the kernel has measured on this connection's path.
    pub fn path_info(&self) -> io::Result<PathInfo> {
        conn::path_info(self.tcp())
    }

    /// Set the connection's receive buffer to `bytes` (a system call only
    /// when it changes). The kernel stops autotuning it for good.
    pub fn set_recv_buffer(&mut self, bytes: usize) -> io::Result<()> {
        if self.rcvbuf != Some(bytes) {
            conn::set_recv_buffer(self.tcp(), bytes)?;
            self.rcvbuf = Some(bytes);
        }
        Ok(())
    }

    /// No bound on the receive buffer from now on: a buffer that was set
    /// goes to the largest the system allows, and the connection is not
    /// kept, so the next request gets a new one the kernel autotunes.
    pub fn unlock_recv_buffer(&mut self) {
        if self.rcvbuf.take().is_some() {
            let _ = conn::set_recv_buffer(self.tcp(), usize::MAX);
            self.idle = None;
        }
    }

    /// Done with this response: when its body has been read to the end and
    /// the server keeps the connection, it becomes the client's idle one.
    #[allow(clippy::disallowed_methods)] // connection age: runtime glue
    pub fn release(self) {
        // Chunked bodies are not kept: their trailer may still be unread.
        if let Some((idle, key)) = self.idle
            && self.body.is_done()
            && self.body.get_ref().buffer().is_empty()
            && let Ok(mut slot) = idle.lock()
        {
            *slot = Some((key, Instant::now(), self.body.into_inner(), self.rcvbuf));
        }
    }

    /// A header's value (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// Accept at most `max` body bytes: a body announced longer is refused
    /// now ([`Error::TooLarge`]), one that brings more fails when it does.
    pub fn limit(&mut self, max: u64) -> Result<(), Error> {
        self.body.limit(max)
    }

    /// Read the whole body, refusing more than `max` bytes (at once when
    /// `Content-Length` says more).
    pub fn read_to_vec(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        self.limit(max as u64)?;
        let known = self.head.body_len().map_or(0, |n| usize::try_from(n).unwrap_or(max));
        let mut out = Vec::with_capacity(known.min(max));
        let mut buf = [0u8; 8192];
        loop {
            match self.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

#[cfg(test)]
pub(super) mod tests;
