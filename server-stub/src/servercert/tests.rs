//! The server certificate's life with injected time: issue, reissue,
//! renewal by the watcher, reload, a replacement cut short, and the checks
//! on a CA (its real `openssl` counterparts are in `tests/security/server_cert.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::ca::Why;
use super::live::Live;
use super::*;

const DAY: u64 = 86_400;
/// 2027-01-15: inside the validity of `pki::create_ca`'s CA (2024 to 2049).
const NOW: u64 = 1_800_000_000;

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("outpost-servercert-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn names(v: &[&str]) -> Vec<San> {
    parse_sans(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

/// A server directory's tls/ with a new CA and a certificate for `sans` valid `days`, issued at NOW.
fn server(dir: &Path, sans: &[&str], days: u32) {
    crate::pki::create_ca(dir).unwrap();
    let ca = Ca::load(dir, NOW).unwrap();
    create(dir, &ca, &names(sans), days, NOW).unwrap();
}

fn served_leaf(dir: &Path) -> Leaf {
    let (certs, _) = read_pair(dir).unwrap();
    Leaf::read(&certs[0]).unwrap()
}

#[test]
fn names_are_ip_addresses_or_dns_names() {
    assert_eq!(San::parse("127.0.0.1"), Ok(San::Ip([127, 0, 0, 1].into())));
    assert_eq!(San::parse("::1").unwrap().to_string(), "::1");
    assert_eq!(San::parse("Outpost.Example.ORG"), Ok(San::Dns("outpost.example.org".into())));
    for bad in ["", "a b", "under_score..", "https://x"] {
        assert!(San::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(names(&["a.example", "A.example", "10.0.0.1"]).len(), 2, "repeats dropped");
    assert!(parse_sans(&[]).is_err());
}

#[test]
fn a_reissued_certificate_keeps_its_names_and_lifetime_and_chains_to_the_ca() {
    let t = Tmp::new("reissue");
    server(&t.0, &["127.0.0.1", "localhost"], 30);
    let first = served_leaf(&t.0);
    assert_eq!(first.sans, names(&["127.0.0.1", "localhost"]));
    assert_eq!(first.not_after - first.not_before, 30 * DAY);
    assert_eq!(first.not_before, NOW - 3_600, "backdated an hour");

    let later = NOW + 25 * DAY;
    let issued = reissue(&t.0, Ok, None, later).unwrap();
    assert_eq!(served_leaf(&t.0), issued.leaf, "written");
    assert_eq!(issued.leaf.sans, first.sans);
    assert_eq!(issued.leaf.not_after - issued.leaf.not_before, 30 * DAY);
    let ca = Ca::load(&t.0, later).unwrap();
    verify(&issued.chain, ca.anchors(), &issued.leaf.sans, later).unwrap();
    assert!(ca::signed_by(&t.0.join(CA_CERT), &issued.chain[0]));

    // Other names, another lifetime; the names are edited under the lock.
    let issued = reissue(
        &t.0,
        |mut n| {
            Ok({
                n.retain(|s| s.to_string() != "localhost");
                n
            })
        },
        Some(90),
        later,
    )
    .unwrap();
    assert_eq!(issued.leaf.sans, names(&["127.0.0.1"]));
    assert_eq!(issued.leaf.not_after - issued.leaf.not_before, 90 * DAY);
    assert!(reissue(&t.0, |_| Err("no".into()), None, later).is_err());
    assert_eq!(served_leaf(&t.0), issued.leaf, "a refused edit changes nothing");
}

#[test]
fn a_replacement_cut_short_is_undone_before_the_key_moved_and_finished_after() {
    let t = Tmp::new("recover");
    server(&t.0, &["127.0.0.1"], 30);
    let old = fs::read(t.0.join(CERT)).unwrap();
    let ca = Ca::load(&t.0, NOW).unwrap();
    let issued = issue(&ca, &names(&["127.0.0.1"]), 60 * DAY, NOW).unwrap();
    let key_pem = pem_block("PRIVATE KEY", issued.key.secret_pkcs8_der());

    // Cut after both new files were written: the old pair stays.
    fs::write(t.0.join(KEY_NEW), &key_pem).unwrap();
    fs::write(t.0.join(CERT_NEW), pem(&issued.chain)).unwrap();
    recover(&t.0).unwrap();
    assert_eq!(fs::read(t.0.join(CERT)).unwrap(), old);
    assert!(!t.0.join(KEY_NEW).exists() && !t.0.join(CERT_NEW).exists());

    // Cut after the key was renamed: the certificate follows it.
    fs::write(t.0.join(KEY), &key_pem).unwrap();
    fs::write(t.0.join(CERT_NEW), pem(&issued.chain)).unwrap();
    recover(&t.0).unwrap();
    let (certs, key) = read_pair(&t.0).unwrap();
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key, &provider).expect("a matching pair");
    assert_eq!(served_leaf(&t.0), issued.leaf);
}

fn served(live: &Live) -> Vec<u8> {
    live.current().cert[0].to_vec()
}

#[test]
fn the_watcher_renews_a_due_certificate_and_warns_while_the_ca_key_is_offline() {
    let t = Tmp::new("live");
    server(&t.0, &["127.0.0.1"], 9);
    let live = Live::start(&t.0, NOW).unwrap();
    let first = fs::read(t.0.join(CERT)).unwrap();
    live.tick(NOW + 5 * DAY);
    assert_eq!(fs::read(t.0.join(CERT)).unwrap(), first, "not due before a third of its life is left");

    // Due: renewed on disk and in the resolver, same names, same lifetime.
    let at = NOW + 7 * DAY;
    live.tick(at);
    let renewed = served_leaf(&t.0);
    assert_eq!(renewed.not_before, at - 3_600);
    assert_eq!(renewed.sans, names(&["127.0.0.1"]));
    assert_eq!(live.leaf(), renewed);
    assert_eq!(served(&live), read_pair(&t.0).unwrap().0[0].to_vec(), "swapped in");
    assert_eq!(live.warning(), None);

    // Due again with the CA key offline: a warning, nothing replaced.
    let offline = t.0.join("ca-key.offline");
    fs::rename(t.0.join(CA_KEY), &offline).unwrap();
    let at = at + 7 * DAY;
    live.tick(at);
    let w = live.warning().expect("a warning");
    assert!(w.contains("expires at") && w.contains("not on this server") && w.contains("tls renew"), "{w}");
    assert_eq!(served_leaf(&t.0), renewed);

    // The key comes back: renewed at the next tick.
    fs::rename(&offline, t.0.join(CA_KEY)).unwrap();
    live.tick(at + 5);
    assert_eq!(live.warning(), None);
    assert_eq!(served_leaf(&t.0).not_before, at + 5 - 3_600);

    // Past its end with the key offline: the warning says it expired.
    fs::rename(t.0.join(CA_KEY), &offline).unwrap();
    live.tick(at + 30 * DAY);
    assert!(live.warning().unwrap().contains("expired at"), "{:?}", live.warning());
}

#[test]
fn the_watcher_reloads_changed_files_and_keeps_serving_through_a_broken_pair() {
    let t = Tmp::new("reload");
    server(&t.0, &["127.0.0.1"], 365);
    let live = Live::start(&t.0, NOW).unwrap();
    let before = served(&live);

    let issued = reissue(
        &t.0,
        |mut n| {
            Ok({
                n.push(San::parse("localhost").unwrap());
                n
            })
        },
        None,
        NOW,
    )
    .unwrap();
    live.tick(NOW + 10);
    assert_eq!(live.leaf().sans, issued.leaf.sans);
    assert_eq!(served(&live), issued.chain[0].to_vec());
    assert_ne!(served(&live), before);

    // A key that is not the certificate's: refused, the loaded pair kept.
    let stray = KeyPair::generate().unwrap();
    fs::write(t.0.join(KEY), stray.serialize_pem()).unwrap();
    live.tick(NOW + 20);
    assert_eq!(served(&live), issued.chain[0].to_vec());
    assert!(Live::start(&t.0, NOW).unwrap_err().contains("does not belong"), "serve refuses to start on it");
}

#[test]
fn a_certificate_from_elsewhere_is_not_renewed() {
    let t = Tmp::new("foreign");
    server(&t.0, &["127.0.0.1"], 365);
    // An admin's own self-signed certificate, near its end.
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    p.not_before = time::OffsetDateTime::from_unix_timestamp((NOW - 10 * DAY) as i64).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp((NOW + DAY) as i64).unwrap();
    let cert = p.self_signed(&key).unwrap();
    fs::write(t.0.join(KEY), key.serialize_pem()).unwrap();
    fs::write(t.0.join(CERT), cert.pem()).unwrap();
    let live = Live::start(&t.0, NOW).unwrap();
    assert_eq!(fs::read_to_string(t.0.join(CERT)).unwrap(), cert.pem(), "left alone");
    assert!(live.warning().unwrap().contains("not issued by tls/ca-cert.pem"), "{:?}", live.warning());
}

/// A CA certificate and key written to `dir/name.{crt,key}`: `issuer` signs it, else it signs itself.
fn ca_files(
    dir: &Path,
    name: &str,
    p: CertificateParams,
    issuer: Option<(&rcgen::Certificate, &KeyPair)>,
) -> (PathBuf, PathBuf, rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let cert = match issuer {
        Some((c, k)) => p.signed_by(&key, c, k).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    fs::write(&c, cert.pem()).unwrap();
    fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert, key)
}

fn ca_params(cn: &str, usages: Vec<KeyUsagePurpose>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, "Example");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = usages;
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2035, 1, 1);
    p
}

#[test]
fn a_ca_is_refused_unless_it_may_sign_is_valid_and_has_its_key() {
    let t = Tmp::new("ca");
    let sign = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let (root, root_key, ..) = ca_files(&t.0, "root", ca_params("Root", sign.clone()), None);
    let (_, other_key, ..) = ca_files(&t.0, "other", ca_params("Other", sign), None);
    let why = |c: &Path, k: &Path| Ca::from_files(c, k, None, NOW).err().map(|e| e.why);
    assert_eq!(why(&root, &root_key), None);
    assert_eq!(why(&root, &other_key), Some(Why::KeyMismatch));
    let e = Ca::from_files(&root, &other_key, None, NOW).err().unwrap();
    assert_eq!(e.path, other_key, "the key file is named");

    let mut leaf = ca_params("Leaf", vec![KeyUsagePurpose::DigitalSignature]);
    leaf.is_ca = IsCa::ExplicitNoCa;
    let (leaf, leaf_key, ..) = ca_files(&t.0, "leaf", leaf, None);
    assert_eq!(why(&leaf, &leaf_key), Some(Why::NotCa));
    let (no_sign, no_sign_key, ..) =
        ca_files(&t.0, "nosign", ca_params("No sign", vec![KeyUsagePurpose::DigitalSignature]), None);
    assert_eq!(why(&no_sign, &no_sign_key), Some(Why::NoCertSign));
    assert!(matches!(Ca::from_files(&root, &root_key, None, 2_100_000_000).err().unwrap().why, Why::NotValidNow(..)));
    assert_eq!(why(&root, &t.0.join("missing.key")), Some(Why::Offline));
    let both = t.0.join("both.crt");
    fs::write(&both, [fs::read_to_string(&root).unwrap(), fs::read_to_string(&no_sign).unwrap()].concat()).unwrap();
    assert_eq!(why(&both, &root_key), Some(Why::SeveralCertificates(2)));
    assert_eq!(why(&root_key, &root_key), Some(Why::NoCertificate));
    assert!(matches!(why(&root, &root), Some(Why::BadKey(_))));
}

#[test]
fn an_intermediate_issues_a_chain_that_verifies_against_its_root_alone() {
    let t = Tmp::new("intermediate");
    let sign = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut rp = ca_params("Root", sign.clone());
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let (root, _, root_cert, root_key) = ca_files(&t.0, "root", rp, None);
    let (int, int_key, ..) =
        ca_files(&t.0, "int", ca_params("Intermediate", sign.clone()), Some((&root_cert, &root_key)));
    let ca = Ca::from_files(&int, &int_key, Some(&root), NOW).unwrap();
    let issued = issue(&ca, &names(&["127.0.0.1"]), 30 * DAY, NOW).unwrap();
    assert_eq!(issued.chain.len(), 2, "leaf and intermediate");
    assert_eq!(ca.anchors().len(), 1, "agents get the root");
    verify(&issued.chain, ca.anchors(), &issued.leaf.sans, NOW).unwrap();
    assert!(verify(&issued.chain[..1], ca.anchors(), &issued.leaf.sans, NOW).is_err(), "not without the intermediate");

    // A chain that is not the intermediate's: the first issue says so.
    let (other_root, ..) = ca_files(&t.0, "other", ca_params("Other", sign), None);
    let ca = Ca::from_files(&int, &int_key, Some(&other_root), NOW).unwrap();
    let e = issue(&ca, &names(&["127.0.0.1"]), 30 * DAY, NOW).err().unwrap();
    assert!(e.contains("would not verify against the CA that agents get"), "{e}");

    // A leaf outliving its CA ends with it (root and intermediate end in 2035).
    let ca = Ca::from_files(&int, &int_key, Some(&root), NOW).unwrap();
    let end = 2_051_222_400; // 2035-01-01
    let issued = issue(&ca, &names(&["127.0.0.1"]), 3_650 * DAY, NOW).unwrap();
    assert_eq!(issued.leaf.not_after, end);
    assert!(issue(&ca, &names(&["127.0.0.1"]), 30 * DAY, end - 60).err().unwrap().contains("the CA expires"));
}

#[test]
fn a_certificate_that_ends_with_its_ca_is_warned_about_not_renewed_again_and_again() {
    let t = Tmp::new("ca-end");
    let sign = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let (c, k, ..) = ca_files(&t.0, "ca", ca_params("Short-lived CA", sign), None);
    let end = 2_051_222_400; // 2035-01-01, the CA's end
    let start = end - 200 * DAY;
    let ca = Ca::from_files(&c, &k, None, start).unwrap();
    ca.write(&t.0).unwrap();
    create(&t.0, &ca, &names(&["127.0.0.1"]), 365, start).unwrap();
    assert_eq!(served_leaf(&t.0).not_after, end, "cut to the CA's end");
    let live = Live::start(&t.0, start).unwrap();
    let before = fs::read(t.0.join(CERT)).unwrap();
    live.tick(end - 20 * DAY);
    assert_eq!(fs::read(t.0.join(CERT)).unwrap(), before, "not renewed into the same end");
    let w = live.warning().expect("a warning");
    assert!(w.contains("the CA ends at 2035-01-01T00:00:00Z") && w.contains("a new CA is needed"), "{w}");
}
