//! `outpost-server serve`: the HTTPS listener (control API, info, manifest,
//! HTTPS fragments) and the HTTP listener (fragments), until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_rustls::TlsAcceptor;
use rustls::ServerConfig as TlsConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use smol::io::{AsyncRead, AsyncWrite, BufReader};
use smol::net::TcpListener;

use crate::config::ServerConfig;
use crate::db::Db;
use crate::http::{self, ReadError, Response};

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
pub enum Side {
    /// The TLS listener (control API, info, manifest, HTTPS fragments).
    Https,
    /// The plain listener (fragments, OCS).
    Http,
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
        let resp = crate::api::route(state, &req, side, peer);
        log::debug!(target: "outpost", "{peer} {side:?} {} {} -> {}", req.method, req.path, resp.status);
        if http::write_response(s.get_mut(), resp, head_only, close).await.is_err() || close {
            return;
        }
    }
}
