//! CA and package-signing key rollover: the trust bundle the server
//! publishes (`outpost_agent::engine::trust`), `keys rotate`, `ca rotate`
//! and `ca switch`. The procedure, and why its order cuts no agent off, is
//! in `docs/rollover.md`.
//!
//! ```text
//!  keys rotate ─► keys/signing.pk8 new; the old one kept as keys/retired-<id>.pk8
//!  ca rotate   ─► tls/ca-next-{cert,key}.pem: a new CA, published, not yet used
//!       │          └─► trust/bundle version N+1: every CA and key still valid,
//!       │              signed by every key still valid (the old vouches for the new)
//!       ▼  (agents fetch it at their next poll: `trust version=N+1`)
//!  ca switch   ─► tls/server-{cert,key}.pem re-issued under the new CA, the
//!                 same names; the new CA becomes tls/ca-{cert,key}.pem, the old
//!                 one tls/ca-old-{cert,key}.pem; restart `serve` to present it
//! ```
//!
//! The bundle is made and signed here, by the commands; `serve` only reads
//! it (its version for the poll replies, its bytes for `POST /api/v1/trust`).

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use outpost_agent::engine::civil;
use outpost_agent::engine::digest::hex;
use outpost_agent::engine::limits::{MAX_TRUST_CAS, MAX_TRUST_KEYS};
use outpost_agent::engine::trust::{Bundle, Signature, TrustedCa, TrustedKey};
use outpost_agent::engine::x509::Tbs;
use outpost_hal::linux::{sync_dir, write_atomic};
use rcgen::KeyPair;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use crate::pki::{self, write_private};
use crate::servercert;
use crate::time::unix_now;

/// The published bundle, under DIR.
pub const BUNDLE: &str = "trust/bundle";
/// The current package-signing key (`pki`'s), under DIR.
const SIGNING_KEY: &str = "keys/signing.pk8";
/// The staged CA of a rollover, under DIR: published, not yet signing the
/// server's certificate.
const NEXT_CA: (&str, &str) = ("tls/ca-next-cert.pem", "tls/ca-next-key.pem");
/// The CA in use, under DIR (`pki`'s).
const CA: (&str, &str) = ("tls/ca-cert.pem", "tls/ca-key.pem");
/// The CA before the last switch, under DIR.
const OLD_CA: (&str, &str) = ("tls/ca-old-cert.pem", "tls/ca-old-key.pem");
/// The chain above the previous CA, if it was an intermediate.
const OLD_CHAIN: &str = "tls/ca-old-chain.pem";

fn at(p: &Path) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{}: {e}", p.display())
}

/// The version of the bundle `dir` publishes (0: none): what a poll reply
/// announces. Read at every poll, so a rotation needs no restart.
pub fn published_version(dir: &Path) -> u64 {
    fs::read(dir.join(BUNDLE)).ok().and_then(|b| Bundle::peek_version(&b)).unwrap_or(0)
}

/// [`published_version`] remembered by the bundle file's identity (inode,
/// size, modification time): a poll costs one `stat`, not a read and a
/// decode. A bundle published with `trust publish` (a new file, renamed in
/// place) is seen at the next poll.
#[derive(Default)]
pub struct VersionCache(std::sync::Mutex<Option<(FileId, u64)>>);

/// A file's inode, size and modification time (seconds, nanoseconds).
type FileId = (u64, u64, i64, i64);

impl VersionCache {
    /// The version `dir` publishes now (0: none).
    pub fn get(&self, dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = fs::metadata(dir.join(BUNDLE)) else { return 0 };
        let id = (m.ino(), m.len(), m.mtime(), m.mtime_nsec());
        if let Ok(Some((known, v))) = self.0.lock().as_deref()
            && *known == id
        {
            return *v;
        }
        let v = published_version(dir);
        if let Ok(mut c) = self.0.lock() {
            *c = Some((id, v));
        }
        v
    }
}

/// The published bundle's bytes, `None` if there is none.
pub fn published(dir: &Path) -> Option<Vec<u8>> {
    fs::read(dir.join(BUNDLE)).ok()
}

/// The PEM `device add` gives a new agent as `server.ca_cert`: every CA the
/// bundle lists and that is still valid (old and new during a rollover), or
/// when there is no bundle what [`crate::servercert::anchors_pem`] says.
pub fn agent_ca_pem(dir: &Path) -> Result<String, String> {
    let cas = match published(dir) {
        Some(b) => Bundle::decode(&b).map_err(|e| format!("{BUNDLE}: {e}"))?.0.cas,
        None => Vec::new(),
    };
    let now = unix_now();
    let pems: Vec<String> = cas.into_iter().filter(|c| now < c.until).map(|c| c.pem).collect();
    if pems.is_empty() {
        // The root alone for an intermediate CA (`init --ca-chain`).
        return servercert::anchors_pem(dir);
    }
    Ok(pems.join("\n"))
}

/// The certificates of a PEM file, each as its own PEM text and DER.
fn certs_of(path: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let text = fs::read_to_string(path).map_err(at(path))?;
    let mut out = Vec::new();
    for block in text.split_inclusive("-----END CERTIFICATE-----") {
        let Some(start) = block.find(BEGIN) else { continue };
        let pem = &block[start..];
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().and_then(Result::ok);
        let der = der.ok_or_else(|| format!("{}: a certificate is not valid PEM", path.display()))?;
        out.push((format!("{pem}\n"), der.to_vec()));
    }
    if out.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(out)
}

/// A CA entry for the bundle, until the certificate's notAfter.
fn trusted_ca(pem: String, der: &[u8], path: &Path) -> Result<TrustedCa, String> {
    let tbs = Tbs::parse(der).ok_or_else(|| format!("{}: not a certificate this server can read", path.display()))?;
    Ok(TrustedCa { pem, until: tbs.not_after })
}

fn load_key(path: &Path) -> Result<Ed25519KeyPair, String> {
    let bytes = fs::read(path).map_err(at(path))?;
    Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| format!("{} is not an Ed25519 PKCS#8 key", path.display()))
}

fn public_of(k: &Ed25519KeyPair) -> [u8; 32] {
    let mut p = [0; 32];
    p.copy_from_slice(k.public_key().as_ref());
    p
}

/// Where a retired key is kept while it still signs bundles.
fn retired_path(dir: &Path, public: &[u8; 32]) -> PathBuf {
    dir.join(format!("keys/retired-{}.pk8", hex(&public[..8])))
}

/// What the server stands behind now: the published bundle, or (before
/// the first rollover) the CA in use and the signing key, version 0.
fn current(dir: &Path) -> Result<Bundle, String> {
    if let Some(b) = published(dir) {
        return Bundle::decode(&b).map(|(b, _, _)| b).map_err(|e| format!("{BUNDLE}: {e}"));
    }
    let path = dir.join(CA.0);
    let cas = certs_of(&path)?.into_iter().map(|(pem, der)| trusted_ca(pem, &der, &path)).collect::<Result<_, _>>()?;
    let key = public_of(&load_key(&dir.join(SIGNING_KEY))?);
    Ok(Bundle { version: 0, issued: 0, cas, keys: vec![TrustedKey { public: key, until: None }] })
}

/// Publish `next` as the version after `prev`: expired CAs dropped, CAs
/// and keys within their bounds (the keys retired longest ago dropped
/// first), signed by every key it lists as valid whose private half is
/// here (`extra`: one not yet in its place), written atomically.
fn publish(dir: &Path, prev: &Bundle, mut next: Bundle, extra: Option<&Ed25519KeyPair>) -> Result<u64, String> {
    let now = unix_now();
    next.version = prev.version + 1;
    next.issued = now;
    next.cas.retain(|c| now < c.until);
    if next.cas.len() > MAX_TRUST_CAS {
        return Err(format!("more than {MAX_TRUST_CAS} valid CAs; let old ones expire first"));
    }
    while next.keys.len() > MAX_TRUST_KEYS {
        let oldest = (0..next.keys.len()).min_by_key(|&i| next.keys[i].until.unwrap_or(u64::MAX)).unwrap_or(0);
        next.keys.remove(oldest);
    }
    let body = next.signed_bytes();
    let mut sigs: Vec<Signature> = Vec::new();
    let live = |p: &[u8; 32]| next.keys.iter().any(|k| k.public == *p && k.until.is_none_or(|u| now < u));
    let current = load_key(&dir.join(SIGNING_KEY))?;
    let retired: Vec<Ed25519KeyPair> = next
        .keys
        .iter()
        .map(|k| retired_path(dir, &k.public))
        .filter(|p| p.exists())
        .map(|p| load_key(&p))
        .collect::<Result<_, _>>()?;
    for k in std::iter::once(&current).chain(extra).chain(&retired) {
        let public = public_of(k);
        if live(&public) && !sigs.iter().any(|(p, _)| *p == public) {
            let mut sig = [0; 64];
            sig.copy_from_slice(k.sign(&body).as_ref());
            sigs.push((public, sig));
        }
    }
    if !sigs.iter().any(|(p, _)| prev.keys.iter().any(|k| k.public == *p)) {
        return Err("no key the agents trust now would sign the new trust bundle; refusing to publish it".into());
    }
    let trust = dir.join("trust");
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&trust).map_err(at(&trust))?;
    let path = dir.join(BUNDLE);
    write_atomic(&path, &next.encode(&sigs)).map_err(at(&path))?;
    Ok(next.version)
}

/// `keys rotate`: a new package-signing key. The bundle lists the old key
/// until `overlap_days` from now and the new one without an end, and is
/// signed by both: agents accept the new key because the old one signed it.
/// New packages (and `package resign`) are signed with the new key; those
/// signed with the old one verify until the overlap ends. Returns the new
/// key's hex and the bundle version.
pub fn rotate_key(dir: &Path, overlap_days: u32) -> Result<(String, u64), String> {
    if overlap_days == 0 {
        return Err("--overlap-days must be at least 1: agents need time to fetch the new key".into());
    }
    let prev = current(dir)?;
    let old_path = dir.join(SIGNING_KEY);
    let old_bytes = fs::read(&old_path).map_err(at(&old_path))?;
    let old = load_key(&old_path)?;
    // A rotation cut short left its new key here: the bundle may list it already.
    let next_path = dir.join("keys/signing-next.pk8");
    if !next_path.exists() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| "key generation failed".to_string())?;
        write_private(&next_path, pkcs8.as_ref()).map_err(at(&next_path))?;
    }
    let new = load_key(&next_path)?;
    let (old_pub, new_pub) = (public_of(&old), public_of(&new));
    let end = unix_now() + u64::from(overlap_days) * 86_400;
    let mut next = prev.clone();
    for k in next.keys.iter_mut().filter(|k| k.public == old_pub) {
        k.until = Some(k.until.map_or(end, |u| u.min(end)));
    }
    if !next.keys.iter().any(|k| k.public == old_pub) {
        next.keys.push(TrustedKey { public: old_pub, until: Some(end) });
    }
    next.keys.retain(|k| k.public != new_pub);
    next.keys.push(TrustedKey { public: new_pub, until: None });
    let version = publish(dir, &prev, next, Some(&new))?;
    // The old key keeps signing bundles until its end; then the new one is the key.
    let retired = retired_path(dir, &old_pub);
    if !retired.exists() {
        write_private(&retired, &old_bytes).map_err(at(&retired))?;
    }
    fs::rename(&next_path, &old_path).map_err(at(&old_path))?;
    sync_dir(&dir.join("keys")).map_err(at(&dir.join("keys")))?;
    Ok((hex(&new_pub), version))
}

fn rcgen_err(e: rcgen::Error) -> String {
    format!("certificate generation failed: {e}")
}

/// `ca rotate`: make a new CA, valid `years`, and publish it beside the one
/// in use. Nothing presents a certificate from it until `ca switch`.
/// Returns the new CA's path and the bundle version.
pub fn rotate_ca(dir: &Path, years: u32) -> Result<(PathBuf, u64), String> {
    let (cert_path, key_path) = (dir.join(NEXT_CA.0), dir.join(NEXT_CA.1));
    let prev = current(dir)?;
    if cert_path.exists() {
        if staged_is_published(dir, &cert_path)? {
            return Err(format!("{} exists: a new CA is already staged; run `ca switch` first", cert_path.display()));
        }
        // A rotation cut short before it published: publish what it staged.
        let mut next = prev.clone();
        for (pem, der) in certs_of(&cert_path)? {
            next.cas.push(trusted_ca(pem, &der, &cert_path)?);
        }
        return Ok((cert_path, publish(dir, &prev, next, None)?));
    }
    let now = unix_now();
    let [y, m, d, ..] = civil::civil(now);
    let cn = format!("Outpost server CA {y:04}-{m:02}-{d:02}");
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let end = now + u64::from(years) * 365 * 86_400;
    let cert = pki::ca_params(&cn, now.saturating_sub(86_400), end).self_signed(&key).map_err(rcgen_err)?;
    let mut next = prev.clone();
    next.cas.push(trusted_ca(cert.pem(), cert.der(), &cert_path)?);
    // The key first: a cert without its key would be a CA nobody can use.
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(at(&key_path))?;
    write_atomic(&cert_path, cert.pem().as_bytes()).map_err(at(&cert_path))?;
    let version = publish(dir, &prev, next, None)?;
    Ok((cert_path, version))
}

/// Whether the published bundle lists the CA staged at `cert_path`.
fn staged_is_published(dir: &Path, cert_path: &Path) -> Result<bool, String> {
    let staged = certs_of(cert_path)?;
    let cas = published(dir).and_then(|b| Bundle::decode(&b).ok().map(|(b, _, _)| b.cas)).unwrap_or_default();
    Ok(staged.iter().all(|(pem, _)| cas.iter().any(|c| c.pem.trim() == pem.trim())))
}

/// `ca switch`: issue the server a certificate from the staged CA, for the
/// names of the one it has and as long a lifetime, and make that CA the one
/// in use (the previous one becomes `tls/ca-old-*`, and a chain above it,
/// `--ca-chain`, `tls/ca-old-chain.pem`: the new CA is a root). Refused
/// unless the published bundle lists the staged CA (agents could learn it).
/// The certificate is issued, checked and put in place by
/// [`crate::servercert`] under its lock, as a renewal is. Restart `serve`
/// afterwards: its client-certificate verifier reads the CAs at start.
pub fn switch_ca(dir: &Path) -> Result<Vec<String>, String> {
    let (cert_path, key_path) = (dir.join(NEXT_CA.0), dir.join(NEXT_CA.1));
    if !cert_path.exists() {
        return Err("no new CA is staged: run `ca rotate` first".into());
    }
    if !staged_is_published(dir, &cert_path)? {
        return Err(format!("{} is not in the published trust bundle; run `ca rotate` again", cert_path.display()));
    }
    let now = unix_now();
    let next = servercert::Ca::from_files(&cert_path, &key_path, None, now).map_err(|e| e.to_string())?;
    let _lock = servercert::lock(dir, true)?;
    servercert::recover(dir)?;
    let (certs, _) = servercert::read_pair(dir)?;
    let current = servercert::Leaf::read(&certs[0]).map_err(|e| format!("{}: {e}", servercert::CERT))?;
    if current.sans.is_empty() {
        return Err(format!("{} names no host (no subjectAltName)", servercert::CERT));
    }
    let span = current.not_after.saturating_sub(current.not_before);
    let issued = servercert::issue(&next, &current.sans, span, now)?;
    servercert::write(dir, &issued)?;
    // The CA key may be offline: only what is here moves.
    for (from, to) in [(CA.0, OLD_CA.0), (CA.1, OLD_CA.1), (servercert::CA_CHAIN, OLD_CHAIN)] {
        let from = dir.join(from);
        if from.exists() {
            fs::rename(&from, dir.join(to)).map_err(at(&from))?;
        }
    }
    fs::rename(&cert_path, dir.join(CA.0)).map_err(at(&cert_path))?;
    fs::rename(&key_path, dir.join(CA.1)).map_err(at(&key_path))?;
    let tls = dir.join("tls");
    sync_dir(&tls).map_err(at(&tls))?;
    Ok(current.sans.iter().map(ToString::to_string).collect())
}

#[cfg(test)]
mod tests {
    use outpost_agent::engine::x509::AltName;
    use rcgen::{CertificateParams, SanType};

    use super::*;
    use outpost_agent::engine::trust::Trust;

    #[test]
    fn rotations_publish_newer_bundles_that_the_keys_agents_hold_vouch_for() {
        let dir = std::env::temp_dir().join(format!("outpost-rollover-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        pki::create_tls(&dir, &["127.0.0.1".into()]).unwrap();
        pki::create_signing_key(&dir).unwrap();
        let key = |d: &Path| public_of(&load_key(&d.join(SIGNING_KEY)).unwrap());
        let k0 = key(&dir);
        assert_eq!((published_version(&dir), agent_ca_pem(&dir).unwrap().matches("BEGIN").count()), (0, 1));
        assert!(switch_ca(&dir).unwrap_err().contains("run `ca rotate` first"));
        assert!(rotate_key(&dir, 0).is_err(), "no overlap: no agent could follow");

        let (_, v1) = rotate_key(&dir, 30).unwrap();
        let k1 = key(&dir);
        assert_ne!(k0, k1);
        let bytes = published(&dir).unwrap();
        let now = unix_now();
        let b = Trust::new(k0, None).verify(&bytes, now).unwrap();
        assert!(Trust::new(k1, None).verify(&bytes, now).is_ok(), "signed by the new key too");
        assert_eq!((v1, b.keys.len(), b.keys[1].until), (1, 2, None));
        assert!(b.keys[0].until.is_some_and(|u| u > now + 29 * 86_400 && u <= now + 30 * 86_400));
        assert!(retired_path(&dir, &k0).exists());

        // A CA rotation cut short before it published: `ca switch` refuses,
        // `ca rotate` again publishes what it staged.
        let (_, v2) = rotate_ca(&dir, 1).unwrap();
        assert_eq!(v2, 2);
        assert_eq!(agent_ca_pem(&dir).unwrap().matches("BEGIN").count(), 2, "new devices get both CAs");
        fs::write(dir.join(BUNDLE), &bytes).unwrap();
        assert!(switch_ca(&dir).unwrap_err().contains("not in the published trust bundle"));
        assert_eq!(rotate_ca(&dir, 1).unwrap().1, 2);
        assert!(rotate_ca(&dir, 1).unwrap_err().contains("already staged"));
        let mut held = Trust::new(k0, None);
        held.adopt(Bundle::decode(&bytes).unwrap().0);
        let b = held.verify(&published(&dir).unwrap(), now).unwrap();
        assert_eq!((b.cas.len(), b.keys.len()), (2, 2));

        assert_eq!(switch_ca(&dir).unwrap(), ["127.0.0.1"]);
        assert!(dir.join(OLD_CA.0).exists() && dir.join(CA.0).exists() && !dir.join(NEXT_CA.0).exists());
        assert_eq!(agent_ca_pem(&dir).unwrap().matches("BEGIN").count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_names_of_a_certificate_made_here_are_read_back() {
        let key = KeyPair::generate().unwrap();
        let ca = pki::ca_params("test CA", 1_700_000_000, 1_900_000_000).self_signed(&key).unwrap();
        let mut leaf = CertificateParams::new(vec!["a.example".into()]).unwrap();
        leaf.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        leaf.subject_alt_names.push(SanType::IpAddress("::1".parse().unwrap()));
        let cert = leaf.signed_by(&KeyPair::generate().unwrap(), &ca, &key).unwrap();
        let t = Tbs::parse(cert.der()).unwrap();
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(
            t.alt_names().collect::<Vec<_>>(),
            [AltName::Dns("a.example"), AltName::Ip(&[127, 0, 0, 1]), AltName::Ip(&v6)]
        );
        let t = Tbs::parse(ca.der()).unwrap();
        assert_eq!(
            (t.common_name, t.not_after),
            (Some(&b"test CA"[..]), 1_899_936_000),
            "the day of not_after, midnight"
        );
    }
}
