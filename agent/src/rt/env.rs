//! Everything a front end needs from the world, in one small trait: the
//! clock, waiting, randomness, the transport (one POST, one streamed GET)
//! and the user. Both protocols' agents ([`super::agent::Agent`] and
//! [`super::ocs_mode::OcsAgent`]) work through it, so tests drive the
//! production loops against an in-process server in virtual time.
//!
//! ```text
//!   front end ──post/get──► Env ──► RealEnv: Client (TLS, pinned CA), Pacer (cap, yield, windows)
//!             ──sleep/time─►     └─► a test's simulator: scripted server, virtual clock
//! ```

use std::io;
use std::time::Duration;

use outpost_hal::linux::{CommandNotifier, StdClock};
use outpost_hal::notify::{Answer, Notice};
use outpost_hal::time::{Clock, Instant};
use ring::rand::SecureRandom;

use super::config::Config;
use super::http::{self, Client, Url};
use super::pace::Pacer;
use crate::engine::fetch::FetchError;
use crate::engine::throttle::Window;

/// Receives a response: its head first, then its body in chunks.
pub trait BodySink {
    /// The status and `Content-Range`; an error refuses the body.
    fn head(&mut self, status: u16, content_range: Option<&str>) -> Result<(), FetchError>;
    /// The next body bytes.
    fn data(&mut self, chunk: &[u8]) -> io::Result<()>;
}

/// Why a request did not complete.
#[derive(Debug)]
pub enum GetError {
    /// Nothing was received (connection, TLS).
    Unreachable(String),
    /// The sink refused the response head.
    Refused(FetchError),
    /// The body broke off; what arrived before was passed to the sink.
    Broken(String),
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(m) | Self::Broken(m) => f.write_str(m),
            Self::Refused(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GetError {}

/// Everything the agent needs from the world.
pub trait Env {
    /// Wall time, seconds since 1970 UTC.
    fn unix_time(&self) -> u64;
    /// Wait (a latency or a backoff).
    fn sleep(&mut self, d: Duration);
    /// Monotonic time (what a transfer took); by default the wall time.
    fn now(&self) -> Instant {
        Instant::from_secs(self.unix_time())
    }
    /// The time a TCP connect to `url`'s host takes (`None`: it failed), to
    /// rank fragment sources (`engine::sources`); by default all alike.
    fn probe(&mut self, _url: &Url) -> Option<Duration> {
        Some(Duration::ZERO)
    }
    /// A random number (report ids, backoff jitter).
    fn random_u64(&mut self) -> u64;
    /// POST `body` with `headers`; the status and the body, at most `max` bytes.
    fn post(
        &mut self,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
        max: usize,
    ) -> Result<(u16, Vec<u8>), GetError>;
    /// GET `url` with an optional `Range`, feeding `sink`.
    fn get(&mut self, url: &Url, range: Option<&str>, sink: &mut dyn BodySink) -> Result<(), GetError>;
    /// Show the user a notice and get the answer (the HAL's notifier).
    fn ask(&mut self, notice: &Notice<'_>) -> Answer;
    /// The server's bandwidth cap (bytes/s, 0: none) and full-speed windows.
    fn set_server_limits(&mut self, _max_bandwidth: u64, _windows: &[Window]) {}
    /// From now on present the client certificate `cert` (DER) with its
    /// private `key` (PKCS#8 DER) to servers that ask; both empty: none.
    fn set_identity(&mut self, _cert: &[u8], _key: &[u8]) -> Result<(), http::Error> {
        Ok(())
    }
    /// Whether [`Env::set_identity`] would take `cert` and `key` (checked
    /// before new credentials are stored).
    fn check_identity(&mut self, _cert: &[u8], _key: &[u8]) -> Result<(), http::Error> {
        Ok(())
    }
    /// Trust the certificates in `ca_pem` for the server from now on (as
    /// `server.ca_cert` does): the configured CA and those a trust bundle
    /// brought (`agent/trust.rs`).
    fn trust_cas(&mut self, _ca_pem: &str) -> Result<(), EnvError> {
        Ok(())
    }
}

/// GET a small body whole (an info file, a manifest): its status and bytes.
pub fn get_small<E: Env + ?Sized>(env: &mut E, url: &Url, max: usize) -> Result<(u16, Vec<u8>), GetError> {
    let mut sink = VecSink { status: 0, body: Vec::new(), max };
    env.get(url, None, &mut sink)?;
    Ok((sink.status, sink.body))
}

/// The real world: sockets through [`Client`], the system clock, the
/// configured notifier, and downloads paced by `[download]` and the server.
pub struct RealEnv {
    client: Client,
    clock: StdClock,
    notifier: CommandNotifier,
    pacer: Pacer,
    rng: ring::rand::SystemRandom,
    probe_timeout: Duration,
}

/// Why the real environment could not be made.
#[derive(Debug)]
pub enum EnvError {
    /// The CA or pinned certificate could not be loaded.
    Tls(http::Error),
    /// `[download]` is not valid.
    Pace(super::config::ConfigError),
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tls(e) => write!(f, "{e}"),
            Self::Pace(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EnvError {}

impl RealEnv {
    /// An environment trusting `cfg`'s CA.
    pub fn new(cfg: &Config) -> Result<Self, EnvError> {
        let client = Client::new(
            &cfg.server.ca_cert,
            Duration::from_secs(cfg.agent.connect_timeout),
            Duration::from_secs(cfg.agent.io_timeout),
        )
        .map_err(EnvError::Tls)?;
        let pace = cfg.pace().map_err(EnvError::Pace)?;
        Ok(Self {
            client,
            clock: StdClock::new(),
            notifier: CommandNotifier::new(cfg.agent.notify_command.clone()),
            pacer: Pacer::new(pace, cfg.agent.state_path()),
            rng: ring::rand::SystemRandom::new(),
            probe_timeout: Duration::from_secs(cfg.agent.connect_timeout.clamp(1, 3)),
        })
    }
}

impl Env for RealEnv {
    fn unix_time(&self) -> u64 {
        self.clock.unix_time()
    }

    fn sleep(&mut self, d: Duration) {
        super::sleep(d);
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn probe(&mut self, url: &Url) -> Option<Duration> {
        use std::net::ToSocketAddrs;
        let addr = (url.host.as_str(), url.port).to_socket_addrs().ok()?.next()?;
        let start = self.clock.now();
        std::net::TcpStream::connect_timeout(&addr, self.probe_timeout).ok()?;
        Some(self.clock.now().saturating_duration_since(start))
    }

    fn random_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        // SystemRandom only fails when the OS has no entropy source at all.
        let _ = self.rng.fill(&mut b);
        u64::from_le_bytes(b)
    }

    fn post(
        &mut self,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
        max: usize,
    ) -> Result<(u16, Vec<u8>), GetError> {
        // Not logged here: the caller's failure line says it once.
        let mut r =
            self.client.request("POST", url, headers, body).map_err(|e| GetError::Unreachable(e.to_string()))?;
        let body = r.read_to_vec(max).map_err(|e| GetError::Broken(format!("{url}: {e}")))?;
        self.pacer.charge(body.len());
        Ok((r.status, body))
    }

    fn get(&mut self, url: &Url, range: Option<&str>, sink: &mut dyn BodySink) -> Result<(), GetError> {
        let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
        let window = self.pacer.begin(url);
        let mut r = self.client.request_with_window("GET", url, &headers, &[], window).map_err(|e| {
            let e = unreachable(e);
            // The HTTP error itself (a head too large, a stall…), with where.
            GetError::Unreachable(format!("{url}: {e}"))
        })?;
        sink.head(r.status, r.header("content-range")).map_err(GetError::Refused)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.pacer.read(&mut r, &mut buf) {
                Ok(0) => {
                    r.release();
                    return Ok(());
                }
                Ok(n) => sink.data(&buf[..n]).map_err(|e| GetError::Broken(format!("{url}: {e}")))?,
                Err(e) => return Err(GetError::Broken(format!("{url}: body read failed: {e}"))),
            }
        }
    }

    fn ask(&mut self, notice: &Notice<'_>) -> Answer {
        super::action::ask_with(&mut self.notifier)(notice)
    }

    fn set_server_limits(&mut self, max_bandwidth: u64, windows: &[Window]) {
        self.pacer.set_server_limits(max_bandwidth, windows);
    }

    fn set_identity(&mut self, cert: &[u8], key: &[u8]) -> Result<(), http::Error> {
        self.client.set_identity(cert, key)
    }

    fn check_identity(&mut self, cert: &[u8], key: &[u8]) -> Result<(), http::Error> {
        self.client.check_identity(cert, key)
    }

    fn trust_cas(&mut self, ca_pem: &str) -> Result<(), EnvError> {
        self.client = self.client.trusting(ca_pem).map_err(EnvError::Tls)?;
        Ok(())
    }
}

/// A failed request, logged at once when TLS refused the server (the
/// admin must act), and told as nothing received.
fn unreachable(e: http::Error) -> GetError {
    if let http::Error::Tls(m) = &e {
        log::error!(target: "outpost", "{m}");
    }
    GetError::Unreachable(e.to_string())
}

/// Collects a small body in memory, at most `max` bytes.
pub(crate) struct VecSink {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) max: usize,
}

impl BodySink for VecSink {
    fn head(&mut self, status: u16, _: Option<&str>) -> Result<(), FetchError> {
        self.status = status;
        Ok(())
    }
    fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.body.len() + chunk.len() > self.max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        self.body.extend_from_slice(chunk);
        Ok(())
    }
}
