//! The server's own certificate authority, its TLS certificate, the
//! devices' client certificates, and the Ed25519 package-signing key.
//!
//! A device's client certificate (`device add`, `device rotate`) names the
//! device in its common name, is for client authentication only, and is
//! signed by the CA's key `tls/ca-key.pem`. The server recognises it by its
//! SHA-256 fingerprint, recorded for that device (`db/credentials.rs`): a
//! certificate of another device, an older one of the same device, or one
//! the CA signed that the server never recorded, does not authenticate
//! anyone.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use outpost_agent::engine::manifest::sha256;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

/// The SHA-256 of a certificate's DER: how the server recognises a device's
/// client certificate.
pub type Fingerprint = [u8; 32];

use crate::servercert;

/// Write a file readable by its owner only; refuse to replace one.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Create a directory for secrets, mode 0700 (an existing one keeps its mode).
pub fn create_private_dir(path: &Path) -> Result<(), String> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Create `DIR/tls/{ca-cert,ca-key,server-cert,server-key}.pem` for `sans`
/// (`tls/` 0700, keys 0600): a new CA ([`create_ca`]), and a server
/// certificate from it valid for [`servercert::DEFAULT_DAYS`], which `serve`
/// renews with the CA key ([`servercert::live`]).
pub fn create_tls(dir: &Path, sans: &[String]) -> Result<(), String> {
    create_ca(dir)?;
    let now = crate::time::unix_now();
    let ca = servercert::Ca::load(dir, now).map_err(|e| e.to_string())?;
    servercert::create(dir, &ca, &servercert::parse_sans(sans)?, servercert::DEFAULT_DAYS, now)
}

/// Create a new CA, `DIR/tls/{ca-cert,ca-key}.pem` (`tls/` 0700, the key
/// 0600): ECDSA P-256, "Outpost server CA", valid until 2049, allowed to
/// sign end-entity certificates only (pathLen 0).
pub fn create_ca(dir: &Path) -> Result<(), String> {
    let tls = dir.join("tls");
    create_private_dir(&tls)?;
    let err = |e: rcgen::Error| format!("certificate generation failed: {e}");

    let ca_key = KeyPair::generate().map_err(err)?;
    // 2024-01-01 to 2049-12-31.
    let ca_cert = ca_params("Outpost server CA", 1_704_067_200, 2_524_521_600).self_signed(&ca_key).map_err(err)?;

    let w = |name: &str, data: String, private: bool| {
        let p = tls.join(name);
        let r = if private { write_private(&p, data.as_bytes()) } else { fs::write(&p, data) };
        r.map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    w("ca-key.pem", ca_key.serialize_pem(), true)?;
    w("ca-cert.pem", ca_cert.pem(), false)?;
    Ok(())
}

/// The parameters of the CA `init` makes. Client certificates are signed
/// by whatever CA `tls/` holds (this one or an existing one given to
/// `init`), through [`servercert::Ca`].
pub(crate) fn ca_params(cn: &str, not_before: u64, not_after: u64) -> CertificateParams {
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let date = |secs| {
        let [y, m, d, ..] = outpost_agent::engine::civil::civil(secs);
        rcgen::date_time_ymd(y as i32, m as u8, d as u8)
    };
    ca.not_before = date(not_before);
    ca.not_after = date(not_after);
    ca
}

/// A device's client certificate and its private key.
pub struct DeviceCert {
    /// The certificate, DER.
    pub cert: Vec<u8>,
    /// Its private key (ECDSA P-256), PKCS#8 DER.
    pub key: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The key, PEM.
    pub key_pem: String,
}

impl DeviceCert {
    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        sha256(&self.cert)
    }
}

/// Issue `device`'s client certificate with the CA's key `DIR/tls/ca-key.pem`;
/// `Ok(None)` when the key is not there (kept offline, see
/// [`crate::files::CA_KEY_HELP`]). The certificate is checked to chain to
/// `DIR/tls/ca-cert.pem` before it is returned.
pub fn issue_device_cert(dir: &Path, device: &str) -> Result<Option<DeviceCert>, String> {
    let key_path = dir.join("tls/ca-key.pem");
    let ca = match servercert::Ca::load(dir, crate::time::unix_now()) {
        Ok(ca) => ca,
        Err(e) if e.why == servercert::ca::Why::Offline => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let err = |e: rcgen::Error| format!("client certificate for {device:?}: {e}");
    let key = KeyPair::generate().map_err(err)?;
    let mut leaf = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, device);
    leaf.distinguished_name = dn;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.not_before = rcgen::date_time_ymd(2024, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let cert = ca.sign(leaf, &key).map_err(err)?;
    let verifier = client_verifier(dir)?;
    verifier.verify_client_cert(cert.der(), &[], UnixTime::now()).map_err(|e| {
        format!(
            "{} did not sign a certificate that tls/ca-cert.pem accepts ({e}): is it that CA's key?",
            key_path.display()
        )
    })?;
    Ok(Some(DeviceCert {
        cert: cert.der().to_vec(),
        key: key.serialize_der(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }))
}

/// The verifier of client certificates: a certificate presented must chain
/// to the CA (`DIR/tls/ca-cert.pem`, or during and after a CA rollover the
/// previous and the next one, `tls/ca-old-cert.pem` and `tls/ca-next-cert.pem`,
/// so that devices keep their certificates across it) and its holder must
/// prove its key; a client may also present none (OCS agents, older agents;
/// whether the control API then refuses it is `[security] require_client_cert`).
pub fn client_verifier(dir: &Path) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for name in ["tls/ca-cert.pem", "tls/ca-old-cert.pem", "tls/ca-next-cert.pem"] {
        let p = dir.join(name);
        let pem = match fs::read(&p) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name != "tls/ca-cert.pem" => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
        };
        for c in rustls_pemfile::certs(&mut &pem[..]) {
            let c: CertificateDer<'static> = c.map_err(|e| format!("{}: {e}", p.display()))?;
            roots.add(c).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))
}

/// Create the package-signing key `DIR/keys/signing.pk8` (PKCS#8, 0600, in `keys/` 0700).
pub fn create_signing_key(dir: &Path) -> Result<(), String> {
    let keys = dir.join("keys");
    create_private_dir(&keys)?;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "key generation failed".to_string())?;
    write_private(&keys.join("signing.pk8"), pkcs8.as_ref()).map_err(|e| format!("cannot write signing key: {e}"))
}

/// Load the package-signing key.
pub fn signing_key(dir: &Path) -> Result<Ed25519KeyPair, String> {
    let p = dir.join("keys/signing.pk8");
    let bytes = fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| format!("{} is not an Ed25519 PKCS#8 key", p.display()))
}

/// Hex of the package-signing public key.
pub fn signing_public_hex(dir: &Path) -> Result<String, String> {
    Ok(outpost_agent::engine::digest::hex(signing_key(dir)?.public_key().as_ref()))
}
