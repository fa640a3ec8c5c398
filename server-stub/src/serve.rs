//! `outpost-server serve`: the HTTPS listener (control API, info, manifest,
//! HTTPS fragments) and the HTTP listener (fragments, OCS), until SIGINT/SIGTERM.
//!
//! ```text
//!  accept ──► peer outside [security] networks? ──► closed, before TLS
//!    ▼
//!  Gate: over a cap (plain HTTP: 3/4 of it)? ──► 503 (HTTP) or closed (HTTPS)
//!    │ TCP_NODELAY, writes that stall for `write_timeout`, or average less
//!    │ than `min_send_rate` over it once a response has run that long, fail
//!    ▼
//!  connection task on the executor (EXECUTOR_THREADS threads):
//!    TLS handshake (a client certificate, if presented, must chain to the
//!    CA) · read request · client address (access::client_addr;
//!    outside networks: 403) · write response · close_notify
//!    (a file body: sendfile on plain HTTP, 256 KiB reads on the blocking pool over TLS)
//!    └─► api::route on the blocking pool: files, SQLite, OCS inflate + parse
//!        (at most MAX_OCS_IN_FLIGHT OCS requests at once)
//!
//!  servercert::live::watch, every TICK: reload tls/server-*.pem if changed, renew when due
//! ```
//!
//! No request is handled on an executor thread but a poll answered from
//! memory (`crate::poll_cache`: a lookup, no database, no file read), so
//! one that is slow to handle (a large OCS body, the database lock held)
//! stalls no other client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::TlsAcceptor;
use rustls::ServerConfig as TlsConfig;
use smol::Executor;
use smol::io::{AsyncRead, AsyncWriteExt, BufReader};
use smol::lock::Semaphore;
use smol::net::{TcpListener, TcpStream};

use crate::access::Origin;
use crate::cidr::Cidr;
use crate::config::ServerConfig;
use crate::db::Pool;
use crate::http::{self, Connection, ReadError, Request, Response};
use crate::limits::{ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, Gate, Limits, MAX_OCS_IN_FLIGHT};
use crate::pki::Fingerprint;
use crate::sendfile::Transport;
use crate::servercert::live::{self, Live};
use crate::stall::StallLimit;
use outpost_agent::engine::manifest::sha256;

/// Most threads running the connection tasks (TLS, reading, writing): one
/// per core the process may run on (its CPU affinity), up to this. One is
/// enough on one core: requests are handled on the blocking pool, so no one
/// connection's work holds up the others, and a second executor thread on
/// the same core only adds context switches to the sendfile path.
const MAX_EXECUTOR_THREADS: usize = 4;

/// Reports of several requests, committed together: each request's rows,
/// answered with whether each changed something (or the database error).
pub type ReportCommit = crate::group_commit::GroupCommit<Vec<crate::db::ReportRow>, Result<Vec<bool>, String>>;

/// Shared server state.
pub struct State {
    /// The server directory.
    pub dir: PathBuf,
    /// Configuration.
    pub cfg: ServerConfig,
    /// The database connections (short critical sections only).
    pub db: Pool,
    /// Reports waiting for, or in, a group commit ([`crate::group_commit`]).
    pub reports: ReportCommit,
    /// Which packages are HTTPS-only ([`crate::downloads::HttpsOnly`]).
    pub https_only: crate::downloads::HttpsOnly,
    /// The threads that answer polls, one per database connection.
    pub polls: crate::workers::Workers,
    /// Answers to polls that change nothing ([`crate::poll_cache`]).
    pub poll_cache: crate::poll_cache::PollCache,
    /// The published trust bundle's version, by the file's identity.
    pub trust_version: crate::rollover::VersionCache,
    /// Contacts waiting to be written, a second at a time ([`crate::contacts`]).
    pub contacts: crate::contacts::Contacts,
    /// Authentication failures logged per client, at most a line a minute.
    pub failure_log: crate::faillog::FailureLog,
    /// The server certificate, renewed and reloaded while serving.
    pub cert: Arc<Live>,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Open connections, against their caps.
    gate: Arc<Gate>,
    /// Places for OCS requests being handled.
    ocs_slots: Semaphore,
    /// Caps and timeouts.
    limits: Limits,
}

impl State {
    /// Connections open now (for `/metrics`).
    pub fn open_connections(&self) -> u64 {
        self.gate.open() as u64
    }
}

/// Which listener a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The TLS listener (control API, info, manifest, HTTPS fragments).
    Https,
    /// The plain listener (fragments, OCS).
    Http,
}

/// The TLS configuration: the server certificate comes from `cert`, asked at
/// every handshake, so a renewed or replaced one is served without a restart;
/// a client certificate, when presented, must chain to the CA (`pki::client_verifier`).
fn tls_config(dir: &Path, cert: Arc<Live>) -> Result<Arc<TlsConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = TlsConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(crate::pki::client_verifier(dir)?)
        .with_cert_resolver(cert);
    Ok(Arc::new(cfg))
}

/// Run until a termination signal; then stop accepting, let requests in
/// flight finish (up to 5 s) and return.
pub fn run(dir: &Path) -> Result<(), String> {
    run_on(dir, None, None)
}

/// As [`run`], listening on `https` and `http` instead of `[listen]` where
/// given: several instances on one directory (and one PostgreSQL
/// database), each on its own ports.
pub fn run_on(dir: &Path, https: Option<String>, http: Option<String>) -> Result<(), String> {
    let mut cfg = ServerConfig::load(dir)?;
    if let Some(a) = https {
        cfg.listen.https = a;
    }
    if let Some(a) = http {
        cfg.listen.http = a;
    }
    let limits = cfg.limits.clone();
    let nofile = match outpost_hal::linux::raise_nofile_limit() {
        Ok(l) => l.soft,
        Err(e) => {
            log::warn!(target: "outpost", "cannot raise the descriptor limit: {e}");
            outpost_hal::linux::nofile_limit().map_or(1024, |l| l.soft)
        }
    };
    let gate = Gate::new(limits.connection_cap(nofile), limits.max_connections_per_address);
    let cert = Live::start(dir, crate::time::unix_now())?;
    let tls = TlsAcceptor::from(tls_config(dir, cert.clone())?);
    let db = Pool::open_in(dir)?;
    let polls = crate::workers::Workers::start("poll", db.connections())?;
    // On SQLite, polls that change nothing are answered from memory while
    // nothing changes (`crate::poll_cache`): this process's commits say so
    // in memory, other processes' in DIR/state.changes.
    let sqlite = db.lock().map_err(|e| e.to_string())?.backend() == crate::db::Backend::Sqlite;
    // One `serve` per SQLite directory; held until the process ends.
    let serve_lock = if sqlite { Some(crate::files::hold_serve_lock(dir)?) } else { None };
    let changes = sqlite.then(|| crate::db::changes::file_of(&dir.join("state.db")));
    if let Some(f) = &changes {
        crate::db::changes::serving(f).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    let poll_cache = crate::poll_cache::PollCache::new(changes);
    let state = Arc::new(State {
        dir: dir.to_owned(),
        cfg: cfg.clone(),
        db,
        reports: ReportCommit::default(),
        contacts: crate::contacts::Contacts::default(),
        trust_version: crate::rollover::VersionCache::default(),
        polls,
        poll_cache,
        https_only: crate::downloads::HttpsOnly::default(),
        failure_log: crate::faillog::FailureLog::default(),
        cert,
        metrics: crate::metrics::Metrics::default(),
        gate,
        ocs_slots: Semaphore::new(MAX_OCS_IN_FLIGHT),
        limits,
    });
    // The group commit of reports; weak: the state (and its database
    // connections) goes when serving ends, and the committer with it.
    let weak = Arc::downgrade(&state);
    state.reports.start("reports", MAX_REPORT_BATCH, move |batch| match weak.upgrade() {
        Some(st) => crate::api::report::commit(&st, batch),
        None => Vec::new(),
    })?;

    let (sig_read, sig_write) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::low_level::pipe::register(sig, sig_write.try_clone().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }

    let ex = Arc::new(Executor::new());
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, MAX_EXECUTOR_THREADS);
    let mut helpers = Vec::new();
    for i in 1..threads {
        let (ex, stopped) = (ex.clone(), stopped.clone());
        let helper = std::thread::Builder::new()
            .name(format!("outpost-serve-{i}"))
            .spawn(move || smol::block_on(ex.run(stopped.recv())))
            .map_err(|e| format!("cannot start an executor thread: {e}"))?;
        helpers.push(helper);
    }
    let served = smol::block_on(ex.run(async {
        let https = TcpListener::bind(&cfg.listen.https)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen.https))?;
        let plain = TcpListener::bind(&cfg.listen.http)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen.http))?;
        log::info!(
            target: "outpost",
            "serving {} on https://{} (control API, info, manifest) and http://{} (fragments); at most {} connections, {} per address",
            dir.display(),
            https.local_addr().map_err(|e| e.to_string())?,
            plain.local_addr().map_err(|e| e.to_string())?,
            state.gate.total_cap(),
            state.limits.max_connections_per_address,
        );
        let signalled = async {
            let mut r = smol::Async::new(sig_read).map_err(|e| e.to_string())?;
            let mut b = [0u8; 1];
            smol::io::AsyncReadExt::read(&mut r, &mut b).await.map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        };
        ex.spawn(live::watch(state.cert.clone())).detach();
        ex.spawn(crate::every_second::run(state.clone())).detach();
        let accepting = smol::future::zip(
            accept_loop(&ex, &state, https, Side::Https, Some(tls)),
            accept_loop(&ex, &state, plain, Side::Http, None),
        );
        let forever = async {
            accepting.await;
            Ok(())
        };
        smol::future::or(forever, signalled).await?;
        log::info!(target: "outpost", "signal received, shutting down");
        for _ in 0..50 {
            if state.gate.open() == 0 {
                break;
            }
            smol::Timer::after(Duration::from_millis(100)).await;
        }
        crate::every_second::flush_contacts(&state).await;
        Ok(())
    }));
    drop(stop);
    for h in helpers {
        let _ = h.join();
    }
    drop(serve_lock);
    served
}

/// Run `f` on `req` on a poll worker ([`crate::workers`]), and give `req`
/// back with what `f` returned; `Err` if `f` panicked (where panics
/// unwind): `req` without its headers and body, and a 500.
async fn on_worker<T: Send + 'static>(
    state: &Arc<State>,
    req: Request,
    what: &str,
    f: impl FnOnce(&State, &Request) -> T + Send + 'static,
) -> Result<(Request, T), (Request, Response)> {
    let (method, path, connection) = (req.method.clone(), req.path.clone(), req.connection);
    let st = state.clone();
    let done = state.polls.run(move || {
        let out = f(&st, &req);
        (req, out)
    });
    done.await.ok_or_else(|| {
        log::error!(target: "outpost", "a {what}'s handler panicked");
        (
            Request { method, path, headers: Vec::new(), body: Vec::new(), connection },
            Response::text(500, "internal error"),
        )
    })
}

/// Accept connections on `listener` forever: admit each through the gate,
/// or refuse it at once; after a failed `accept` (at the descriptor limit,
/// say) wait, longer each time, instead of retrying at once.
async fn accept_loop(
    ex: &Arc<Executor<'static>>,
    state: &Arc<State>,
    listener: TcpListener,
    side: Side,
    tls: Option<TlsAcceptor>,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut refusing = false;
    let mut outsiders = false;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => {
                backoff = ACCEPT_BACKOFF_MIN;
                c
            }
            Err(e) => {
                if backoff == ACCEPT_BACKOFF_MIN {
                    log::warn!(target: "outpost", "{side:?} listener: accept failed: {e}; retrying with backoff");
                }
                smol::Timer::after(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        // Before TLS and before a byte is read: closed, nothing answered.
        if !Cidr::any_contains(&state.cfg.security.networks, peer.ip()) {
            if !outsiders {
                log::warn!(
                    target: "outpost",
                    "{peer}: refused: not in [security] networks (logged once until one from them connects)"
                );
            }
            log::debug!(target: "outpost", "{peer}: refused: not in [security] networks");
            outsiders = true;
            continue;
        }
        outsiders = false;
        let ticket = match state.gate.admit(peer.ip(), side) {
            Ok(t) => {
                refusing = false;
                t
            }
            Err(why) => {
                if !refusing {
                    log::warn!(target: "outpost", "{peer}: refused: {why} (logged once until one is admitted)");
                }
                refusing = true;
                refuse(tcp, side).await;
                continue;
            }
        };
        state.metrics.connection(side);
        if let Err(e) = tcp.set_nodelay(true) {
            log::debug!(target: "outpost", "{peer}: cannot set TCP_NODELAY: {e}");
        }
        let (state, tls) = (state.clone(), tls.clone());
        ex.spawn(async move {
            let _ticket = ticket;
            connection(&state, tcp, peer, side, tls).await;
        })
        .detach();
    }
}

/// Turn away a connection over a cap without spending a task on it: a 503
/// if it fits in the socket buffer now (plain HTTP), then close.
async fn refuse(mut tcp: TcpStream, side: Side) {
    if side == Side::Http {
        let _ = smol::future::poll_once(tcp.write(http::BUSY)).await;
    }
}

/// One admitted connection: TLS handshake if any, then its requests.
async fn connection(state: &Arc<State>, tcp: TcpStream, peer: SocketAddr, side: Side, tls: Option<TlsAcceptor>) {
    let stream = StallLimit::new(tcp, state.limits.write_timeout(), state.limits.min_send_rate);
    let Some(tls) = tls else {
        return serve_conn(state, stream, peer, side, None).await;
    };
    let hs = smol::future::or(async { tls.accept(stream).await.map_err(|e| e.to_string()) }, async {
        smol::Timer::after(http::REQUEST_TIMEOUT).await;
        Err("handshake timed out".to_string())
    });
    match hs.await {
        Ok(stream) => {
            // The client's certificate, verified in the handshake (chain to
            // the CA, proof of its key): the device is checked against it on
            // every request (api::authenticate).
            let cert = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| sha256(c));
            serve_conn(state, stream, peer, side, cert).await
        }
        Err(e) => log::debug!(target: "outpost", "{peer}: TLS handshake failed: {e}"),
    }
}

/// Serve requests until the client closes, goes idle, asks to close or
/// fails; then close cleanly (TLS: close_notify first) unless a write failed.
/// `cert`: the fingerprint of the client certificate the TLS handshake verified.
async fn serve_conn<S: AsyncRead + Transport>(
    state: &Arc<State>,
    stream: S,
    peer: SocketAddr,
    side: Side,
    cert: Option<Fingerprint>,
) {
    let mut s = BufReader::new(stream);
    let clean = loop {
        let req = match http::read_request_within(&mut s, state.limits.idle_timeout()).await {
            Ok(r) => r,
            Err(ReadError::Closed) => break true,
            Err(ReadError::Reject(status, why)) => {
                log::debug!(target: "outpost", "{peer} {side:?}: request refused: {status} {why}");
                let sent = http::write_response(s.get_mut(), Response::text(status, why), false, Connection::Close);
                break sent.await.is_ok();
            }
        };
        let (head_only, connection) = (req.method == "HEAD", req.connection);
        let origin = origin_of(state, peer, &req);
        let client = origin.client;
        let (req, resp) = if Cidr::any_contains(&state.cfg.security.networks, client) {
            route(state, req, side, origin, cert).await
        } else {
            log::debug!(target: "outpost", "{client} (via {peer}): refused: not in [security] networks");
            (req, Response::text(403, "this address may not use this server"))
        };
        if client == peer.ip() {
            log::debug!(target: "outpost", "{peer} {side:?} {} {} -> {}", req.method, req.path, resp.status);
        } else {
            log::debug!(target: "outpost", "{client} (via {peer}) {side:?} {} {} -> {}", req.method, req.path, resp.status);
        }
        let len = if head_only { 0 } else { resp.body_len() };
        if let Err(e) = http::write_response(s.get_mut(), resp, head_only, connection).await {
            log::debug!(target: "outpost", "{peer} {side:?}: response not delivered: {e}");
            break false;
        }
        state.metrics.served(side, len);
        if connection == Connection::Close {
            break true;
        }
    };
    if clean {
        let _ = s.get_mut().close().await;
    }
}

/// Where `req` from `peer` came from ([`crate::access`]): the forwarded
/// client from a trusted proxy, else the peer.
fn origin_of(state: &State, peer: SocketAddr, req: &Request) -> Origin {
    let (origin, bad) = Origin::of(&state.cfg.security.trusted_proxies, peer.ip(), &req.headers);
    if let Some(e) = bad {
        log::debug!(target: "outpost", "{peer}: {e}; counting the request against the proxy's address");
    }
    origin
}

/// The path of the OCS endpoint (see [`crate::api::route`]).
const OCS_PATH: &str = "/ocsinventory";
/// The path of an Outpost agent's poll (see [`crate::api::route`]).
const POLL_PATH: &str = "/api/v1/poll";
/// The path of an Outpost agent's reports ([`crate::api::report`]).
const REPORT_PATH: &str = "/api/v1/report";
/// Most report requests in one group commit.
const MAX_REPORT_BATCH: usize = 1024;

/// Route `req` on the blocking pool, never on an executor thread: an OCS
/// body is inflated and parsed there, and the database lock waited for.
/// Polls go to the poll workers ([`crate::workers`]).
async fn route(
    state: &Arc<State>,
    req: Request,
    side: Side,
    origin: Origin,
    cert: Option<Fingerprint>,
) -> (Request, Response) {
    if side == Side::Https && req.path == POLL_PATH {
        // A poll that changes nothing, from memory, here.
        if let Some(resp) = crate::api::poll_from_memory(state, &req, origin.client, cert) {
            return (req, resp);
        }
        // Polls, by the thousand a second, on the poll workers.
        let polled = on_worker(state, req, "poll", move |st, req| crate::api::route(st, req, side, origin, cert));
        return polled.await.unwrap_or_else(|refused| refused);
    }
    if side == Side::Https && req.path == REPORT_PATH && req.method == "POST" {
        // Checked here if the device's answer is kept, else on a poll
        // worker; recorded by the group commit, which the request awaits
        // holding no thread.
        let (req, checked) = match crate::api::report::check_from_memory(state, &req, origin.client, cert) {
            Some(checked) => (req, checked),
            None => {
                let on = on_worker(state, req, "report", move |st, req| {
                    crate::api::report::check(st, req, origin.client, cert)
                });
                match on.await {
                    Ok(c) => c,
                    Err(refused) => return refused,
                }
            }
        };
        let resp = match checked {
            Ok(c) => crate::api::report::record(state, c).await,
            Err(r) => r,
        };
        return (req, resp);
    }
    let _slot = if req.path == OCS_PATH { Some(state.ocs_slots.acquire().await) } else { None };
    let state = state.clone();
    smol::unblock(move || {
        let resp = crate::api::route(&state, &req, side, origin, cert);
        (req, resp)
    })
    .await
}
