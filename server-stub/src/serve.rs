//! `outpost-server serve`: the HTTPS listener (control API, info, manifest,
//! HTTPS fragments) and the HTTP listener (fragments), until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_rustls::TlsAcceptor;
use outpost_agent::engine::digest::hex;
use outpost_agent::engine::manifest::sha256;
use outpost_agent::engine::proto::{self, Offer, PollReply};
use rustls::ServerConfig as TlsConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use smol::io::{AsyncRead, AsyncWrite, BufReader};
use smol::net::TcpListener;

use crate::config::ServerConfig;
use crate::db::Db;
use crate::http::{self, Body, RangeAnswer, ReadError, Request, Response};

/// Shared server state.
pub struct State {
    /// The server directory.
    pub dir: PathBuf,
    /// Configuration.
    pub cfg: ServerConfig,
    /// The database (short critical sections only).
    pub db: Mutex<Db>,
    active: AtomicUsize,
}

/// Which listener a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Https,
    Http,
}

/// Compare two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn load_tls(dir: &Path) -> Result<Arc<TlsConfig>, String> {
    let read = |n: &str| std::fs::read(dir.join("tls").join(n)).map_err(|e| format!("cannot read tls/{n}: {e}"));
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &read("server-cert.pem")?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls/server-cert.pem: {e}"))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &read("server-key.pem")?[..])
        .map_err(|e| format!("tls/server-key.pem: {e}"))?
        .ok_or("tls/server-key.pem holds no key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = TlsConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server certificate: {e}"))?;
    Ok(Arc::new(cfg))
}

/// Run until a termination signal; then stop accepting, let requests in
/// flight finish (up to 5 s) and return.
pub fn run(dir: &Path) -> Result<(), String> {
    let cfg = ServerConfig::load(dir)?;
    let tls = TlsAcceptor::from(load_tls(dir)?);
    let db = Db::open(&dir.join("state.db")).map_err(|e| format!("state.db: {e}"))?;
    let state =
        Arc::new(State { dir: dir.to_owned(), cfg: cfg.clone(), db: Mutex::new(db), active: AtomicUsize::new(0) });

    let (sig_read, sig_write) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::low_level::pipe::register(sig, sig_write.try_clone().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }

    smol::block_on(async {
        let https = TcpListener::bind(&cfg.listen.https)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen.https))?;
        let plain = TcpListener::bind(&cfg.listen.http)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen.http))?;
        log::info!(
            target: "outpost",
            "serving {} on https://{} (control API, info, manifest) and http://{} (fragments)",
            dir.display(),
            https.local_addr().map_err(|e| e.to_string())?,
            plain.local_addr().map_err(|e| e.to_string())?
        );
        let accept_tls = {
            let state = state.clone();
            async move {
                loop {
                    let Ok((tcp, peer)) = https.accept().await else {
                        continue;
                    };
                    let (state, tls) = (state.clone(), tls.clone());
                    smol::spawn(async move {
                        let _guard = Active::new(&state);
                        let hs = smol::future::or(async { tls.accept(tcp).await.map_err(|e| e.to_string()) }, async {
                            smol::Timer::after(http::REQUEST_TIMEOUT).await;
                            Err("handshake timed out".to_string())
                        });
                        match hs.await {
                            Ok(stream) => serve_conn(&state, stream, peer, Side::Https).await,
                            Err(e) => {
                                log::debug!(target: "outpost", "{peer}: TLS handshake failed: {e}")
                            }
                        }
                    })
                    .detach();
                }
            }
        };
        let accept_plain = {
            let state = state.clone();
            async move {
                loop {
                    let Ok((tcp, peer)) = plain.accept().await else {
                        continue;
                    };
                    let state = state.clone();
                    smol::spawn(async move {
                        let _guard = Active::new(&state);
                        serve_conn(&state, tcp, peer, Side::Http).await;
                    })
                    .detach();
                }
            }
        };
        let signalled = async {
            let mut r = smol::Async::new(sig_read).map_err(|e| e.to_string())?;
            let mut b = [0u8; 1];
            smol::io::AsyncReadExt::read(&mut r, &mut b).await.map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        };
        smol::future::or(async { smol::future::zip(accept_tls, accept_plain).await.0 }, signalled).await?;
        log::info!(target: "outpost", "signal received, shutting down");
        for _ in 0..50 {
            if state.active.load(Ordering::SeqCst) == 0 {
                break;
            }
            smol::Timer::after(Duration::from_millis(100)).await;
        }
        Ok(())
    })
}

struct Active<'a>(&'a State);

impl<'a> Active<'a> {
    fn new(s: &'a State) -> Self {
        s.active.fetch_add(1, Ordering::SeqCst);
        Self(s)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(state: &State, stream: S, peer: SocketAddr, side: Side) {
    let mut s = BufReader::new(stream);
    loop {
        let req = match http::read_request(&mut s).await {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reject(status, why)) => {
                let _ = http::write_response(s.get_mut(), Response::text(status, why), false, true).await;
                return;
            }
        };
        let head_only = req.method == "HEAD";
        let close = req.close;
        let resp = route(state, &req, side, peer);
        log::debug!(target: "outpost", "{peer} {side:?} {} {} -> {}", req.method, req.path, resp.status);
        if http::write_response(s.get_mut(), resp, head_only, close).await.is_err() || close {
            return;
        }
    }
}

fn route(state: &State, req: &Request, side: Side, peer: SocketAddr) -> Response {
    let parts: Vec<&str> = req.path.split('/').collect();
    match (side, parts.as_slice()) {
        (_, ["", "ocsinventory"]) => {
            post_only(req, || crate::ocs::handle(state, &req.body, req.header("authorization"), peer.ip()))
        }
        (Side::Https, ["", "api", "v1", "poll"]) => post_only(req, || poll(state, req)),
        (Side::Https, ["", "api", "v1", "report"]) => post_only(req, || report(state, req)),
        (_, ["", "download", id, name]) => {
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let is_fragment = name.strip_prefix(&format!("{id}-")).is_some_and(digits);
            let is_meta = matches!(*name, "info" | "manifest");
            if !digits(id) || !(is_fragment || (is_meta && side == Side::Https)) {
                return Response::text(404, "not found");
            }
            if req.method != "GET" && req.method != "HEAD" {
                return Response::text(405, "use GET or HEAD");
            }
            serve_file(&state.dir.join("download").join(id).join(name), req)
        }
        _ => Response::text(404, "not found"),
    }
}

fn post_only(req: &Request, f: impl FnOnce() -> Response) -> Response {
    if req.method == "POST" { f() } else { Response::text(405, "use POST") }
}

fn serve_file(path: &Path, req: &Request) -> Response {
    let Ok(file) = std::fs::File::open(path) else {
        return Response::text(404, "not found");
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Response::text(500, "cannot stat");
    };
    let mut headers =
        vec![("Accept-Ranges", "bytes".to_string()), ("Content-Type", "application/octet-stream".to_string())];
    match http::range(req.header("range"), len) {
        RangeAnswer::Full => Response { status: 200, headers, body: Body::File { file, offset: 0, len } },
        RangeAnswer::Partial(a, b) => {
            headers.push(("Content-Range", format!("bytes {a}-{b}/{len}")));
            Response { status: 206, headers, body: Body::File { file, offset: a, len: b - a + 1 } }
        }
        RangeAnswer::Unsatisfiable => {
            let mut r = Response::text(416, "range not satisfiable");
            r.headers.push(("Content-Range", format!("bytes */{len}")));
            r
        }
    }
}

/// Authenticate a device. `Err` is the response to send (401 or 500).
fn authenticate<'r>(state: &State, req: &'r Request) -> Result<&'r str, Response> {
    let unauthorized = || {
        let mut r = Response::text(401, "unknown device or wrong secret");
        r.headers.push(("WWW-Authenticate", "Outpost".into()));
        r
    };
    let (device, secret) = req.header("authorization").and_then(proto::parse_auth_header).ok_or_else(unauthorized)?;
    let stored = state.db.lock().map_err(|_| Response::text(500, "database lock poisoned"))?.device_secret(device);
    let stored = stored.map_err(|e| {
        log::error!(target: "outpost", "database: {e}");
        Response::text(500, "database error")
    })?;
    // Compare hashes: the same work whether or not the device exists.
    let presented = sha256(secret.as_bytes());
    let expected = stored.unwrap_or_else(|| vec![0; 32]);
    if constant_time_eq(&presented, &expected) && expected != [0; 32] {
        Ok(device)
    } else {
        log::warn!(target: "outpost", "refused a request for device {device:?}: unknown device or wrong secret");
        Err(unauthorized())
    }
}

fn poll(state: &State, req: &Request) -> Response {
    let device = match authenticate(state, req) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let pending = match state.db.lock() {
        Ok(mut db) => db.poll(device),
        Err(_) => return Response::text(500, "database lock poisoned"),
    };
    let pending = match pending {
        Ok(p) => p,
        Err(e) => {
            log::error!(target: "outpost", "database: {e}");
            return Response::text(500, "database error");
        }
    };
    let reply = PollReply {
        poll_interval: state.cfg.agents.poll_interval,
        max_bandwidth: state.cfg.agents.max_bandwidth,
        full_speed_windows: state.cfg.agents.full_speed_windows.clone(),
        offers: pending
            .into_iter()
            .map(|p| Offer {
                id: p.package,
                priority: p.priority,
                force: p.force,
                info_loc: state.cfg.public.info_loc.clone(),
                // PROTO="HTTPS" fragments come from the HTTPS listener.
                pack_loc: if p.https { &state.cfg.public.info_loc } else { &state.cfg.public.fragment_loc }.clone(),
            })
            .collect(),
    };
    if !reply.offers.is_empty() {
        log::info!(target: "outpost", "device {device}: notified of {} package(s)", reply.offers.len());
    }
    Response::text(200, reply.encode())
}

fn report(state: &State, req: &Request) -> Response {
    let device = match authenticate(state, req) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let reports = match proto::decode_reports(&req.body) {
        Ok(r) => r,
        Err(e) => return Response::text(400, e.to_string()),
    };
    let Ok(mut db) = state.db.lock() else {
        return Response::text(500, "database lock poisoned");
    };
    let mut acks = Vec::new();
    for r in &reports {
        match db.report(device, &hex(&r.id.to_be_bytes()), r.package, &r.status.to_string()) {
            Ok(changed) => {
                if changed {
                    log::info!(target: "outpost", "device {device}: package {} -> {}", r.package, r.status);
                }
                acks.push(r.id);
            }
            Err(e) => {
                log::error!(target: "outpost", "database: {e}");
                return Response::text(500, "database error");
            }
        }
    }
    Response::text(200, proto::encode_acks(&acks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
