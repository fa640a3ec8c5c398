//! The server's TLS identity over its life: the CA that signs it ([`ca`]:
//! `init`'s own, or an existing one, possibly an intermediate whose root
//! stays offline), the server certificate issued for the server's names,
//! its renewal before it expires ([`due`], done by `serve`'s [`live`]
//! watcher or by `tls renew`), and changes of its names (`tls --add-san`).
//!
//! ```text
//!  init ─► tls/ca-cert.pem + ca-key.pem   the issuing CA (the key may go offline)
//!          tls/ca-chain.pem               above it, to the root (intermediate CA only)
//!   issue: new key, leaf for the names, checked against what agents trust
//!     └─► tls/server-key.pem, server-cert.pem (leaf [+ intermediate]), replaced atomically
//!  serve: live::Live (the rustls certificate resolver) ◄── every TICK:
//!           files changed on disk? reload · due::plan(now): renew, or warn if the CA key is offline
//!  device add: agents get anchors_pem(): tls/ca-chain.pem if there is one, else tls/ca-cert.pem
//! ```
//!
//! The CA's private key is read only to issue: by `init`, `tls`, and by
//! `serve` when the certificate is due. Everything else works without it.

pub mod ca;
pub mod due;
pub mod live;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub use ca::{Ca, CaError};

/// The issuing CA's certificate.
pub const CA_CERT: &str = "tls/ca-cert.pem";
/// The issuing CA's private key (may be kept offline).
pub const CA_KEY: &str = "tls/ca-key.pem";
/// The certificates above an intermediate issuing CA, up to the root: what agents get.
pub const CA_CHAIN: &str = "tls/ca-chain.pem";
/// The server certificate, then the intermediates the server sends.
pub const CERT: &str = "tls/server-cert.pem";
/// The server certificate's private key.
pub const KEY: &str = "tls/server-key.pem";
/// A new pair is written under these names, then renamed over [`KEY`] then [`CERT`].
const KEY_NEW: &str = "tls/server-key.pem.new";
const CERT_NEW: &str = "tls/server-cert.pem.new";

/// Lifetime of a server certificate `init` issues, days (`init --cert-days`).
pub const DEFAULT_DAYS: u32 = 365;
/// A certificate starts this long before it is issued (clocks a little behind), seconds.
const BACKDATE: u64 = 3_600;
/// The shortest lifetime issued, seconds.
const MIN_SPAN: u64 = 86_400;

/// A name the server certificate is for: a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// A DNS name, lower case.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl San {
    /// Parse `s`: an IP address, else a DNS name agents can connect to.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse() {
            return Ok(San::Ip(ip));
        }
        match ServerName::try_from(s) {
            Ok(ServerName::DnsName(_)) if !s.is_empty() => Ok(San::Dns(s.to_ascii_lowercase())),
            _ => Err(format!("{s:?} is neither a DNS name nor an IP address")),
        }
    }

    fn to_rcgen(&self) -> Result<SanType, String> {
        Ok(match self {
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Dns(d) => SanType::DnsName(d.clone().try_into().map_err(|e| format!("{d}: {e}"))?),
        })
    }

    fn server_name(&self) -> Result<ServerName<'static>, String> {
        match self {
            San::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
            San::Dns(d) => ServerName::try_from(d.clone()).map_err(|_| format!("{d:?} is not a DNS name")),
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(d) => f.write_str(d),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Parse names, refusing none at all, and dropping repeats.
pub fn parse_sans(names: &[String]) -> Result<Vec<San>, String> {
    let mut out: Vec<San> = Vec::new();
    for n in names {
        let s = San::parse(n)?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err("a server certificate needs at least one name".into());
    }
    Ok(out)
}

/// What the server reads from its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Validity, Unix seconds.
    pub not_before: u64,
    /// Validity, Unix seconds.
    pub not_after: u64,
    /// Its DNS and IP subjectAltNames (other kinds are not kept).
    pub sans: Vec<San>,
    /// Its issuer, as text.
    pub issuer: String,
}

impl Leaf {
    /// Read a certificate's validity, names and issuer.
    pub fn read(der: &[u8]) -> Result<Self, String> {
        let (_, x) = X509Certificate::from_der(der).map_err(|e| format!("not a valid certificate: {e}"))?;
        let time = |t: &x509_parser::time::ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = x.subject_alternative_name() {
            for n in &ext.value.general_names {
                match n {
                    GeneralName::DNSName(d) => sans.push(San::Dns(d.to_ascii_lowercase())),
                    GeneralName::IPAddress(b) => match <[u8; 4]>::try_from(*b) {
                        Ok(v4) => sans.push(San::Ip(v4.into())),
                        Err(_) => sans.extend(<[u8; 16]>::try_from(*b).ok().map(|v6| San::Ip(v6.into()))),
                    },
                    _ => {}
                }
            }
        }
        Ok(Self {
            not_before: time(&x.validity().not_before),
            not_after: time(&x.validity().not_after),
            sans,
            issuer: x.issuer().to_string(),
        })
    }
}

/// A server certificate just issued, not yet written.
pub struct Issued {
    /// The certificate, then the intermediates the server sends.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key, PKCS#8.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// What it says.
    pub leaf: Leaf,
}

/// PEM of `der` labelled `label`, with `\n` line ends.
fn pem_block(label: &str, der: &[u8]) -> String {
    let lf = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new(label, der.to_vec()), lf)
}

/// PEM of `certs`, one after the other.
pub fn pem(certs: &[CertificateDer<'_>]) -> String {
    certs.iter().map(|c| pem_block("CERTIFICATE", c)).collect()
}

/// Issue a server certificate for `sans` from `ca`, valid for `span`
/// seconds from an hour before `now` (at least a day, at most until the CA
/// expires), with a new key; then check that what the server will send
/// verifies for each name against what agents trust ([`Ca::anchors`]).
pub fn issue(ca: &Ca, sans: &[San], span: u64, now: u64) -> Result<Issued, String> {
    let err = |e: rcgen::Error| format!("certificate generation failed: {e}");
    let first = sans.first().ok_or("a server certificate needs at least one name")?;
    let not_before = now.saturating_sub(BACKDATE);
    let not_after = not_before.saturating_add(span.max(MIN_SPAN)).min(ca.not_after);
    if not_after <= now.saturating_add(BACKDATE) {
        return Err(format!(
            "the CA expires at {}: a certificate it issues would end then; a new CA is needed",
            crate::time::rfc3339(ca.not_after)
        ));
    }
    let key = KeyPair::generate().map_err(err)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.to_string());
    p.distinguished_name = dn;
    p.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    let at = |t: u64| time::OffsetDateTime::from_unix_timestamp(t as i64).map_err(|e| e.to_string());
    p.not_before = at(not_before)?;
    p.not_after = at(not_after)?;
    let cert = p.signed_by(&key, &ca.issuer, &ca.key).map_err(err)?;
    let mut chain = vec![cert.der().clone()];
    chain.extend(ca.sent());
    verify(&chain, ca.anchors(), sans, now)?;
    let leaf = Leaf::read(&chain[0])?;
    Ok(Issued { chain, key: PrivatePkcs8KeyDer::from(key.serialize_der()), leaf })
}

/// Whether `chain` (leaf first) verifies for every name in `sans` against
/// `anchors` at `now`, as an agent holding `anchors` checks it.
pub fn verify(
    chain: &[CertificateDer<'_>],
    anchors: &[CertificateDer<'static>],
    sans: &[San],
    now: u64,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for a in anchors {
        roots.add(a.clone()).map_err(|e| format!("a CA certificate agents would trust is unusable: {e}"))?;
    }
    let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let (leaf, intermediates) = chain.split_first().ok_or("no certificate")?;
    let cert = rustls::server::ParsedCertificate::try_from(leaf).map_err(|e| e.to_string())?;
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now));
    rustls::client::verify_server_cert_signed_by_trust_anchor(&cert, &roots, intermediates, now, algs.all)
        .map_err(|e| format!("the server certificate would not verify against the CA that agents get: {e}"))?;
    for s in sans {
        rustls::client::verify_server_name(&cert, &s.server_name()?)
            .map_err(|e| format!("the server certificate would not verify for {s}: {e}"))?;
    }
    Ok(())
}

/// Hold `dir/tls/` locked (shared to read the pair, exclusive to replace
/// it) until the returned file is dropped.
pub fn lock(dir: &Path, exclusive: bool) -> Result<File, String> {
    let tls = dir.join("tls");
    let f = File::open(&tls).map_err(|e| format!("{}: {e}", tls.display()))?;
    let r = if exclusive { f.lock() } else { f.lock_shared() };
    r.map_err(|e| format!("cannot lock {}: {e}", tls.display()))?;
    Ok(f)
}

fn write_synced(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    // A new file (O_EXCL: no leftover keeps its mode, no link is followed);
    // [`recover`] has removed what a replacement cut short left.
    let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Replace the server's pair with `issued`, atomically for a reader
/// holding [`lock`] and across a crash ([`recover`] finishes or undoes a
/// replacement cut short): both new files are written and synced, then the
/// key is renamed into place, then the certificate. The caller holds the
/// exclusive lock.
pub fn write(dir: &Path, issued: &Issued) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("cannot write {what}: {e}");
    let key_pem = pem_block("PRIVATE KEY", issued.key.secret_pkcs8_der());
    write_synced(&dir.join(KEY_NEW), key_pem.as_bytes(), 0o600).map_err(|e| err(KEY_NEW, e))?;
    write_synced(&dir.join(CERT_NEW), pem(&issued.chain).as_bytes(), 0o644).map_err(|e| err(CERT_NEW, e))?;
    fs::rename(dir.join(KEY_NEW), dir.join(KEY)).map_err(|e| err(KEY, e))?;
    fs::rename(dir.join(CERT_NEW), dir.join(CERT)).map_err(|e| err(CERT, e))?;
    File::open(dir.join("tls")).and_then(|d| d.sync_all()).map_err(|e| err("tls/", e))
}

/// Finish or undo a [`write()`] cut short, under the exclusive lock: a new
/// key not yet renamed means the old pair is whole (the new files go); a
/// new certificate alone means the key was renamed (the certificate follows).
pub fn recover(dir: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot finish replacing the server certificate: {e}");
    if dir.join(KEY_NEW).exists() {
        fs::remove_file(dir.join(KEY_NEW)).map_err(err)?;
        if dir.join(CERT_NEW).exists() {
            fs::remove_file(dir.join(CERT_NEW)).map_err(err)?;
        }
    } else if dir.join(CERT_NEW).exists() {
        fs::rename(dir.join(CERT_NEW), dir.join(CERT)).map_err(err)?;
        log::warn!(target: "outpost", "finished replacing {CERT}, cut short before");
    }
    Ok(())
}

/// The server's pair as it is on disk: certificate chain and key. The
/// caller holds [`lock`].
pub fn read_pair(dir: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let read = |n: &str| fs::read(dir.join(n)).map_err(|e| format!("cannot read {n}: {e}"));
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &read(CERT)?[..]).collect::<Result<_, _>>().map_err(|e| format!("{CERT}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{CERT} holds no certificate"));
    }
    let key = rustls_pemfile::private_key(&mut &read(KEY)?[..])
        .map_err(|e| format!("{KEY}: {e}"))?
        .ok_or_else(|| format!("{KEY} holds no key"))?;
    Ok((certs, key))
}

/// Issue the server certificate of `dir` again with the CA's key, for the
/// names `edit` makes of the current ones, valid for `days` (default: as
/// long as the current one), and put it in place, all under the exclusive
/// lock. Returns what was issued; a running `serve` picks the files up by
/// itself ([`live`]).
pub fn reissue(
    dir: &Path,
    edit: impl FnOnce(Vec<San>) -> Result<Vec<San>, String>,
    days: Option<u32>,
    now: u64,
) -> Result<Issued, String> {
    let _lock = lock(dir, true)?;
    recover(dir)?;
    let (certs, _) = read_pair(dir)?;
    let current = Leaf::read(&certs[0]).map_err(|e| format!("{CERT}: {e}"))?;
    let span = match days {
        Some(d) => u64::from(d) * 86_400,
        None => current.not_after.saturating_sub(current.not_before),
    };
    let sans = edit(current.sans)?;
    let ca = Ca::load(dir, now).map_err(|e| e.to_string())?;
    let issued = issue(&ca, &sans, span, now)?;
    write(dir, &issued)?;
    Ok(issued)
}

/// Put `issued` in place in a new server directory.
pub fn install(dir: &Path, issued: &Issued) -> Result<(), String> {
    let _lock = lock(dir, true)?;
    write(dir, issued)
}

/// Issue the first server certificate of a new server directory and write it.
pub fn create(dir: &Path, ca: &Ca, sans: &[San], days: u32, now: u64) -> Result<(), String> {
    install(dir, &issue(ca, sans, u64::from(days) * 86_400, now)?)
}

/// The CA certificates agents are given (`device add`): `tls/ca-chain.pem`
/// when the server's CA is an intermediate, else `tls/ca-cert.pem`.
pub fn anchors_pem(dir: &Path) -> Result<String, String> {
    let chain = dir.join(CA_CHAIN);
    let name = if chain.exists() { CA_CHAIN } else { CA_CERT };
    fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
mod tests;
