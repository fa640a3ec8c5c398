//! The server's own certificate authority, its TLS certificate, and the
//! Ed25519 package-signing key. The server certificate's life after `init`
//! (renewal, names, an existing CA) is [`crate::servercert`]'s.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

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
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Outpost server CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let w = |name: &str, data: String, private: bool| {
        let p = tls.join(name);
        let r = if private { write_private(&p, data.as_bytes()) } else { fs::write(&p, data) };
        r.map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    w("ca-key.pem", ca_key.serialize_pem(), true)?;
    w("ca-cert.pem", ca_cert.pem(), false)?;
    Ok(())
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
