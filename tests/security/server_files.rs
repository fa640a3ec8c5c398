//! Item 6: the server directory's secrets. `server.toml` (it may hold the
//! OCS Basic password) and `state.db` with its `-wal`/`-shm` files are
//! created 0600, `keys/` and `tls/` 0700; looser modes found at `serve`
//! start are tightened with a warning. The CA's private key signs the
//! server certificate only: every other command works with it moved offline.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use outpost_agent::rt::http::{Client, Url};
use outpost_tests::{Server, TempDir, database_url, text};

use crate::http_hygiene::exchange;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

fn assert_private(dir: &Path) {
    // On PostgreSQL (`[database] url`, which may hold a password) no state.db is made.
    let sqlite = database_url(dir).is_none();
    for f in ["server.toml", "state.db", "state.db-wal", "state.db-shm", "keys/signing.pk8", "tls/server-key.pem"] {
        let p = dir.join(f);
        if !f.starts_with("state.db") || sqlite && (p.exists() || f == "state.db") {
            assert_eq!(mode(&p), 0o600, "{f}");
        } else if !sqlite {
            assert!(!p.exists(), "{f}: the state is in PostgreSQL");
        }
    }
    for d in ["keys", "tls"] {
        assert_eq!(mode(&dir.join(d)), 0o700, "{d}/");
    }
    assert_eq!(mode(dir), 0o700, "DIR itself");
}

#[test]
fn server_toml_and_state_db_are_private() {
    let t = TempDir::new("sec-files-modes");
    let mut srv = Server::init(t.join("srv"), &[]);
    assert_private(&srv.dir);
    srv.start();
    if database_url(&srv.dir).is_none() {
        assert!(srv.dir.join("state.db-wal").exists(), "WAL mode: the -wal file exists while serving");
    }
    assert_private(&srv.dir);
    assert!(srv.stop());

    // An older server directory (or an admin's chmod): tightened at start, with a warning.
    for f in ["server.toml", "state.db", "state.db-wal", "state.db-shm"] {
        let p = srv.dir.join(f);
        if p.exists() {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    fs::set_permissions(srv.dir.join("keys"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&srv.dir, fs::Permissions::from_mode(0o755)).expect("chmod DIR");
    srv.start();
    assert_private(&srv.dir);
    let log = fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert!(log.contains(&format!("{} was mode 0755", srv.dir.display())), "{log}");
    assert!(log.contains("server.toml was mode 0644, readable by others; made 0600"), "{log}");
    assert!(log.contains("keys was mode 0755"), "{log}");
}

#[test]
fn serve_works_with_the_ca_key_offline() {
    let t = TempDir::new("sec-files-ca");
    let mut srv = Server::init(t.join("srv"), &[]);
    let offline = t.join("usb-stick-ca-key.pem");
    fs::rename(srv.dir.join("tls/ca-key.pem"), &offline).expect("move the CA key offline");

    let help = srv.cmd(&["serve", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("You may keep the key offline"), "{}", text(&help));
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    let cfg = srv.device_add("pc1", t.path());
    srv.assign(id, "pc1", &[]);
    for args in [&["status"][..], &["status", "--blocked"], &["unblock", "--address", "192.0.2.1"]] {
        let o = srv.cmd(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    srv.start();
    // The device's configuration verifies the server with the CA certificate alone.
    let secret = fs::read_to_string(&cfg).expect("config");
    let secret = secret.lines().find_map(|l| l.strip_prefix("secret = ")).expect("secret").trim_matches('"');
    let ca = fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).expect("CA certificate");
    let c = Client::new(&ca, Duration::from_secs(5), Duration::from_secs(5)).expect("client");
    let url = Url::parse(&format!("https://127.0.0.1:{}/api/v1/poll", srv.https_port)).expect("url");
    let mut r =
        c.request("POST", &url, &[("Authorization", &format!("Outpost pc1 {secret}"))], b"outpost 1\n").expect("poll");
    let body = String::from_utf8_lossy(&r.read_to_vec(1 << 16).expect("reply")).into_owned();
    assert_eq!(r.status, 200, "{body}");
    assert!(body.contains(&format!("package id={id} ")), "{body}");
    assert!(!srv.dir.join("tls/ca-key.pem").exists(), "nothing recreated it");
}

#[test]
fn an_https_package_is_not_served_over_plain_http() {
    let t = TempDir::new("sec-files-https-pkg");
    let mut srv = Server::init(t.join("srv"), &[]);
    let payload = t.join("payload.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    {
        let mut tar = tar::Builder::new(&mut gz);
        let data = b"confidential enough to be published over HTTPS only";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "secret.txt", &data[..]).unwrap();
        tar.finish().unwrap();
    }
    fs::write(&payload, gz.finish().unwrap()).unwrap();
    let f = payload.to_str().unwrap();
    let common = ["--file", f, "--action", "store", "--path", "/tmp/x"];
    let https = srv.package_add(&[&common[..], &["--proto", "https"]].concat());
    let plain = srv.package_add(&common);
    srv.start();
    let get = |id: u64| format!("GET /download/{id}/{id}-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = exchange(srv.http_port, get(https).as_bytes()).expect("an answer");
    assert_eq!(r.status, 404, "an HTTPS package's fragment on the plain listener: {}", r.head);
    let r = exchange(srv.http_port, get(plain).as_bytes()).expect("an answer");
    assert_eq!(r.status, 200, "an HTTP package's fragment: {}", r.head);
    // Over TLS it is served.
    let ca = fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).expect("CA certificate");
    let c = Client::new(&ca, Duration::from_secs(5), Duration::from_secs(5)).expect("client");
    let url = Url::parse(&format!("https://127.0.0.1:{}/download/{https}/{https}-1", srv.https_port)).expect("url");
    let mut r = c.request("GET", &url, &[], b"").expect("fragment over TLS");
    assert_eq!(r.status, 200);
    assert_eq!(r.read_to_vec(1 << 16).expect("body"), fs::read(&payload).unwrap());
}
