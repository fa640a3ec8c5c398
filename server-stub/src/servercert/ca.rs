//! The CA that issues the server certificate: the one `init` makes, or an
//! existing one (`init --ca-cert FILE --ca-key FILE`, with `--ca-chain FILE`
//! for an intermediate whose root stays offline), checked before anything
//! is written: a CA certificate allowed to sign certificates, valid now, and
//! the private key that belongs to it.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{CA_CERT, CA_CHAIN, CA_KEY};
use crate::time::rfc3339;

/// Why a CA cannot be used, and the file that says so.
#[derive(Debug)]
pub struct CaError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: Why,
}

/// What is wrong with a CA file.
#[derive(Debug, PartialEq, Eq)]
pub enum Why {
    /// It cannot be read; for the CA key, [`Why::Offline`] instead.
    Unreadable(String),
    /// The CA key is not there (kept offline).
    Offline,
    /// No PEM certificate in it.
    NoCertificate,
    /// More than one certificate where one is expected.
    SeveralCertificates(usize),
    /// A certificate that does not parse.
    BadCertificate(String),
    /// Not a CA: no basicConstraints CA:TRUE.
    NotCa,
    /// A CA whose keyUsage does not include keyCertSign.
    NoCertSign,
    /// Outside its validity period: (notBefore, notAfter), Unix seconds.
    NotValidNow(u64, u64),
    /// No usable private key: the text says which kind it is, or that none is there.
    BadKey(&'static str),
    /// The key is not the certificate's.
    KeyMismatch,
    /// The CA's subject name cannot be written back byte for byte.
    NameNotReproducible,
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for CaError {}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Unreadable(e) => write!(f, "cannot read it: {e}"),
            Why::Offline => f.write_str(
                "the CA key is not on this server (kept offline?): \
                 bring it back, mode 0600, to issue a server certificate",
            ),
            Why::NoCertificate => f.write_str("holds no PEM certificate"),
            Why::SeveralCertificates(n) => write!(
                f,
                "holds {n} certificates: give the issuing CA's alone, and the certificates above it with --ca-chain"
            ),
            Why::BadCertificate(e) => write!(f, "not a valid X.509 certificate: {e}"),
            Why::NotCa => {
                f.write_str("not a CA certificate (no basicConstraints CA:TRUE): it cannot issue certificates")
            }
            Why::NoCertSign => f.write_str("a CA whose keyUsage does not allow signing certificates (no keyCertSign)"),
            Why::NotValidNow(from, to) => {
                write!(f, "not valid now: valid from {} to {}", rfc3339(*from), rfc3339(*to))
            }
            Why::BadKey(what) => write!(f, "{what}"),
            Why::KeyMismatch => {
                f.write_str("this private key does not belong to the CA certificate (their public keys differ)")
            }
            Why::NameNotReproducible => f.write_str(
                "the CA's subject name cannot be reproduced in the certificates it issues \
                 (several attributes in one RDN, or one attribute type twice)",
            ),
        }
    }
}

/// A CA certificate's parts that matter here.
struct Parsed {
    subject: Vec<u8>,
    issuer: Vec<u8>,
    not_before: u64,
    not_after: u64,
    public_key: Vec<u8>,
    is_ca: bool,
    cert_sign: bool,
}

fn parse(der: &[u8]) -> Result<Parsed, Why> {
    let (_, x) = X509Certificate::from_der(der).map_err(|e| Why::BadCertificate(e.to_string()))?;
    let time = |t: &x509_parser::time::ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
    let cert_sign = match x.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true,
        Err(e) => return Err(Why::BadCertificate(e.to_string())),
    };
    let is_ca = x.basic_constraints().map_err(|e| Why::BadCertificate(e.to_string()))?.is_some_and(|b| b.value.ca);
    Ok(Parsed {
        subject: x.subject().as_raw().to_vec(),
        issuer: x.issuer().as_raw().to_vec(),
        not_before: time(&x.validity().not_before),
        not_after: time(&x.validity().not_after),
        public_key: x.public_key().subject_public_key.data.to_vec(),
        is_ca,
        cert_sign,
    })
}

/// The PEM certificates of `path`, at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let err = |why| CaError { path: path.to_owned(), why };
    let pem = fs::read(path).map_err(|e| err(Why::Unreadable(e.to_string())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| err(Why::BadCertificate(e.to_string())))?;
    if certs.is_empty() {
        return Err(err(Why::NoCertificate));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let err = |why| CaError { path: path.to_owned(), why };
    let pem = match fs::read(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(err(Why::Offline)),
        Err(e) => return Err(err(Why::Unreadable(e.to_string()))),
    };
    let key = match rustls_pemfile::private_key(&mut &pem[..]) {
        Ok(Some(k @ PrivateKeyDer::Pkcs8(_))) => k,
        Ok(Some(PrivateKeyDer::Pkcs1(_))) => {
            return Err(err(Why::BadKey("a PKCS#1 RSA key: give it as PKCS#8 (openssl pkcs8 -topk8 -nocrypt)")));
        }
        Ok(Some(PrivateKeyDer::Sec1(_))) => {
            return Err(err(Why::BadKey("a SEC1 EC key: give it as PKCS#8 (openssl pkcs8 -topk8 -nocrypt)")));
        }
        _ => {
            return Err(err(Why::BadKey(
                "holds no unencrypted PEM private key (decrypt an encrypted one: openssl pkcs8 -topk8 -nocrypt)",
            )));
        }
    };
    KeyPair::try_from(&key).map_err(|_| {
        err(Why::BadKey("an unsupported key: use ECDSA P-256 or P-384, Ed25519, or RSA of 2048 bits or more"))
    })
}

/// The error for `path`.
fn at(path: &Path) -> impl Fn(Why) -> CaError + '_ {
    move |why| CaError { path: path.to_owned(), why }
}

/// Whether `p` is self-signed by name (a root).
fn self_issued(p: &Parsed) -> bool {
    p.subject == p.issuer
}

/// The CA that issues the server certificate, with its key.
pub struct Ca {
    /// Its certificate.
    pub(super) der: CertificateDer<'static>,
    /// The certificates above it (`--ca-chain`), up to and including the root; empty for a root.
    pub(super) chain: Vec<CertificateDer<'static>>,
    /// The earliest `notAfter` of it and its chain: nothing it issues can outlive this.
    pub(super) not_after: u64,
    /// rcgen's view of it, as issuer.
    pub(super) issuer: rcgen::Certificate,
    /// Its private key.
    pub(super) key: KeyPair,
}

impl Ca {
    /// Load and check the CA in `cert` (one PEM certificate), `key` (its
    /// PKCS#8 private key) and `chain` (the certificates above it, if it is
    /// an intermediate), at `now`.
    pub fn from_files(cert: &Path, key: &Path, chain: Option<&Path>, now: u64) -> Result<Self, CaError> {
        let mut certs = read_certs(cert)?;
        if certs.len() > 1 {
            return Err(at(cert)(Why::SeveralCertificates(certs.len())));
        }
        let der = certs.remove(0);
        let p = parse(&der).map_err(at(cert))?;
        if !p.is_ca {
            return Err(at(cert)(Why::NotCa));
        }
        if !p.cert_sign {
            return Err(at(cert)(Why::NoCertSign));
        }
        if !(p.not_before..=p.not_after).contains(&now) {
            return Err(at(cert)(Why::NotValidNow(p.not_before, p.not_after)));
        }
        let mut not_after = p.not_after;
        let chain = match chain {
            None => Vec::new(),
            Some(path) => {
                let certs = read_certs(path)?;
                for c in &certs {
                    let q = parse(c).map_err(at(path))?;
                    if !(q.not_before..=q.not_after).contains(&now) {
                        return Err(at(path)(Why::NotValidNow(q.not_before, q.not_after)));
                    }
                    not_after = not_after.min(q.not_after);
                }
                certs
            }
        };
        let key_path = key;
        let key = read_key(key_path)?;
        if key.public_key_raw() != p.public_key {
            return Err(at(key_path)(Why::KeyMismatch));
        }
        let params = CertificateParams::from_ca_cert_der(&der).map_err(|_| at(cert)(Why::NameNotReproducible))?;
        let issuer = params.self_signed(&key).map_err(|e| at(cert)(Why::BadCertificate(e.to_string())))?;
        if parse(issuer.der()).map_err(at(cert))?.subject != p.subject {
            return Err(at(cert)(Why::NameNotReproducible));
        }
        Ok(Self { der, chain, not_after, issuer, key })
    }

    /// The CA of server directory `dir` (`tls/ca-cert.pem`, `tls/ca-key.pem`,
    /// and `tls/ca-chain.pem` if there is one). [`Why::Offline`] if the key is not there.
    pub fn load(dir: &Path, now: u64) -> Result<Self, CaError> {
        let chain = dir.join(CA_CHAIN);
        Self::from_files(&dir.join(CA_CERT), &dir.join(CA_KEY), chain.exists().then_some(chain.as_path()), now)
    }

    /// The certificates the server sends after its own: this CA and those
    /// of its chain that are not roots, when it has a chain; else none
    /// (agents hold this CA itself).
    pub fn sent(&self) -> Vec<CertificateDer<'static>> {
        if self.chain.is_empty() {
            return Vec::new();
        }
        let above = self.chain.iter().filter(|c| parse(c).is_ok_and(|p| !self_issued(&p)));
        std::iter::once(&self.der).chain(above).cloned().collect()
    }

    /// Sign `params` for the holder of `key` (a device's client certificate).
    pub fn sign(&self, params: CertificateParams, key: &KeyPair) -> Result<rcgen::Certificate, rcgen::Error> {
        params.signed_by(key, &self.issuer, &self.key)
    }

    /// What agents trust: the chain (`--ca-chain`, the root), or this CA.
    pub fn anchors(&self) -> &[CertificateDer<'static>] {
        if self.chain.is_empty() { std::slice::from_ref(&self.der) } else { &self.chain }
    }

    /// Write the CA into `dir/tls/` (0700): `ca-cert.pem`, `ca-key.pem`
    /// (0600, never over an existing one) and, for an intermediate, `ca-chain.pem`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let tls = dir.join("tls");
        crate::pki::create_private_dir(&tls)?;
        let wr = |name: &str, r: std::io::Result<()>| {
            r.map_err(|e| format!("cannot write {}: {e}", dir.join(name).display()))
        };
        wr(CA_KEY, crate::pki::write_private(&dir.join(CA_KEY), self.key.serialize_pem().as_bytes()))?;
        wr(CA_CERT, fs::write(dir.join(CA_CERT), super::pem(std::slice::from_ref(&self.der))))?;
        if !self.chain.is_empty() {
            wr(CA_CHAIN, fs::write(dir.join(CA_CHAIN), super::pem(&self.chain)))?;
        }
        Ok(())
    }
}

/// Whether `leaf` (DER) bears the signature of the CA certificate in
/// `path`: only such a certificate is renewed by `serve` (one put in place
/// from elsewhere is left alone).
pub fn signed_by(path: &Path, leaf: &[u8]) -> bool {
    let Ok(certs) = read_certs(path) else { return false };
    let (Ok((_, ca)), Ok((_, leaf))) = (X509Certificate::from_der(&certs[0]), X509Certificate::from_der(leaf)) else {
        return false;
    };
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// The earliest `notAfter` of `dir`'s CA and its chain (no key needed):
/// no server certificate it issues can end later.
pub fn end(dir: &Path) -> Result<u64, CaError> {
    let chain = dir.join(CA_CHAIN);
    let mut files = vec![dir.join(CA_CERT)];
    if chain.exists() {
        files.push(chain);
    }
    let mut end = u64::MAX;
    for f in &files {
        for c in read_certs(f)? {
            end = end.min(parse(&c).map_err(at(f))?.not_after);
        }
    }
    Ok(end)
}
