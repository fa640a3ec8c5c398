//! `server.ca_cert` as OCS and FusionInventory admins fill it: outpost-agent
//! in OCS mode against outpost-server whose TLS certificate and key were
//! replaced by ones the real `openssl` binary made (installed when missing).
//! A self-signed `openssl req -x509` certificate (CA:TRUE) given to the
//! agent as its CA is pinned: accepted for its own name while valid, and
//! nothing else is; CAs and sub-CA + root chain files work as before.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use outpost_tests::{Made, Server, TempDir, openssl, openssl_signed, text};

/// `openssl req -x509 -newkey rsa:2048 -nodes -days 730 -subj /CN=cn [-addext subjectAltName=san]`
/// as the OCS and FusionInventory docs say (openssl marks it CA:TRUE).
fn self_signed(dir: &Path, name: &str, cn: &str, san: Option<&str>) -> Made {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "730", "-subj", &subj];
    let ext = san.map(|s| format!("subjectAltName={s}"));
    if let Some(e) = &ext {
        args.extend(["-addext", e]);
    }
    args.extend(["-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()]);
    openssl(dir, &args);
    Made { cert, key }
}

/// A certificate for `/CN=cn` with `ext`, signed by `issuer`.
fn signed(dir: &Path, name: &str, cn: &str, ext: &str, issuer: &Made) -> Made {
    openssl_signed(dir, name, &format!("/CN={cn}"), ext, issuer)
}

/// A self-signed CA:TRUE certificate for 127.0.0.1 valid from `start` to
/// `end` (`YYYYMMDDHHMMSSZ`; `openssl ca -selfsign`, since `req -x509`
/// cannot set dates).
fn dated(dir: &Path, name: &str, start: &str, end: &str) -> Made {
    let ca = dir.join(name);
    fs::create_dir_all(&ca).unwrap();
    fs::write(ca.join("index.txt"), "").unwrap();
    fs::write(ca.join("serial"), "01\n").unwrap();
    fs::write(
        ca.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\n\
         policy = p\nunique_subject = no\n[p]\ncommonName = supplied\n\
         [ext]\nbasicConstraints = critical,CA:TRUE\nsubjectAltName = IP:127.0.0.1\n",
    )
    .unwrap();
    let (cert, key) = (ca.join("cert.pem"), ca.join("key.pem"));
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    openssl(
        &ca,
        &["req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", k, "-out", "csr"],
    );
    openssl(
        &ca,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            k,
            "-in",
            "csr",
            "-out",
            c,
            "-startdate",
            start,
            "-enddate",
            end,
            "-extensions",
            "ext",
            "-notext",
        ],
    );
    Made { cert, key }
}

/// What one agent run against a server got.
struct Outcome {
    /// The package's status on the server for the OCS device ("" if none).
    status: String,
    /// The agent's output.
    out: Output,
}

impl Outcome {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

/// outpost-server with `chain` (PEM, leaf first) and `key` as its TLS
/// certificate, an execute package assigned to every device, and
/// outpost-agent in OCS mode run once with `ca_cert` = `ca`, reaching the
/// server as `host`.
fn deploy(t: &TempDir, tag: &str, chain: &str, key: &Path, ca: &str, host: &str) -> Outcome {
    let mut srv = Server::init(t.join(&format!("{tag}-srv")), &[]);
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    let o = srv.cmd(&["assign", "--package", &id.to_string(), "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    let tls = srv.dir.join("tls");
    fs::write(tls.join("server-cert.pem"), chain).unwrap();
    fs::copy(key, tls.join("server-key.pem")).unwrap();
    fs::set_permissions(tls.join("server-key.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    let conf = srv.dir.join("server.toml");
    let at = format!("127.0.0.1:{}/download", srv.https_port);
    let toml = fs::read_to_string(&conf).unwrap();
    assert!(toml.contains(&at), "info_loc in {toml}");
    fs::write(&conf, toml.replace(&at, &format!("{host}:{}/download", srv.https_port))).unwrap();
    srv.start();

    let cfg = t.join(&format!("{tag}-agent.toml"));
    fs::write(
        &cfg,
        format!(
            "[server]\nprotocol = \"ocs\"\nurl = \"http://127.0.0.1:{}/ocsinventory\"\nca_cert = '''\n{ca}'''\n\n\
             [agent]\nstate_dir = \"{}\"\n",
            srv.http_port,
            t.join(&format!("{tag}-state")).display()
        ),
    )
    .unwrap();
    let out = outpost_tests::agent(&cfg, &["run", "--once"], &[]);
    let status = srv.statuses().into_iter().find(|(p, _, _)| *p == id).map(|(_, _, s)| s).unwrap_or_default();
    Outcome { status, out }
}

/// Refused: no SUCCESS, and the agent says why in the words given.
fn assert_refused(o: &Outcome, why: &str) {
    assert_ne!(o.status, "SUCCESS", "{}", text(&o.out));
    let err = o.stderr();
    assert!(err.contains("TLS verification of") && err.contains(why), "says {why:?}: {err}");
}

#[test]
fn an_openssl_req_x509_certificate_given_as_ca_cert_is_pinned_and_deploys() {
    let t = TempDir::new("pin-ok");
    let srv = self_signed(t.path(), "srv", "127.0.0.1", Some("IP:127.0.0.1"));
    let o = deploy(&t, "a", &srv.pem(), &srv.key, &srv.pem(), "127.0.0.1");
    assert_eq!(o.status, "SUCCESS", "{}", text(&o.out));
    assert!(o.out.status.success(), "{}", text(&o.out));
}

#[test]
fn the_docs_recipe_without_a_subject_alt_name_is_matched_on_its_common_name() {
    let t = TempDir::new("pin-cn");
    let srv = self_signed(t.path(), "srv", "localhost", None);
    let o = deploy(&t, "a", &srv.pem(), &srv.key, &srv.pem(), "localhost");
    assert_eq!(o.status, "SUCCESS", "{}", text(&o.out));
    // The same certificate reached under another name.
    let o = deploy(&t, "b", &srv.pem(), &srv.key, &srv.pem(), "127.0.0.1");
    assert_refused(&o, "not valid for the name \"127.0.0.1\"");
}

#[test]
fn another_self_signed_certificate_pinned_is_refused() {
    let t = TempDir::new("pin-other");
    let srv = self_signed(t.path(), "srv", "127.0.0.1", Some("IP:127.0.0.1"));
    let other = self_signed(t.path(), "other", "127.0.0.1", Some("IP:127.0.0.1"));
    let o = deploy(&t, "a", &srv.pem(), &srv.key, &other.pem(), "127.0.0.1");
    assert_refused(&o, "a self-signed CA certificate that is not in server.ca_cert");
}

#[test]
fn a_pinned_certificate_for_another_name_is_refused() {
    let t = TempDir::new("pin-name");
    // Its CN is the address the agent uses, but its subjectAltName is not: the SAN decides.
    let srv = self_signed(t.path(), "srv", "127.0.0.1", Some("IP:127.0.0.2"));
    let o = deploy(&t, "a", &srv.pem(), &srv.key, &srv.pem(), "127.0.0.1");
    assert_refused(&o, "not valid for the name \"127.0.0.1\"");
    // The same with a DNS name: CN=localhost, reached as localhost, but a
    // subjectAltName of 127.0.0.1 only.
    let srv = self_signed(t.path(), "dns", "localhost", Some("IP:127.0.0.1"));
    let o = deploy(&t, "b", &srv.pem(), &srv.key, &srv.pem(), "localhost");
    assert_refused(&o, "not valid for the name \"localhost\"");
}

#[test]
fn an_expired_pinned_certificate_is_refused() {
    let t = TempDir::new("pin-expired");
    let srv = dated(t.path(), "expired", "20200101000000Z", "20210101000000Z");
    let o = deploy(&t, "a", &srv.pem(), &srv.key, &srv.pem(), "127.0.0.1");
    assert_refused(&o, "its certificate has expired");
}

#[test]
fn a_pinned_certificate_not_valid_yet_is_refused() {
    let t = TempDir::new("pin-early");
    let srv = dated(t.path(), "early", "20900101000000Z", "20910101000000Z");
    let o = deploy(&t, "a", &srv.pem(), &srv.key, &srv.pem(), "127.0.0.1");
    assert_refused(&o, "its certificate is not valid yet");
}

#[test]
fn a_leaf_signed_by_a_configured_ca_still_works() {
    let t = TempDir::new("pin-ca");
    let ca = self_signed(t.path(), "ca", "Test Root", None);
    let leaf = signed(t.path(), "leaf", "127.0.0.1", "subjectAltName = IP:127.0.0.1\n", &ca);
    let o = deploy(&t, "a", &leaf.pem(), &leaf.key, &ca.pem(), "127.0.0.1");
    assert_eq!(o.status, "SUCCESS", "{}", text(&o.out));
    // Not the name: refused though the chain is good.
    let o = deploy(&t, "b", &leaf.pem(), &leaf.key, &ca.pem(), "localhost");
    assert_refused(&o, "not valid for the name \"localhost\"");
}

#[test]
fn a_chain_file_of_sub_ca_and_root_works() {
    let t = TempDir::new("pin-chain");
    let root = self_signed(t.path(), "root", "Test Root", None);
    let sub_ext = "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n";
    let sub = signed(t.path(), "sub", "Test Sub CA", sub_ext, &root);
    let leaf = signed(t.path(), "leaf", "127.0.0.1", "subjectAltName = IP:127.0.0.1\n", &sub);
    // Sub-CA first, then root, as FusionInventory's docs write the file.
    let chain_file = format!("{}{}", sub.pem(), root.pem());
    // The server sends its leaf alone: the sub-CA in the file is an anchor.
    let o = deploy(&t, "a", &leaf.pem(), &leaf.key, &chain_file, "127.0.0.1");
    assert_eq!(o.status, "SUCCESS", "{}", text(&o.out));
    // The server sends leaf and sub-CA, the file holds the root alone: the
    // sub-CA is an intermediate.
    let sent = format!("{}{}", leaf.pem(), sub.pem());
    let o = deploy(&t, "b", &sent, &leaf.key, &root.pem(), "127.0.0.1");
    assert_eq!(o.status, "SUCCESS", "{}", text(&o.out));
    // Neither: a leaf of the sub-CA against the root alone.
    let o = deploy(&t, "c", &leaf.pem(), &leaf.key, &root.pem(), "127.0.0.1");
    assert_refused(&o, "neither signed by nor one of the certificates in server.ca_cert");
}
