//! Issue 12, client certificates, revocation, rotation: a device proves
//! itself with its secret *and* its own client certificate (`device add`
//! issues it, signed by the server's CA); `[security] require_client_cert`
//! makes the certificate necessary, so a stolen secret alone no longer
//! works; `device revoke` refuses both at once, on connections already open
//! too; `device rotate` gives the device new ones over its verified channel.
//!
//! Every test makes real rustls connections to a real `outpost-server` on
//! 127.0.0.1, presenting (or not) real certificates; the end-to-end ones run
//! the real agent. Each was run with its defence switched off and failed:
//! the certificate check in `db/credentials.rs` (`authenticate` ignoring
//! what the connection presented: the stolen secret alone, the other
//! device's certificate and the new secret with the old certificate got
//! in), the handshake's check (the listener asking for no certificate: the
//! other CA's certificate was never looked at and the request got as far as
//! a 401, which the test tells from a refused handshake), revocation (the
//! revoked flag ignored and the secret kept: the open connection kept
//! polling; and, with answers kept in memory, the change file that tells
//! the server of a command's commit, `db/changes.rs`: the revoked device's
//! poll was answered from memory), the promotion (the old secret kept
//! working after the rotation was used).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use outpost_agent::engine::identity::{Credentials, Identity};
use outpost_agent::engine::proto::{PollReply, Report, encode_reports};
use outpost_agent::engine::status::StatusCode;
use outpost_agent::rt::config::Config;
use outpost_tests::{Server, TempDir, agent, text};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use crate::ocs_kind::edit_config;

/// The credentials `device add` wrote into the agent configuration at `cfg`.
fn creds_of(cfg: &Path) -> Credentials {
    let text = fs::read_to_string(cfg).expect("agent config");
    Config::parse(&text).expect("a config the agent reads").credentials().expect("credentials")
}

/// A TLS client trusting the server's CA, presenting `cert` (DER
/// certificate and PKCS#8 key) when it has one.
fn tls(srv: &Server, cert: Option<(&[u8], &[u8])>) -> Arc<rustls::ClientConfig> {
    let ca = CertificateDer::from_pem_file(srv.dir.join("tls/ca-cert.pem")).expect("CA");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => b.with_no_client_auth(),
        Some((c, k)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from(c.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.to_vec())),
            )
            .expect("client certificate"),
    })
}

/// One kept-alive TLS connection to the control API.
struct Session(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Session {
    /// Connect and shake hands (a handshake the server refuses is an error).
    fn open(srv: &Server, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(("127.0.0.1", srv.https_port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let mut s = rustls::StreamOwned::new(rustls::ClientConnection::new(cfg, name).expect("session"), tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        // TLS 1.3: the server judges the client's certificate after the
        // client's last flight; one read brings its verdict (an alert) or
        // nothing until the first request.
        let mut s = Self(s);
        s.0.sock.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut b = [0u8; 1];
        match s.0.read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e),
            Ok(0) => return Err(std::io::Error::other("closed after the handshake")),
            Ok(_) => return Err(std::io::Error::other("data before a request")),
        }
        s.0.sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    }

    /// `POST /api/v1/poll` as `device` with `secret`, keeping the
    /// connection: the status and the body.
    fn poll(&mut self, device: &str, secret: &str) -> std::io::Result<(u16, Vec<u8>)> {
        self.send(&format!(
            "POST /api/v1/poll HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Outpost {device} {secret}\r\n\
             Content-Length: 10\r\n\r\noutpost 1\n"
        ))
    }

    /// `POST /api/v1/report` as `device` with `secret`: report `id` says
    /// `package` ended with SUCCESS; the status and the body.
    fn report(&mut self, device: &str, secret: &str, id: u64, package: u64) -> std::io::Result<(u16, Vec<u8>)> {
        self.report_status(device, secret, id, package, StatusCode::Success)
    }

    /// [`Session::report`] with `status`.
    fn report_status(
        &mut self,
        device: &str,
        secret: &str,
        id: u64,
        package: u64,
        status: StatusCode,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let body = encode_reports(&[Report { id, package, status }]);
        self.send(&format!(
            "POST /api/v1/report HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Outpost {device} {secret}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    /// The packages a poll offers (status 200 asserted).
    fn offers(&mut self, device: &str, secret: &str) -> Vec<u64> {
        let (status, body) = self.poll(device, secret).expect("poll");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        PollReply::decode(&body).expect("poll reply").offers.iter().map(|o| o.id).collect()
    }

    /// How many polls the server answered from memory (`/metrics`).
    fn polls_from_memory(&mut self) -> u64 {
        let (status, body) = self.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("/metrics");
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body).into_owned();
        let line = text.lines().find_map(|l| l.strip_prefix("outpost_polls_from_memory_total "));
        line.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no count of polls from memory:\n{text}"))
    }

    /// Send the request `req`, keeping the connection: the status and the body.
    fn send(&mut self, req: &str) -> std::io::Result<(u16, Vec<u8>)> {
        self.0.write_all(req.as_bytes())?;
        let mut r = BufReader::new(&mut self.0);
        let (mut status, mut len) = (0, 0);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("closed before the response"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(s) = l.strip_prefix("HTTP/1.1 ") {
                status = s[..3].parse().map_err(std::io::Error::other)?;
            } else if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().map_err(std::io::Error::other)?;
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// One poll on a fresh connection presenting `creds`' certificate (if
/// any); the status, or the error of a refused handshake.
fn poll_with(srv: &Server, device: &str, secret: &str, cert: Option<&Credentials>) -> std::io::Result<u16> {
    let cert = cert.filter(|c| c.has_cert()).map(|c| (&c.cert[..], &c.key[..]));
    Session::open(srv, tls(srv, cert))?.poll(device, secret).map(|(s, _)| s)
}

/// A server requiring client certificates, with devices `ids` added.
fn requiring(t: &TempDir, ids: &[&str]) -> (Server, Vec<std::path::PathBuf>) {
    let srv = Server::init(t.join("srv"), &[]);
    edit_config(&srv, "require_client_cert = false", "require_client_cert = true");
    let cfgs = ids.iter().map(|d| srv.device_add(d, t.path())).collect();
    (srv, cfgs)
}

#[test]
fn a_stolen_secret_without_the_certificate_is_refused_when_certificates_are_required() {
    let t = TempDir::new("sec-cc-stolen");
    let (mut srv, cfgs) = requiring(&t, &["pc1"]);
    let pc1 = creds_of(&cfgs[0]);
    assert!(pc1.has_cert(), "device add issued a client certificate");
    srv.start();
    assert_eq!(poll_with(&srv, "pc1", &pc1.secret, Some(&pc1)).unwrap(), 200, "secret and certificate");
    assert_eq!(poll_with(&srv, "pc1", &pc1.secret, None).unwrap(), 401, "the stolen secret alone");
    let log = fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert!(log.contains("the right secret without the device's client certificate"), "{log}");
    assert!(!log.contains(&pc1.secret), "no secret in the log");
    // The real agent presents its certificate.
    let o = agent(&cfgs[0], &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    // The switch is the defence: off, the secret alone gets in (older agents).
    srv.stop();
    edit_config(&srv, "require_client_cert = true", "require_client_cert = false");
    srv.start();
    assert_eq!(poll_with(&srv, "pc1", &pc1.secret, None).unwrap(), 200, "not required");
}

#[test]
fn another_devices_certificate_with_this_secret_is_refused() {
    let t = TempDir::new("sec-cc-other");
    let (mut srv, cfgs) = requiring(&t, &["pc1", "pc2"]);
    let (pc1, pc2) = (creds_of(&cfgs[0]), creds_of(&cfgs[1]));
    srv.start();
    assert_eq!(poll_with(&srv, "pc2", &pc2.secret, Some(&pc2)).unwrap(), 200, "pc2's own pair");
    assert_eq!(poll_with(&srv, "pc1", &pc1.secret, Some(&pc2)).unwrap(), 401, "pc1's secret, pc2's certificate");
    assert_eq!(poll_with(&srv, "pc2", &pc1.secret, Some(&pc2)).unwrap(), 401, "pc2's certificate, pc1's secret");
    // Presented certificates are checked even where none is required.
    srv.stop();
    edit_config(&srv, "require_client_cert = true", "require_client_cert = false");
    srv.start();
    assert_eq!(poll_with(&srv, "pc1", &pc1.secret, Some(&pc2)).unwrap(), 401, "not required, still checked");
    assert_eq!(poll_with(&srv, "pc1", &pc1.secret, Some(&pc1)).unwrap(), 200);
}

#[test]
fn a_certificate_not_from_the_servers_ca_is_refused_in_the_handshake() {
    let t = TempDir::new("sec-cc-ca");
    let (mut srv, cfgs) = requiring(&t, &["pc1"]);
    let pc1 = creds_of(&cfgs[0]);
    // Another Outpost server's CA issues a certificate for a device of the
    // same name: right name, wrong CA.
    let other = Server::init(t.join("other"), &[]);
    let forged = creds_of(&other.device_add("pc1", &t.join("other")));
    srv.start();
    let e = poll_with(&srv, "pc1", &pc1.secret, Some(&forged)).expect_err("handshake refused");
    assert!(
        e.to_string().contains("UnknownCA") || e.to_string().contains("alert"),
        "refused by the TLS layer, not by a 401: {e}"
    );
    assert_eq!(poll_with(&srv, "pc1", &pc1.secret, Some(&pc1)).unwrap(), 200);
}

#[test]
fn revoke_takes_effect_at_once_even_on_an_open_connection() {
    let t = TempDir::new("sec-cc-revoke");
    let mut srv = Server::init(t.join("srv"), &[]);
    let cfg = srv.device_add("pc1", t.path());
    let pc1 = creds_of(&cfg);
    srv.start();
    let mut open = Session::open(&srv, tls(&srv, Some((&pc1.cert, &pc1.key)))).unwrap();
    assert_eq!(open.poll("pc1", &pc1.secret).unwrap().0, 200);
    // The secret alone (no certificate is required here), kept alive: the
    // second poll is answered from memory (src/poll_cache.rs), and the
    // revocation, made by another process, must reach such answers too.
    let mut bare = Session::open(&srv, tls(&srv, None)).unwrap();
    assert_eq!(bare.poll("pc1", &pc1.secret).unwrap().0, 200);
    let before = bare.polls_from_memory();
    assert_eq!(bare.poll("pc1", &pc1.secret).unwrap().0, 200);
    // (On PostgreSQL no answer is kept: every poll takes the whole path.)
    let kept = u64::from(!outpost_tests::backend_is_postgres());
    assert_eq!(bare.polls_from_memory(), before + kept, "the poll before the revocation was answered from memory");
    let o = srv.cmd(&["device", "revoke", "--id", "pc1"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("revoked"), "{}", text(&o));
    assert_eq!(
        bare.report("pc1", &pc1.secret, 1, 1).unwrap().0,
        401,
        "a report, kept alive, after answers from memory (reports are let in from them too)"
    );
    assert_eq!(
        bare.poll("pc1", &pc1.secret).unwrap().0,
        401,
        "kept alive, the secret alone, after answers from memory"
    );
    assert_eq!(open.poll("pc1", &pc1.secret).unwrap().0, 401, "the same kept-alive connection, next request");
    assert_eq!(poll_with(&srv, "pc1", &pc1.secret, Some(&pc1)).unwrap(), 401, "secret and certificate");
    assert_eq!(poll_with(&srv, "pc1", &pc1.secret, None).unwrap(), 401, "the secret alone");
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("(401)"), "{}", text(&o));
    let o = srv.cmd(&["device", "rotate", "--id", "pc1"]);
    assert!(!o.status.success(), "no way back by rotation: {}", text(&o));
}

#[test]
fn a_report_drops_the_answer_kept_for_its_device_and_no_other() {
    // A report changes its device's answer only: it does not move the
    // epoch that drops every answer kept (src/poll_cache.rs), it drops
    // its device's. Without that, the device's next poll would be offered
    // again, from memory, the package it just reported installed.
    let t = TempDir::new("sec-cc-report");
    let mut srv = Server::init(t.join("srv"), &[]);
    let (one, two) = (creds_of(&srv.device_add("pc1", t.path())), creds_of(&srv.device_add("pc2", t.path())));
    let pkg = srv.package_add(&["--action", "execute", "--command", "true"]);
    srv.start();
    srv.assign(pkg, "pc1", &[]);
    srv.assign(pkg, "pc2", &[]);
    let mut s = Session::open(&srv, tls(&srv, None)).unwrap();
    for (d, c) in [("pc1", &one), ("pc2", &two)] {
        assert_eq!(s.offers(d, &c.secret), [pkg], "{d}: told of it (the whole path)");
        assert_eq!(s.offers(d, &c.secret), [pkg], "{d}: again (its answer is kept)");
    }
    let kept = u64::from(!outpost_tests::backend_is_postgres());
    let before = s.polls_from_memory();
    let (status, body) = s.report("pc1", &one.secret, 0x51, pkg).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(srv.status_of(pkg, "pc1"), "SUCCESS");
    assert_eq!(s.offers("pc1", &one.secret), Vec::<u64>::new(), "pc1 reported: nothing to offer");
    assert_eq!(s.offers("pc2", &two.secret), [pkg], "pc2 did not");
    assert_eq!(s.polls_from_memory(), before + kept, "pc2's answer was still kept; pc1's was not");
    // A device cannot reopen its package by reporting the server's own
    // status (each new set of offers would be an answer to keep).
    let (status, _) = s.report_status("pc1", &one.secret, 0x52, pkg, StatusCode::parse("NOTIFIED")).unwrap();
    assert_eq!((status, srv.status_of(pkg, "pc1").as_str()), (400, "SUCCESS"), "NOTIFIED is the server's");
}

/// The agent's stored credentials (`STATE/identity`), checked private.
fn stored_identity(t: &TempDir, device: &str) -> Identity {
    let p = t.join(&format!("{device}-state/identity"));
    assert_eq!(fs::metadata(&p).expect("STATE/identity").permissions().mode() & 0o777, 0o600);
    let cfg = Config::parse(&fs::read_to_string(t.join(&format!("{device}.toml"))).unwrap()).unwrap();
    outpost_agent::rt::identity::load(&t.join(&format!("{device}-state")), &cfg).expect("identity")
}

#[test]
fn rotate_delivers_new_credentials_and_retires_the_old_once_they_are_used() {
    let t = TempDir::new("sec-cc-rotate");
    let (mut srv, cfgs) = requiring(&t, &["pc1"]);
    let old = creds_of(&cfgs[0]);
    let first = srv.package_add(&["--action", "execute", "--command", "true"]);
    srv.start();
    srv.assign(first, "pc1", &[]);
    let o = agent(&cfgs[0], &["run", "--once"], &[]);
    assert_eq!(srv.status_of(first, "pc1"), "SUCCESS", "{}", text(&o));

    let o = srv.cmd(&["device", "rotate", "--id", "pc1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(poll_with(&srv, "pc1", &old.secret, Some(&old)).unwrap(), 200, "the old work until the new are used");
    let o = agent(&cfgs[0], &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let id = stored_identity(&t, "pc1");
    assert!(id.current.has_cert() && id.current.secret != old.secret && id.current.cert != old.cert);
    assert_eq!(id.previous, None, "used once: the old ones are forgotten on the device too");
    assert!(!fs::read_to_string(&cfgs[0]).unwrap().contains(&id.current.secret), "the config is not rewritten");

    assert_eq!(poll_with(&srv, "pc1", &old.secret, Some(&old)).unwrap(), 401, "the old secret and certificate");
    assert_eq!(poll_with(&srv, "pc1", &id.current.secret, Some(&old)).unwrap(), 401, "the new secret, old cert");
    assert_eq!(poll_with(&srv, "pc1", &old.secret, Some(&id.current)).unwrap(), 401, "the old secret, new cert");
    assert_eq!(poll_with(&srv, "pc1", &id.current.secret, Some(&id.current)).unwrap(), 200);

    // After a restart the agent goes on with what it stored.
    let second = srv.package_add(&["--action", "execute", "--command", "true"]);
    srv.assign(second, "pc1", &[]);
    let o = agent(&cfgs[0], &["run", "--once"], &[]);
    assert_eq!(srv.status_of(second, "pc1"), "SUCCESS", "{}", text(&o));
    let log = fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert!(log.contains("device pc1: uses its new credentials"), "{log}");
    assert!(!log.contains(&id.current.secret) && !log.contains(&old.secret), "no secret in the log");
}

/// The new credentials a poll with `creds` brings (a rotation is staged).
fn delivered(srv: &Server, creds: &Credentials) -> Credentials {
    let mut s = Session::open(srv, tls(srv, Some((&creds.cert, &creds.key)))).unwrap();
    let (status, body) = s.poll("pc1", &creds.secret).unwrap();
    assert_eq!(status, 200);
    PollReply::decode(&body).expect("a poll reply").identity.expect("the staged credentials")
}

/// The agent dies between receiving its new credentials and using them, in
/// both places it can: before it stored them (it still has only the old
/// ones), and after (it has the new ones, unused). Neither locks it out: the
/// server accepts the old ones until the new ones are used, and sends the new
/// ones with every poll until then. And when the admin rotates again before
/// the device used the first rotation, the device falls back to the old ones
/// and picks up the newest.
#[test]
fn a_crash_between_receipt_and_use_does_not_lock_the_device_out() {
    let t = TempDir::new("sec-cc-crash");
    let (mut srv, cfgs) = requiring(&t, &["pc1"]);
    let old = creds_of(&cfgs[0]);
    let state = t.join("pc1-state");
    srv.start();
    let rotate = || {
        let o = srv.cmd(&["device", "rotate", "--id", "pc1"]);
        assert!(o.status.success(), "{}", text(&o));
    };

    // Died before storing: the reply is lost, the old ones are still good,
    // and the next poll brings the same new ones.
    rotate();
    let new = delivered(&srv, &old);
    assert_eq!(delivered(&srv, &old), new, "sent again until used");
    // Died after storing: STATE/identity holds the new ones, unused.
    fs::create_dir_all(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let mut id = Identity::new("pc1".into(), old.clone());
    id.received(new.clone());
    outpost_agent::rt::identity::save(&state, &id).unwrap();
    let o = agent(&cfgs[0], &["run", "--once"], &[]);
    assert!(o.status.success(), "restarted with the new ones: {}", text(&o));
    assert_eq!(poll_with(&srv, "pc1", &old.secret, Some(&old)).unwrap(), 401, "promoted by that run");
    assert_eq!(stored_identity(&t, "pc1").current, new);

    // Rotated twice before the device used the first: the first is refused,
    // the device falls back and takes the second.
    rotate();
    let second = delivered(&srv, &new);
    let mut id = stored_identity(&t, "pc1");
    id.received(second);
    outpost_agent::rt::identity::save(&state, &id).unwrap();
    rotate();
    let o = agent(&cfgs[0], &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let now = stored_identity(&t, "pc1");
    assert!(now.current != new && now.previous.is_none(), "the third credentials, in use");
    assert_eq!(poll_with(&srv, "pc1", &now.current.secret, Some(&now.current)).unwrap(), 200);
    assert_eq!(poll_with(&srv, "pc1", &new.secret, Some(&new)).unwrap(), 401);
}

#[test]
fn without_the_ca_key_device_add_says_how_or_gives_a_secret_alone() {
    let t = TempDir::new("sec-cc-offline");
    let srv = Server::init(t.join("srv"), &[]);
    fs::rename(srv.dir.join("tls/ca-key.pem"), t.join("usb-ca-key.pem")).unwrap();
    let o = srv.cmd(&["device", "add", "--id", "pc1", "--agent-config", t.join("pc1.toml").to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no client certificate"), "{}", text(&o));
    assert!(!creds_of(&t.join("pc1.toml")).has_cert());
    edit_config(&srv, "require_client_cert = false", "require_client_cert = true");
    let o = srv.cmd(&["device", "add", "--id", "pc2", "--agent-config", t.join("pc2.toml").to_str().unwrap()]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("bring the CA key back"),
        "{}",
        text(&o)
    );
    assert!(!t.join("pc2.toml").exists(), "nothing written");
    let o = srv.cmd(&["device", "rotate", "--id", "pc1"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("bring the CA key back"),
        "{}",
        text(&o)
    );
    fs::rename(t.join("usb-ca-key.pem"), srv.dir.join("tls/ca-key.pem")).unwrap();
    let o = srv.cmd(&["device", "add", "--id", "pc2", "--agent-config", t.join("pc2.toml").to_str().unwrap()]);
    assert!(o.status.success() && creds_of(&t.join("pc2.toml")).has_cert(), "{}", text(&o));
}
