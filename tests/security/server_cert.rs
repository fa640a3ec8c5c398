//! Item 14, issue 12 "server identity lifecycle": the server certificate is
//! renewed by the running server before it expires (or, with the CA key
//! offline, warned about in the log and the health route), its names change
//! with `tls --add-san` / `--remove-san` without a restart, and `init` takes
//! an existing CA (`--ca-cert`, `--ca-key`), also an intermediate whose root
//! stays offline (`--ca-chain`), refusing one it cannot use. The CAs and the
//! short-lived certificates are made by the real `openssl`; each check is a
//! real rustls handshake with `serve` on 127.0.0.1, or the real agent
//! deploying through it.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_server::time::unix_now;
use outpost_tests::{
    Made, Server, TempDir, agent, bin, free_port, https_from, openssl, openssl_signed, run, test_database, text,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const DAY: u64 = 86_400;

/// The certificates of a PEM file.
fn certs(path: &Path) -> Vec<Vec<u8>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|c| c.expect("a PEM certificate").to_vec())
        .collect()
}

/// The chain 127.0.0.1:`port` presents to a client that trusts the
/// certificates in `anchors` (alone) and asks for `name`; the handshake's
/// error if it does not verify.
fn served(port: u16, anchors: &Path, name: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(anchors) {
        roots.add(CertificateDer::from(c)).expect("anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_string()).expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(conn.peer_certificates().expect("a chain").iter().map(|c| c.to_vec()).collect())
}

/// Wait up to 20 s (the watcher looks every 5 s) until `f` holds.
#[allow(clippy::disallowed_methods)]
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "not within 20 s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `YYYYMMDDHHMMSSZ`, as `openssl ca` takes dates.
fn stamp(secs: u64) -> String {
    let [y, m, d, h, mi, s] = outpost_agent::engine::civil::civil(secs);
    format!("{y:04}{m:02}{d:02}{h:02}{mi:02}{s:02}Z")
}

/// The certificate and key as command-line arguments.
fn args(m: &Made) -> (&str, &str) {
    (m.cert.to_str().unwrap(), m.key.to_str().unwrap())
}

/// `openssl req -x509` of a root CA as admins make one (`key`: `rsa:2048` or `ec`).
fn root_ca(dir: &Path, name: &str, cn: &str, key: &str) -> Made {
    let (cert, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let subj = format!("/O=Example/CN={cn}");
    let mut args = vec!["req", "-x509", "-newkey", key];
    if key == "ec" {
        args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    args.extend(["-nodes", "-days", "3650", "-subj", &subj]);
    args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    args.extend(["-keyout", k.to_str().unwrap(), "-out", cert.to_str().unwrap()]);
    openssl(dir, &args);
    Made { cert, key: k }
}

/// What opsi's guide gives an intermediate CA.
const INTERMEDIATE: &str = "basicConstraints = critical,CA:true,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\n\
                            subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n";

/// A server certificate for 127.0.0.1 from the server's own CA (`DIR/tls/ca-*.pem`),
/// valid from `start` to `end` (`openssl ca`, since `x509 -req` cannot set dates).
fn dated_leaf(dir: &Path, srv: &Path, start: u64, end: u64) -> Made {
    let ca = dir.join("dated");
    fs::create_dir_all(&ca).unwrap();
    fs::write(ca.join("index.txt"), "").unwrap();
    fs::write(ca.join("serial"), "1000\n").unwrap();
    fs::write(
        ca.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\n\
         policy = p\nunique_subject = no\n[p]\ncommonName = supplied\n\
         [ext]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1\n",
    )
    .unwrap();
    let (cert, key) = (ca.join("cert.pem"), ca.join("key.pem"));
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    openssl(
        &ca,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            k,
            "-out",
            "csr",
        ],
    );
    let (cc, ck) = (srv.join("tls/ca-cert.pem"), srv.join("tls/ca-key.pem"));
    let (s, e) = (stamp(start), stamp(end));
    openssl(
        &ca,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            cc.to_str().unwrap(),
            "-keyfile",
            ck.to_str().unwrap(),
            "-in",
            "csr",
            "-out",
            c,
            "-startdate",
            &s,
            "-enddate",
            &e,
            "-extensions",
            "ext",
            "-notext",
        ],
    );
    Made { cert, key }
}

/// Put `m` in place as the server's pair, as another tool would: each file
/// written aside and renamed over, the key first.
fn replace_pair(srv: &Path, m: &Made) {
    for (from, to) in [(&m.key, "tls/server-key.pem"), (&m.cert, "tls/server-cert.pem")] {
        let tmp = srv.join(format!("{to}.tmp"));
        fs::copy(from, &tmp).unwrap();
        fs::rename(&tmp, srv.join(to)).unwrap();
    }
}

fn log(srv: &Server) -> String {
    fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default()
}

/// An execute package assigned to `device`, deployed by one agent run; its status.
fn deploy(srv: &Server, cfg: &Path, device: &str) -> (String, String) {
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    srv.assign(id, device, &[]);
    let o = agent(cfg, &["run", "--once"], &[]);
    (srv.status_of(id, device), text(&o))
}

#[test]
fn a_certificate_near_its_end_is_renewed_by_the_running_server_and_the_agent_keeps_polling() {
    let t = TempDir::new("cert-renew");
    let mut srv = Server::init(t.join("srv"), &[]);
    let cfg = srv.device_add("pc1", t.path());
    srv.start();
    let (status, out) = deploy(&srv, &cfg, "pc1");
    assert_eq!(status, "SUCCESS", "{out}");
    let ca = srv.dir.join("tls/ca-cert.pem");
    let first = certs(&srv.dir.join("tls/server-cert.pem"))[0].clone();

    // Another tool puts in a certificate from the same CA: ten days long, two hours left.
    let now = unix_now();
    let short = dated_leaf(t.path(), &srv.dir, now - 10 * DAY, now + 7_200);
    let short_der = certs(&short.cert)[0].clone();
    assert!(
        !run(Command::new("openssl").args(["x509", "-checkend", "86400", "-noout", "-in"]).arg(&short.cert))
            .status
            .success()
    );
    replace_pair(&srv.dir, &short);

    // The running server reloads it, finds it due and renews it: a new
    // certificate on disk and in handshakes, same process, same names.
    wait_until("a renewed certificate served", || {
        served(srv.https_port, &ca, "127.0.0.1").is_ok_and(|c| c[0] != short_der && c[0] != first)
    });
    let renewed = served(srv.https_port, &ca, "127.0.0.1").unwrap();
    let on_disk = srv.dir.join("tls/server-cert.pem");
    assert_eq!(renewed, certs(&on_disk), "written to disk as served");
    let o = openssl(
        t.path(),
        &["x509", "-checkend", "86400", "-noout", "-ext", "subjectAltName", "-in", on_disk.to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("IP Address:127.0.0.1"), "{}", text(&o));
    let l = log(&srv);
    assert!(l.contains("renewed the server certificate for 127.0.0.1: valid until"), "{l}");

    // The agent, its configuration untouched, goes on deploying.
    let (status, out) = deploy(&srv, &cfg, "pc1");
    assert_eq!(status, "SUCCESS", "{out}");
}

#[test]
fn with_the_ca_key_offline_serve_warns_in_its_log_and_health_then_renews_when_the_key_returns() {
    let t = TempDir::new("cert-offline");
    let mut srv = Server::init(t.join("srv"), &[]);
    let now = unix_now();
    let short = dated_leaf(t.path(), &srv.dir, now - 10 * DAY, now + 7_200);
    let short_der = certs(&short.cert)[0].clone();
    replace_pair(&srv.dir, &short);
    let offline = t.join("usb-ca-key.pem");
    fs::rename(srv.dir.join("tls/ca-key.pem"), &offline).unwrap();
    srv.start();

    let ca = srv.dir.join("tls/ca-cert.pem");
    assert_eq!(served(srv.https_port, &ca, "127.0.0.1").unwrap()[0], short_der, "still served: it is valid");
    let (status, body) = https_from("127.0.0.1", srv.https_port, &ca, "GET", "/admin/v1/health", &[], b"").unwrap();
    assert_eq!(status, 200, "the server works: {body}");
    assert!(
        body.starts_with("warning: the server certificate expires at") && body.contains(" h) and was not renewed"),
        "{body}"
    );
    assert!(body.contains("tls/ca-key.pem: the CA key is not on this server") && body.contains("tls renew"), "{body}");
    let l = log(&srv);
    assert!(l.contains("WARN  the server certificate expires at") && l.contains("was not renewed"), "{l}");

    // The key comes back: renewed within a tick, and the health route is quiet.
    fs::rename(&offline, srv.dir.join("tls/ca-key.pem")).unwrap();
    wait_until("renewed once the key is back", || {
        served(srv.https_port, &ca, "127.0.0.1").is_ok_and(|c| c[0] != short_der)
    });
    let (_, body) = https_from("127.0.0.1", srv.https_port, &ca, "GET", "/admin/v1/health", &[], b"").unwrap();
    assert_eq!(body, "ok\n");
}

#[test]
fn tls_add_san_lets_an_agent_reach_the_running_server_by_the_new_name() {
    let t = TempDir::new("cert-san");
    let mut srv = Server::init(t.join("srv"), &[]);
    let cfg = srv.device_add("pc1", t.path());
    let url = format!("https://127.0.0.1:{}", srv.https_port);
    let conf = fs::read_to_string(&cfg).unwrap();
    assert!(conf.contains(&url), "{conf}");
    fs::write(&cfg, conf.replace(&url, &format!("https://localhost:{}", srv.https_port))).unwrap();
    srv.start();
    let ca = srv.dir.join("tls/ca-cert.pem");

    let e = served(srv.https_port, &ca, "localhost").unwrap_err();
    assert!(e.contains("not valid for name \"localhost\""), "{e}");
    let (status, out) = deploy(&srv, &cfg, "pc1");
    assert_ne!(status, "SUCCESS", "not by a name the certificate lacks: {out}");

    let o = srv.cmd(&["tls", "--add-san", "localhost"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("for 127.0.0.1, localhost"), "{}", text(&o));
    wait_until("the new name verifies", || served(srv.https_port, &ca, "localhost").is_ok());
    let (status, out) = deploy(&srv, &cfg, "pc1");
    assert_eq!(status, "SUCCESS", "{out}");

    let o = srv.cmd(&["tls", "--remove-san", "localhost"]);
    assert!(o.status.success(), "{}", text(&o));
    wait_until("the removed name fails", || served(srv.https_port, &ca, "localhost").is_err());
    served(srv.https_port, &ca, "127.0.0.1").expect("the other name still verifies");
    let o = srv.cmd(&["tls", "--remove-san", "127.0.0.1"]);
    assert!(!o.status.success() && text(&o).contains("without a name"), "{}", text(&o));
}

#[test]
fn init_with_an_existing_openssl_root_ca_issues_from_it_and_the_agent_deploys() {
    let t = TempDir::new("cert-root");
    let root = root_ca(t.path(), "root", "Example Root CA", "rsa:2048");
    let (c, k) = args(&root);
    let mut srv = Server::init(t.join("srv"), &["--ca-cert", c, "--ca-key", k, "--san", "127.0.0.1"]);
    assert_eq!(certs(&srv.dir.join("tls/ca-cert.pem")), certs(&root.cert), "the given CA, not a new one");
    let leaf = srv.dir.join("tls/server-cert.pem");
    let o = openssl(t.path(), &["verify", "-CAfile", c, leaf.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(": OK"), "{}", text(&o));

    let cfg = srv.device_add("pc1", t.path());
    srv.start();
    assert_eq!(served(srv.https_port, &root.cert, "127.0.0.1").expect("verifies against the root").len(), 1);
    let (status, out) = deploy(&srv, &cfg, "pc1");
    assert_eq!(status, "SUCCESS", "{out}");
}

#[test]
fn an_intermediate_ca_whose_root_stays_offline_serves_its_chain_and_an_agent_holding_only_the_root_deploys() {
    let t = TempDir::new("cert-intermediate");
    let root = root_ca(t.path(), "root", "Example Root CA", "ec");
    let int = openssl_signed(t.path(), "int", "/O=Example/CN=Example Outpost CA", INTERMEDIATE, &root);
    fs::remove_file(&root.key).unwrap(); // the root's key goes offline
    let (c, k) = args(&int);
    let mut srv =
        Server::init(t.join("srv"), &["--ca-cert", c, "--ca-key", k, "--ca-chain", root.cert.to_str().unwrap()]);

    // Agents are given the root alone.
    let cfg = srv.device_add("pc1", t.path());
    let conf = fs::read_to_string(&cfg).unwrap();
    // `server.ca_cert` (the config also holds the device's client certificate).
    let ca_cert = conf.split("ca_cert = \"\"\"").nth(1).and_then(|r| r.split("\"\"\"").next()).unwrap_or_default();
    let given: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(ca_cert.as_bytes()).map(|c| c.unwrap().to_vec()).collect();
    assert_eq!(given, certs(&root.cert), "{conf}");

    // The server sends its certificate and the intermediate; openssl agrees.
    let leaf = srv.dir.join("tls/server-cert.pem");
    let o = openssl(
        t.path(),
        &[
            "verify",
            "-CAfile",
            root.cert.to_str().unwrap(),
            "-untrusted",
            leaf.to_str().unwrap(),
            leaf.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(": OK"), "{}", text(&o));
    srv.start();
    let chain = served(srv.https_port, &root.cert, "127.0.0.1").expect("verifies against the root alone");
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], certs(&int.cert)[0]);
    let (status, out) = deploy(&srv, &cfg, "pc1");
    assert_eq!(status, "SUCCESS", "{out}");

    // Renewed by hand (the intermediate's key is on the server): the same chain, a new leaf.
    let o = srv.cmd(&["tls", "renew"]);
    assert!(o.status.success(), "{}", text(&o));
    wait_until("the renewed certificate served", || {
        served(srv.https_port, &root.cert, "127.0.0.1").is_ok_and(|c| c[0] != chain[0] && c[1] == chain[1])
    });
    let (status, out) = deploy(&srv, &cfg, "pc1");
    assert_eq!(status, "SUCCESS", "{out}");
}

#[test]
fn init_refuses_a_key_that_is_not_the_cas_a_certificate_that_is_no_ca_and_a_chain_that_is_not_its_root() {
    let t = TempDir::new("cert-refused");
    let a = root_ca(t.path(), "a", "Root A", "ec");
    let b = root_ca(t.path(), "b", "Root B", "ec");
    let leaf = openssl_signed(
        t.path(),
        "leaf",
        "/CN=127.0.0.1",
        "basicConstraints = CA:FALSE\nsubjectAltName = IP:127.0.0.1\n",
        &a,
    );
    let no_sign = openssl_signed(
        t.path(),
        "nosign",
        "/CN=No Sign CA",
        "basicConstraints = critical,CA:true\nkeyUsage = digitalSignature\n",
        &a,
    );
    let int = openssl_signed(t.path(), "int", "/CN=Intermediate", INTERMEDIATE, &a);
    let sec1 = t.join("a-sec1.key");
    openssl(t.path(), &["ec", "-in", a.key.to_str().unwrap(), "-out", sec1.to_str().unwrap()]);
    assert!(fs::read_to_string(&sec1).unwrap().starts_with("-----BEGIN EC PRIVATE KEY-----"));

    let dir = t.join("srv");
    let database = test_database();
    let init = |extra: &[&Path]| {
        let (https, http) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
        let mut c = Command::new(bin("outpost-server"));
        c.args(["init", "--dir"]).arg(&dir).args(["--https", &https, "--http", &http]);
        if let Some(db) = &database {
            c.args(["--database", db.url()]);
        }
        for (flag, f) in ["--ca-cert", "--ca-key", "--ca-chain"].iter().zip(extra) {
            c.arg(flag).arg(f);
        }
        run(&mut c)
    };
    let cases: [(&[&Path], &str); 5] = [
        (&[&a.cert, &b.key], "this private key does not belong to the CA certificate"),
        (&[&leaf.cert, &leaf.key], "not a CA certificate (no basicConstraints CA:TRUE)"),
        (&[&no_sign.cert, &no_sign.key], "does not allow signing certificates (no keyCertSign)"),
        (&[&int.cert, &int.key, &b.cert], "would not verify against the CA that agents get"),
        (&[&a.cert, &sec1], "a SEC1 EC key: give it as PKCS#8"),
    ];
    for (files, why) in cases {
        let o = init(files);
        assert!(!o.status.success(), "{files:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{files:?}: says {why:?}: {err}");
        assert!(!dir.join("server.toml").exists() && !dir.join("tls").exists(), "{files:?}: nothing written");
    }
    let o = init(&[&a.cert]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--ca-key"), "{}", text(&o));

    // The same directory with a usable CA: initialised.
    let o = init(&[&int.cert, &int.key, &a.cert]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(certs(&dir.join("tls/ca-chain.pem")), certs(&a.cert));
}
