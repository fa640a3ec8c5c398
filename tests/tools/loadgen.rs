//! `outpost-loadgen`: a closed-loop HTTP/1.1 load generator for
//! `scripts/bench-throughput`, one thread per connection.
//!
//! ```text
//! outpost-loadgen --target 127.0.0.1:8443 [--target 127.0.0.1:9443]… --mode handshake \
//!     --ca ca-cert.pem --requests polls.jsonl --conns 32 --duration 10 [--warmup 1] \
//!     [--peer-pid PID[,PID…]]…
//! ```
//!
//! With several `--target`s, connections go round-robin over them: the
//! `k`-th connection of worker `w` goes to target `(w + k) mod T`, so that
//! kept-alive connections are spread evenly and, in `handshake` mode, every
//! worker alternates. No load balancer in the path: each server instance is
//! connected to directly.
//!
//! Modes:
//! - `handshake`: every request on a new TCP connection with a full TLS
//!   handshake (session resumption off), `Connection: close`.
//! - `keepalive`: one TLS connection per worker, reused for every request
//!   (reconnected only when the server closes it).
//! - `plain`: as `keepalive`, over plain HTTP (fragment fetches).
//!
//! The server certificate is verified against `--ca` for the name `--name`
//! (default: the target's host): the chain once per distinct chain, the
//! handshake signature on every connection (on 1 in K with `--verify-every K`). `--requests` is JSON lines, one request
//! template each: `{"method":"POST","path":"/api/v1/poll","headers":
//! {"Authorization":"Outpost d1 s"},"body":"outpost 1\n"}` (method defaults
//! to GET, headers and body to none). Worker `w` of `n` sends templates
//! `w, w + n, w + 2n, …` round the list, so every template is used.
//!
//! Only requests that complete within the measured window (after
//! `--warmup`) count. With `--passes K` the run ends once every template
//! was sent K times, if `--duration` has not ended it first (the window
//! is then as long as that took). It prints one line of JSON: requests/s, body bytes/s,
//! latency p50/p99/p99.9 (ms, connect and handshake included in `handshake`
//! mode), status counts, errors (I/O, TLS, and any status but 200 or 206),
//! and the CPU seconds this process and the `--peer-pid` processes used in
//! the window, so that a load generator that is itself the bottleneck shows:
//! `peer_cpu_s` in all, `peer_cpu_each_s` per `--peer-pid` argument (one
//! argument may list several processes, comma-separated, e.g. the server
//! instances, then the database's; a process that starts or ends within the
//! window is not counted).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Handshake,
    KeepAlive,
    Plain,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::KeepAlive => "keepalive",
            Self::Plain => "plain",
        }
    }
}

struct Opts {
    targets: Vec<SocketAddr>,
    name: String,
    mode: Mode,
    ca: Option<String>,
    requests: String,
    conns: usize,
    duration: Duration,
    warmup: Duration,
    timeout: Duration,
    /// Groups of peer processes, one per `--peer-pid` argument.
    peers: Vec<Vec<u32>>,
    verify_every: u64,
    /// Stop once every template was sent this many times (or `--duration` ends).
    passes: Option<u64>,
}

const USAGE: &str = "usage: outpost-loadgen --target HOST:PORT [--target HOST:PORT]... --mode handshake|keepalive|plain \
[--ca CA.pem] [--name SERVER_NAME] --requests FILE.jsonl [--conns N] [--duration SECS] [--warmup SECS] \
[--timeout SECS] [--verify-every K] [--passes K] [--peer-pid PID[,PID...]]...";

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let (mut targets, mut name, mut mode, mut ca, mut requests) = (Vec::new(), None, None, None, None);
    let (mut conns, mut duration, mut warmup, mut timeout, mut peers) = (16, 10.0, 1.0, 10.0, Vec::new());
    let mut verify_every = 1;
    let mut passes = None;
    let secs = |v: String| {
        v.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).ok_or_else(|| format!("bad seconds {v:?}"))
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--target" => targets.push(val()?),
            "--name" => name = Some(val()?),
            "--mode" => {
                mode = Some(match val()?.as_str() {
                    "handshake" => Mode::Handshake,
                    "keepalive" => Mode::KeepAlive,
                    "plain" => Mode::Plain,
                    m => return Err(format!("unknown mode {m:?}")),
                });
            }
            "--ca" => ca = Some(val()?),
            "--requests" => requests = Some(val()?),
            "--conns" => conns = val()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--duration" => duration = secs(val()?)?,
            "--warmup" => warmup = secs(val()?)?,
            "--timeout" => timeout = secs(val()?)?,
            "--verify-every" => {
                verify_every = val()?.parse().ok().filter(|k| *k > 0).ok_or("--verify-every needs a positive count")?;
            }
            "--passes" => {
                passes = Some(val()?.parse().ok().filter(|k| *k > 0).ok_or("--passes needs a positive count")?);
            }
            "--peer-pid" => peers.push(
                val()?
                    .split(',')
                    .map(|p| p.trim().parse().map_err(|e| format!("--peer-pid {p:?}: {e}")))
                    .collect::<Result<Vec<u32>, _>>()?,
            ),
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
    }
    if targets.is_empty() {
        return Err("--target is required".into());
    }
    let targets = targets
        .iter()
        .map(|t| {
            t.to_socket_addrs()
                .map_err(|e| format!("--target {t}: {e}"))?
                .next()
                .ok_or_else(|| format!("--target {t}: no address"))
        })
        .collect::<Result<Vec<SocketAddr>, String>>()?;
    let mode = mode.ok_or("--mode is required")?;
    if mode != Mode::Plain && ca.is_none() {
        return Err("--ca is required for TLS modes".into());
    }
    if conns == 0 || duration <= 0.0 {
        return Err("--conns and --duration must be positive".into());
    }
    Ok(Opts {
        name: name.unwrap_or_else(|| targets[0].ip().to_string()),
        targets,
        mode,
        ca,
        requests: requests.ok_or("--requests is required")?,
        conns,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        timeout: Duration::from_secs_f64(timeout.max(0.001)),
        peers,
        verify_every,
        passes,
    })
}

/// Request templates, rendered to bytes once (without the `Connection` line,
/// which depends on the mode).
fn load_requests(path: &str, host: &str, close: bool) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{path}:{}: {e}", i + 1))?;
        let method = v["method"].as_str().unwrap_or("GET");
        let path_ = v["path"].as_str().ok_or_else(|| format!("{path}:{}: no \"path\"", i + 1))?;
        let body = v["body"].as_str().unwrap_or("");
        let mut req = format!("{method} {path_} HTTP/1.1\r\nHost: {host}\r\n");
        if let Some(h) = v["headers"].as_object() {
            for (k, val) in h {
                req.push_str(&format!("{k}: {}\r\n", val.as_str().unwrap_or_default()));
            }
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str(if close { "Connection: close\r\n" } else { "Connection: keep-alive\r\n" });
        req.push_str("\r\n");
        req.push_str(body);
        out.push(req.into_bytes());
    }
    if out.is_empty() {
        return Err(format!("{path}: no request"));
    }
    Ok(out)
}

fn tls_config(ca: &str, sig_every: u64) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots.add(c.map_err(|e| format!("{ca}: {e}"))?).map_err(|e| format!("{ca}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("{ca}: {e}"))?;
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnce {
            webpki,
            verified: Mutex::new(None),
            sig_count: AtomicU64::new(0),
            sig_every,
        }))
        .with_no_client_auth();
    // Every connection makes a full handshake.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// The CA's verifier, with the chain's verdict kept: a chain is verified
/// against the CA once, and the same certificate bytes for the same name are
/// taken as verified after that (no second path building, no second check of
/// the CA's signature on them). The handshake signature, the proof that the
/// peer holds the key, is checked on every connection (or on 1 in
/// `--verify-every`). What the server does per handshake does not change;
/// the client's share of the CPU shrinks, so that it is less likely to be
/// the bottleneck.
#[derive(Debug)]
struct ChainOnce {
    webpki: Arc<WebPkiServerVerifier>,
    /// The last verified chain and name.
    verified: Mutex<Option<(Vec<Vec<u8>>, String)>>,
    /// TLS 1.3 handshake signatures seen, and the share checked (1 in `sig_every`).
    sig_count: AtomicU64,
    sig_every: u64,
}

impl ServerCertVerifier for ChainOnce {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<Vec<u8>> =
            std::iter::once(end_entity).chain(intermediates).map(|c| c.as_ref().to_vec()).collect();
        let key = (chain, server_name.to_str().into_owned());
        let mut verified = self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.as_ref() == Some(&key) {
            return Ok(ServerCertVerified::assertion());
        }
        let ok = self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        *verified = Some(key);
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.sig_count.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.sig_every) {
            return Ok(HandshakeSignatureValid::assertion());
        }
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(b),
            Self::Tls(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(b),
            Self::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

struct Shared {
    opts: Opts,
    tls: Option<Arc<ClientConfig>>,
    server_name: Option<ServerName<'static>>,
    requests: Vec<Vec<u8>>,
    stop: AtomicBool,
    /// Workers that are done (`--passes`).
    done: AtomicU64,
    /// The measured window, set by the main thread before any worker starts.
    window: (Instant, Instant),
}

#[derive(Default)]
struct Tally {
    /// Latencies of requests completed in the window, microseconds.
    lat_us: Vec<u32>,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    body_bytes: u64,
}

impl Tally {
    fn merge(&mut self, o: Self) {
        self.lat_us.extend(o.lat_us);
        for (k, v) in o.status {
            *self.status.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.body_bytes += o.body_bytes;
    }
}

fn connect(sh: &Shared, target: &SocketAddr) -> io::Result<Conn> {
    let tcp = TcpStream::connect_timeout(target, sh.opts.timeout)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(sh.opts.timeout))?;
    tcp.set_write_timeout(Some(sh.opts.timeout))?;
    match (&sh.tls, &sh.server_name) {
        (Some(cfg), Some(name)) => {
            let conn = ClientConnection::new(cfg.clone(), name.clone()).map_err(io::Error::other)?;
            let mut s = StreamOwned::new(conn, tcp);
            // Complete the handshake now, so that a failure shows as one.
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock)?;
            }
            Ok(Conn::Tls(Box::new(s)))
        }
        _ => Ok(Conn::Plain(tcp)),
    }
}

/// A response's status, body length and whether the server keeps the connection.
struct Reply {
    status: u16,
    body: u64,
    keep: bool,
}

/// Read one response from `c`, with `buf` holding bytes already read past the
/// previous one (`*have` of them). Bodies are discarded as they come.
fn read_reply(c: &mut Conn, buf: &mut [u8], have: &mut usize) -> io::Result<Reply> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    // The head.
    let mut scanned = 0;
    let head_end = loop {
        if let Some(p) = find_head_end(&buf[scanned..*have]) {
            break scanned + p;
        }
        scanned = have.saturating_sub(3);
        if *have == buf.len() {
            return Err(bad("response head too long"));
        }
        let n = c.read(&mut buf[*have..])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a response"));
        }
        *have += n;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status line"))?;
    let (mut len, mut keep) = (None, !status_line.starts_with("HTTP/1.0"));
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            len = Some(v.parse::<u64>().map_err(|_| bad("content-length"))?);
        } else if k.eq_ignore_ascii_case("connection") {
            if v.eq_ignore_ascii_case("close") {
                keep = false;
            } else if v.eq_ignore_ascii_case("keep-alive") {
                keep = true;
            }
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked responses are not supported"));
        }
    }
    // The body: what is already buffered, then reads.
    let after = *have - head_end;
    let Some(len) = len else {
        // Until the server closes.
        let mut body = after as u64;
        loop {
            match c.read(buf) {
                Ok(0) => break,
                Ok(n) => body += n as u64,
                Err(e) => return Err(e),
            }
        }
        *have = 0;
        return Ok(Reply { status, body, keep: false });
    };
    let in_buf = (after as u64).min(len) as usize;
    buf.copy_within(head_end + in_buf..*have, 0);
    *have -= head_end + in_buf;
    let mut left = len - in_buf as u64;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = c.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed mid-body"));
        }
        left -= n as u64;
    }
    Ok(Reply { status, body: len, keep })
}

/// The end of `\r\n\r\n` in `b`, if there.
fn find_head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 4 <= b.len() {
        if b[i + 3] != b'\n' {
            i += 1;
        } else if &b[i..i + 4] == b"\r\n\r\n" {
            return Some(i + 4);
        } else {
            i += 1;
        }
    }
    None
}

fn error_kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::Other | io::ErrorKind::InvalidData => format!("{e}"),
        k => format!("{k:?}"),
    }
}

#[allow(clippy::disallowed_methods)] // real time is this tool's whole job
fn worker(sh: &Shared, w: usize) -> Tally {
    let mut t = Tally::default();
    let mut buf = vec![0u8; 256 * 1024];
    let (from, to) = sh.window;
    let mut next = w % sh.requests.len();
    let mut conn: Option<(Conn, usize)> = None;
    // Round-robin over the targets, one step per connection.
    let mut next_target = w % sh.opts.targets.len();
    // This worker's share of a pass over the templates.
    let n = sh.requests.len();
    let share = if w < n { ((n - 1 - w) / sh.opts.conns + 1) as u64 } else { 0 };
    let mut left = sh.opts.passes.map(|k| k * share);
    while !sh.stop.load(Ordering::Relaxed) && left != Some(0) {
        if let Some(l) = &mut left {
            *l -= 1;
        }
        let start = Instant::now();
        let req = &sh.requests[next];
        next = (next + sh.opts.conns) % sh.requests.len();
        let mut fresh = false;
        let result = (|| {
            let (c, have) = match &mut conn {
                Some(c) => c,
                None => {
                    fresh = true;
                    let target = &sh.opts.targets[next_target];
                    next_target = (next_target + 1) % sh.opts.targets.len();
                    conn.insert((connect(sh, target)?, 0))
                }
            };
            c.write_all(req)?;
            c.flush()?;
            read_reply(c, &mut buf, have)
        })();
        let end = Instant::now();
        let counted = end >= from && end <= to;
        match result {
            Ok(r) => {
                if !r.keep || sh.opts.mode == Mode::Handshake {
                    conn = None;
                }
                if counted {
                    let us = end.duration_since(start).as_micros();
                    t.lat_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    *t.status.entry(r.status).or_default() += 1;
                    t.body_bytes += r.body;
                }
            }
            Err(e) => {
                conn = None;
                if counted {
                    *t.errors.entry(error_kind(&e)).or_default() += 1;
                    // When and where, for whoever looks for the cause.
                    eprintln!(
                        "outpost-loadgen: worker {w}: {} after {:.3} s, at {:.3} s into the run: {e}",
                        if fresh { "connection or first request failed" } else { "request failed" },
                        end.duration_since(start).as_secs_f64(),
                        start.duration_since(from.checked_sub(sh.opts.warmup).unwrap_or(from)).as_secs_f64(),
                    );
                }
            }
        }
        if end > to {
            break;
        }
    }
    t
}

/// CPU seconds (user + system, all threads, exited ones included) of process `pid`.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3,
    // utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks() as f64)
}

#[allow(unsafe_code)]
fn clock_ticks() -> i64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t } else { 100 }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

#[allow(clippy::disallowed_methods)] // real time is this tool's whole job
fn run(opts: Opts) -> Result<serde_json::Value, String> {
    let tls = match (&opts.mode, &opts.ca) {
        (Mode::Plain, _) => None,
        (_, Some(ca)) => Some(tls_config(ca, opts.verify_every)?),
        (_, None) => unreachable!("checked in parse_args"),
    };
    let server_name = match opts.mode {
        Mode::Plain => None,
        _ => Some(ServerName::try_from(opts.name.clone()).map_err(|e| format!("--name: {e}"))?),
    };
    let requests = load_requests(&opts.requests, &opts.name, opts.mode == Mode::Handshake)?;
    let t0 = Instant::now();
    let window = (t0 + opts.warmup, t0 + opts.warmup + opts.duration);
    let sh = Arc::new(Shared {
        opts,
        tls,
        server_name,
        requests,
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        window,
    });
    let total = Arc::new(Mutex::new(Tally::default()));
    let mut threads = Vec::new();
    for w in 0..sh.opts.conns {
        let (sh, total) = (sh.clone(), total.clone());
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{w}"))
            .stack_size(512 * 1024)
            .spawn(move || {
                let t = worker(&sh, w);
                total.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge(t);
                sh.done.fetch_add(1, Ordering::Relaxed);
            })
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        threads.push(h);
    }
    std::thread::sleep(window.0.saturating_duration_since(Instant::now()));
    let cpu0 = cpu_seconds(None);
    let peer_cpu = |g: &Vec<u32>| g.iter().map(|p| cpu_seconds(Some(*p))).collect::<Vec<_>>();
    let peer0: Vec<Vec<Option<f64>>> = sh.opts.peers.iter().map(peer_cpu).collect();
    // Until the window ends, or every worker is done (`--passes`).
    while sh.done.load(Ordering::Relaxed) < sh.opts.conns as u64 {
        let left = window.1.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
    let end = Instant::now().min(window.1);
    let cpu1 = cpu_seconds(None);
    let peer1: Vec<Vec<Option<f64>>> = sh.opts.peers.iter().map(peer_cpu).collect();
    sh.stop.store(true, Ordering::Relaxed);
    for h in threads {
        h.join().map_err(|_| "a worker panicked")?;
    }
    let mut t = std::mem::take(&mut *total.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    t.lat_us.sort_unstable();
    // The window as it was: shorter if every pass ended first.
    let secs = end.saturating_duration_since(window.0).as_secs_f64().max(1e-3);
    let ok: u64 = t.status.iter().filter(|(s, _)| matches!(s, 200 | 206)).map(|(_, n)| n).sum();
    let bad_status: u64 = t.status.iter().filter(|(s, _)| !matches!(s, 200 | 206)).map(|(_, n)| n).sum();
    let io_errors: u64 = t.errors.values().sum();
    let own_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    // Per group: the processes read at both ends of the window (None if none was).
    let peer_each: Vec<Option<f64>> = peer0
        .iter()
        .zip(&peer1)
        .map(|(g0, g1)| {
            g0.iter()
                .zip(g1)
                .filter_map(|(a, b)| Some(b.as_ref()? - a.as_ref()?))
                .fold(None, |s, c| Some(s.unwrap_or(0.0) + c))
        })
        .collect();
    let peer_cpu = peer_each.iter().copied().sum::<Option<f64>>().filter(|_| !sh.opts.peers.is_empty());
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    Ok(serde_json::json!({
        "mode": sh.opts.mode.name(),
        "target": sh.opts.targets.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        "conns": sh.opts.conns,
        "duration_s": secs,
        "requests": ok,
        "rps": round(ok as f64 / secs, 1),
        "body_bytes": t.body_bytes,
        "body_bytes_per_s": round(t.body_bytes as f64 / secs, 0),
        "p50_ms": round(percentile(&t.lat_us, 0.50), 3),
        "p99_ms": round(percentile(&t.lat_us, 0.99), 3),
        "p999_ms": round(percentile(&t.lat_us, 0.999), 3),
        "max_ms": round(t.lat_us.last().map_or(0.0, |m| f64::from(*m) / 1000.0), 3),
        "errors": io_errors + bad_status,
        "status": t.status.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "error_kinds": t.errors.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "verify_every": sh.opts.verify_every,
        "loadgen_cpu_s": own_cpu.map(|c| round(c, 2)),
        "peer_cpu_s": peer_cpu.map(|c| round(c, 2)),
        "peer_cpu_each_s": peer_each.iter().map(|c| c.map(|c| round(c, 2))).collect::<Vec<_>>(),
        "loadgen_cpu_per_peer_cpu": match (own_cpu, peer_cpu) {
            (Some(a), Some(b)) if b > 0.0 => Some(round(a / b, 3)),
            _ => None,
        },
    }))
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("outpost-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outpost-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
