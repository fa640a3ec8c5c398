//! The server certificate while `serve` runs: the rustls certificate
//! resolver every handshake asks, and the watcher that keeps it current
//! without a restart.
//!
//! ```text
//!  every TICK (and once at start), on the blocking pool:
//!   tls/server-{cert,key}.pem changed (inode, size, mtime)? ─► reload under the shared lock;
//!        a pair that does not load or match is logged, and the one before kept serving
//!   due::plan(now) says renew? ─► reissue with the CA key, same names and lifetime,
//!        written atomically, swapped in: new handshakes get it, open connections keep theirs
//!        └ no CA key (offline) or another failure ─► warning: logged at most once an hour,
//!          and shown by GET /admin/v1/health; with the key offline, tried again every TICK
//!          (renewed within TICK of its return), else every hour
//! ```
//!
//! So `tls --add-san` or `tls renew`, another tool replacing the files, or
//! the key coming back, take effect within [`TICK`].

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::ca::{CaError, Why};
use super::due::{self, Plan};
use super::{CA_CERT, CA_KEY, CERT, Issued, KEY, Leaf};
use crate::time::rfc3339;

/// How often the files and the renewal are looked at.
pub const TICK: Duration = Duration::from_secs(5);
/// A warning about the certificate is logged at most this often, seconds.
const WARN_EVERY: u64 = 3_600;
/// A renewal that failed for another reason than an offline CA key is tried again after this, seconds.
const RETRY_AFTER: u64 = 3_600;

/// What identifies the pair on disk: (device, inode, size, mtime ns) of each file.
type Stamp = [(u64, u64, u64, i128); 2];

fn stamp(dir: &Path) -> Option<Stamp> {
    let one = |n: &str| {
        std::fs::metadata(dir.join(n))
            .ok()
            .map(|m| (m.dev(), m.ino(), m.size(), i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())))
    };
    Some([one(CERT)?, one(KEY)?])
}

/// The certificate being served, and what the watcher knows.
pub struct Live {
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    watch: Mutex<Watch>,
}

struct Watch {
    /// The files as last loaded (or last found broken).
    files: Option<Stamp>,
    /// What the served certificate says.
    leaf: Leaf,
    /// Whether the served certificate was issued by `tls/ca-cert.pem` (only then is it renewed).
    ours: bool,
    /// What is wrong, for the health route.
    warning: Option<String>,
    /// When a warning was last logged.
    warned_at: Option<u64>,
    /// The last failed renewal: when, and whether for an offline CA key.
    failed: Option<(u64, bool)>,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Live({})", self.dir.display())
    }
}

impl ResolvesServerCert for Live {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn names(sans: &[super::San]) -> String {
    sans.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

impl Live {
    /// Load `dir`'s pair (finishing a replacement cut short), then do a
    /// first [`Live::tick`]: a certificate due is renewed before the first
    /// handshake.
    pub fn start(dir: &Path, now: u64) -> Result<Arc<Self>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        {
            let _lock = super::lock(dir, true)?;
            super::recover(dir)?;
        }
        let (files, key, leaf, ours) = load(dir, &provider)?;
        log::info!(
            target: "outpost",
            "server certificate for {} issued by {}, valid until {}; renewal due from {}",
            names(&leaf.sans),
            leaf.issuer,
            rfc3339(leaf.not_after),
            rfc3339(due::renew_at(leaf.not_before, leaf.not_after))
        );
        let watch = Watch { files, leaf, ours, warning: None, warned_at: None, failed: None };
        let live =
            Arc::new(Self { dir: dir.to_owned(), provider, current: RwLock::new(key), watch: Mutex::new(watch) });
        live.tick(now);
        Ok(live)
    }

    /// The certificate (chain) and key handshakes get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// What is wrong with the certificate, if anything (for `GET /admin/v1/health`).
    pub fn warning(&self) -> Option<String> {
        self.watch.lock().unwrap_or_else(PoisonError::into_inner).warning.clone()
    }

    /// The served certificate's validity and names.
    pub fn leaf(&self) -> Leaf {
        self.watch.lock().unwrap_or_else(PoisonError::into_inner).leaf.clone()
    }

    fn swap(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }

    /// Reload the files if they changed, then renew or warn as
    /// [`due::plan`] says at `now` (Unix seconds). Blocking: file I/O and
    /// key generation.
    pub fn tick(&self, now: u64) {
        let mut w = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if stamp(&self.dir) != w.files {
            match load(&self.dir, &self.provider) {
                Ok((files, key, leaf, ours)) => {
                    log::info!(
                        target: "outpost",
                        "{CERT} changed: now serving the certificate for {}, valid until {}",
                        names(&leaf.sans),
                        rfc3339(leaf.not_after)
                    );
                    self.swap(key);
                    *w = Watch { files, leaf, ours, warning: None, warned_at: None, failed: None };
                }
                Err(e) => {
                    log::warn!(target: "outpost", "{e}; still serving the certificate loaded before");
                    w.files = stamp(&self.dir);
                }
            }
        }
        let left = match due::plan(w.leaf.not_before, w.leaf.not_after, now) {
            Plan::Keep { .. } => {
                w.warning = None;
                return;
            }
            Plan::Renew { left } => left,
        };
        if w.failed.is_some_and(|(at, offline)| !offline && now < at + RETRY_AFTER) {
            return;
        }
        let renewed = if w.ours {
            self.renew(w.leaf.not_after, now)
        } else {
            Err((
                format!(
                    "it was not issued by {CA_CERT}; replace it where it came from, \
                     or issue one from this server's CA with `outpost-server tls renew`"
                ),
                false,
            ))
        };
        match renewed {
            Ok(issued) => {
                log::info!(
                    target: "outpost",
                    "renewed the server certificate for {}: valid until {} (the one before: until {})",
                    names(&issued.leaf.sans),
                    rfc3339(issued.leaf.not_after),
                    rfc3339(w.leaf.not_after)
                );
                let files = stamp(&self.dir);
                *w = Watch { files, leaf: issued.leaf, ours: true, warning: None, warned_at: None, failed: None };
            }
            Err((e, offline)) => {
                let when = if left == 0 {
                    format!("expired at {}", rfc3339(w.leaf.not_after))
                } else {
                    format!("expires at {} (in {})", rfc3339(w.leaf.not_after), span(left))
                };
                let fix = if offline {
                    format!(
                        "; serve renews it within {} s of the key's return, or run `outpost-server tls renew`",
                        TICK.as_secs()
                    )
                } else {
                    String::new()
                };
                let msg = format!("the server certificate {when} and was not renewed: {e}{fix}");
                if w.warned_at.is_none_or(|t| now >= t + WARN_EVERY) {
                    if left == 0 {
                        log::error!(target: "outpost", "{msg}");
                    } else {
                        log::warn!(target: "outpost", "{msg}");
                    }
                    w.warned_at = Some(now);
                }
                w.warning = Some(msg);
                w.failed = Some((now, offline));
            }
        }
    }

    /// Reissue the certificate and serve it: the error, and whether it is the CA key being offline.
    fn renew(&self, current_end: u64, now: u64) -> Result<Issued, (String, bool)> {
        let ca_key = self.dir.join(CA_KEY);
        if !ca_key.exists() {
            return Err((CaError { path: ca_key, why: Why::Offline }.to_string(), true));
        }
        // A certificate already ending with its CA cannot be renewed into a
        // longer one: say so instead of renewing it over and over.
        let ca_end = super::ca::end(&self.dir).map_err(|e| (e.to_string(), false))?;
        if ca_end <= current_end {
            return Err((
                format!("the CA ends at {}, no later than this certificate: a new CA is needed", rfc3339(ca_end)),
                false,
            ));
        }
        let issued = super::reissue(&self.dir, Ok, None, now).map_err(|e| (e, false))?;
        let key = PrivateKeyDer::Pkcs8(issued.key.clone_key());
        let key =
            CertifiedKey::from_der(issued.chain.clone(), key, &self.provider).map_err(|e| (e.to_string(), false))?;
        self.swap(Arc::new(key));
        Ok(issued)
    }
}

/// "3 days", "5 h", "40 min".
fn span(secs: u64) -> String {
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 3_600 => format!("{} h", s / 3_600),
        s => format!("{} min", s.div_ceil(60)),
    }
}

/// Load the pair on disk under the shared lock: its stamp, the key for
/// rustls (refused unless it belongs to the certificate), what it says,
/// whether this server's CA issued it.
fn load(dir: &Path, provider: &CryptoProvider) -> Result<(Option<Stamp>, Arc<CertifiedKey>, Leaf, bool), String> {
    let _lock = super::lock(dir, false)?;
    let files = stamp(dir);
    let (certs, key) = super::read_pair(dir)?;
    let leaf = Leaf::read(&certs[0]).map_err(|e| format!("{CERT}: {e}"))?;
    let ours = super::ca::signed_by(&dir.join(CA_CERT), &certs[0]);
    let key = CertifiedKey::from_der(certs, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!("{KEY} does not belong to {CERT}"),
        e => format!("{CERT}, {KEY}: {e}"),
    })?;
    Ok((files, Arc::new(key), leaf, ours))
}

/// Serve `live`'s watcher: a [`Live::tick`] every [`TICK`], on the blocking pool.
pub async fn watch(live: Arc<Live>) {
    loop {
        smol::Timer::after(TICK).await;
        let l = live.clone();
        smol::unblock(move || l.tick(crate::time::unix_now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_well() {
        assert_eq!(span(30 * 86_400), "30 days");
        assert_eq!(span(86_400 + 7_200), "26 h");
        assert_eq!(span(61), "2 min");
    }
}
