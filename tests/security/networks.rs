//! Item 11, network policy (opsi's `networks`, `admin-networks` and
//! `trusted-proxies`, `[security]` in `server.toml`): a connection from
//! outside `networks` is closed before TLS, before a byte is read; an
//! administrative route refuses a client outside `admin_networks`; and a
//! client that sends `X-Forwarded-For` or `Forwarded` itself, not being a
//! trusted proxy, is counted by its own address whatever they say, so it
//! escapes neither a lockout nor `admin_networks`. The tests are several
//! clients on one host: each connects from its own loopback address
//! (127.0.0.5, …). Behind a real nginx: `tests/proxy.rs`.
#![allow(clippy::disallowed_methods)] // real sockets: bounded read timeouts

use std::io::{ErrorKind, Read};
use std::time::Duration;

use outpost_tests::{Server, TempDir, connect_from, https_from};

use crate::ocs_kind::edit_config;

/// `POST /api/v1/poll` from `src` as `device` with `secret` and `headers`.
pub(crate) fn poll_from(srv: &Server, src: &str, device: &str, secret: &str, headers: &[&str]) -> u16 {
    let auth = format!("Authorization: Outpost {device} {secret}");
    let mut h = vec![auth.as_str()];
    h.extend_from_slice(headers);
    let ca = srv.dir.join("tls/ca-cert.pem");
    https_from(src, srv.https_port, &ca, "POST", "/api/v1/poll", &h, b"outpost 1\n").expect("poll").0
}

/// The secret `device add` wrote into the agent configuration `cfg`.
pub(crate) fn secret_of(cfg: &std::path::Path) -> String {
    let t = std::fs::read_to_string(cfg).expect("agent config");
    t.lines().find_map(|l| l.strip_prefix("secret = ")).expect("secret line").trim_matches('"').to_string()
}

const WRONG: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Whether the server closes a fresh connection from `src` to `port`
/// without waiting for the client to say anything (a TLS server waits for
/// the ClientHello, a plain one for a request: up to 30 s).
fn closed_unasked(src: &str, port: u16) -> bool {
    let mut s = connect_from(src, port).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(n) => panic!("the server answered {n} bytes: {:?}", String::from_utf8_lossy(&b[..n])),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

#[test]
fn a_connection_from_outside_networks_is_closed_before_tls() {
    let t = TempDir::new("sec-networks");
    let mut srv = Server::init(t.join("srv"), &[]);
    let secret = secret_of(&srv.device_add("pc1", t.path()));
    edit_config(&srv, "networks = [\"0.0.0.0/0\", \"::/0\"]", "networks = [\"127.0.0.1/32\"]");
    srv.start();
    assert!(closed_unasked("127.0.0.5", srv.https_port), "HTTPS: closed before any TLS");
    assert!(closed_unasked("127.0.0.5", srv.http_port), "plain HTTP: closed before any request");
    assert!(!closed_unasked("127.0.0.1", srv.http_port), "a listed address is served");
    assert_eq!(poll_from(&srv, "127.0.0.1", "pc1", &secret, &[]), 200);
    let log = std::fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert!(log.contains("127.0.0.5") && log.contains("not in [security] networks"), "{log}");
}

#[test]
fn admin_networks_refuse_an_admin_route_from_a_non_admin_address() {
    let t = TempDir::new("sec-admin-networks");
    let mut srv = Server::init(t.join("srv"), &[]);
    edit_config(&srv, "admin_networks = [\"127.0.0.0/8\", \"::1/128\"]", "admin_networks = [\"127.0.0.1/32\"]");
    srv.start();
    let ca = srv.dir.join("tls/ca-cert.pem");
    let health = |src| https_from(src, srv.https_port, &ca, "GET", "/admin/v1/health", &[], b"").expect("request");
    assert_eq!(health("127.0.0.1"), (200, "ok\n".to_string()));
    assert_eq!(health("127.0.0.5").0, 403, "not an admin address");
    let unknown = https_from("127.0.0.5", srv.https_port, &ca, "GET", "/admin/v2/x", &[], b"").unwrap();
    assert_eq!(unknown.0, 403, "an outsider learns nothing of which admin routes exist");
}

#[test]
fn forwarding_headers_from_an_untrusted_client_escape_neither_lockout_nor_admin_networks() {
    let t = TempDir::new("sec-xff-untrusted");
    let mut srv = Server::init(t.join("srv"), &[]);
    let secret = secret_of(&srv.device_add("pc1", t.path()));
    // A proxy is trusted, but not the client's address.
    edit_config(&srv, "trusted_proxies = []", "trusted_proxies = [\"127.0.0.9/32\"]");
    edit_config(&srv, "admin_networks = [\"127.0.0.0/8\", \"::1/128\"]", "admin_networks = [\"127.0.0.1/32\"]");
    srv.start();
    for i in 0..10 {
        // Each guess claims to come from somewhere else.
        let xff = format!("X-Forwarded-For: 198.51.100.{i}");
        let fwd = format!("Forwarded: for=203.0.113.{i}");
        assert_eq!(poll_from(&srv, "127.0.0.5", "pc1", WRONG, &[&xff, &fwd]), 401, "guess {i}");
    }
    let escape = ["X-Forwarded-For: 127.0.0.6", "Forwarded: for=127.0.0.6"];
    assert_eq!(poll_from(&srv, "127.0.0.5", "pc1", &secret, &escape), 429, "still blocked: the headers were ignored");
    assert_eq!(poll_from(&srv, "127.0.0.6", "pc1", &secret, &[]), 200, "the address it named is not blocked");
    let o = srv.cmd(&["status", "--blocked", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v[0]["address"], "127.0.0.5", "{v}");
    let ca = srv.dir.join("tls/ca-cert.pem");
    let admin =
        https_from("127.0.0.5", srv.https_port, &ca, "GET", "/admin/v1/health", &["X-Forwarded-For: 127.0.0.1"], b"");
    assert_eq!(admin.unwrap().0, 403, "claiming an admin address gets no admin route");
}
