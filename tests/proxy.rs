//! outpost-server behind Debian's real nginx as a TLS-terminating reverse
//! proxy, set up as the README's "Putting outpost-server on the internet
//! behind nginx" tells users: nginx terminates TLS with the server's
//! certificate, passes requests on to the HTTPS listener over TLS verified
//! against the server's CA, and appends the address it was connected from
//! to `X-Forwarded-For`. nginx connects to the server from 127.0.0.9
//! (`proxy_bind`), and each client from its own loopback address
//! (127.0.0.5, …), so the server can tell the proxy and the clients apart.
//!
//! From a proxy in `trusted_proxies` the forwarded client address is what
//! lockout, `networks`, `admin_networks` and the logs use; from any other
//! it is ignored, and what it forwards is never administrative.
#![allow(clippy::disallowed_methods)] // real processes

use std::fs;
use std::path::Path;
use std::process::Child;

use outpost_tests::{Server, TempDir, free_port, https_from, text};

/// The address nginx connects to outpost-server from.
const PROXY: &str = "127.0.0.9";

/// The `server` block of the README, for `srv` (its directory, its HTTPS
/// port) and a public port on 127.0.0.1.
fn server_block(srv: &Server, port: u16) -> String {
    let d = srv.dir.display();
    let https = srv.https_port;
    format!(
        "  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate     {d}/tls/server-cert.pem;
    ssl_certificate_key {d}/tls/server-key.pem;
    client_max_body_size 256k;
    location / {{
      proxy_pass https://127.0.0.1:{https};
      proxy_bind {PROXY};
      proxy_ssl_trusted_certificate {d}/tls/ca-cert.pem;
      proxy_ssl_verify on;
      proxy_ssl_name 127.0.0.1;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}\n"
    )
}

/// nginx in the foreground in `t`, in front of `srv`; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(t: &TempDir, srv: &Server) -> Self {
        let p = t.path().display();
        let port = free_port();
        fs::create_dir_all(t.join("tmp")).unwrap();
        let conf = t.join("nginx.conf");
        let temp: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .iter()
            .map(|k| format!("  {k}_temp_path {p}/tmp;\n"))
            .collect();
        fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
                 events {{ worker_connections 64; }}\nhttp {{\n  access_log {p}/access.log;\n{temp}{}}}\n",
                server_block(srv, port)
            ),
        )
        .unwrap();
        let child = outpost_tests::spawn_nginx(t.path(), &conf, port);
        Self { child, port }
    }

    /// `POST /api/v1/poll` through nginx from `src`; returns the status.
    fn poll(&self, srv: &Server, src: &str, device: &str, secret: &str, headers: &[&str]) -> u16 {
        let auth = format!("Authorization: Outpost {device} {secret}");
        let mut h = vec![auth.as_str()];
        h.extend_from_slice(headers);
        self.request(srv, src, "POST", "/api/v1/poll", &h, b"outpost 1\n")
    }

    /// A request through nginx from `src`; returns the status.
    fn request(&self, srv: &Server, src: &str, method: &str, path: &str, headers: &[&str], body: &[u8]) -> u16 {
        let ca = srv.dir.join("tls/ca-cert.pem");
        https_from(src, self.port, &ca, method, path, headers, body).expect("request through nginx").0
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replace `from` by `to` in DIR/server.toml (before `start`).
fn edit_config(srv: &Server, from: &str, to: &str) {
    let p = srv.dir.join("server.toml");
    let t = fs::read_to_string(&p).unwrap();
    assert!(t.contains(from), "server.toml has no {from:?}:\n{t}");
    fs::write(&p, t.replacen(from, to, 1)).unwrap();
}

fn secret_of(cfg: &Path) -> String {
    let t = fs::read_to_string(cfg).expect("agent config");
    t.lines().find_map(|l| l.strip_prefix("secret = ")).expect("secret line").trim_matches('"').to_string()
}

/// `status --blocked --json` as (address, identity) pairs.
fn blocked(srv: &Server) -> Vec<(String, String)> {
    let o = srv.cmd(&["status", "--blocked", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let s = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    v.as_array().expect("array").iter().map(|r| (s(r, "address"), s(r, "identity"))).collect()
}

const WRONG: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A server with device `pc1` behind nginx, `trusted_proxies` as given.
/// Returns the server, nginx and pc1's agent configuration.
fn setup(t: &TempDir, trusted: &str, edits: &[(&str, &str)]) -> (Server, Nginx, std::path::PathBuf) {
    let mut srv = Server::init(t.join("srv"), &[]);
    let cfg = srv.device_add("pc1", t.path());
    edit_config(&srv, "trusted_proxies = []", &format!("trusted_proxies = [{trusted}]"));
    for (from, to) in edits {
        edit_config(&srv, from, to);
    }
    srv.start();
    let nginx = Nginx::start(t, &srv);
    (srv, nginx, cfg)
}

#[test]
fn behind_a_trusted_nginx_lockout_counts_the_forwarded_client() {
    let t = TempDir::new("proxy-trusted");
    let (srv, nginx, cfg) = setup(&t, &format!("\"{PROXY}/32\""), &[]);
    let secret = secret_of(&cfg);
    // The real agent, pointed at nginx, polls through it.
    let via = t.join("via-nginx.toml");
    let c = fs::read_to_string(&cfg).unwrap();
    let direct = format!("https://127.0.0.1:{}", srv.https_port);
    assert!(c.contains(&direct), "{c}");
    fs::write(&via, c.replace(&direct, &format!("https://127.0.0.1:{}", nginx.port))).unwrap();
    let o = outpost_tests::agent(&via, &["run", "--once"], &[]);
    assert!(o.status.success(), "the agent works through nginx: {}", text(&o));
    // A guesser at .5 names .6 itself: nginx appends .5, the rightmost hop.
    for i in 0..10 {
        assert_eq!(nginx.poll(&srv, "127.0.0.5", "pc1", WRONG, &["X-Forwarded-For: 127.0.0.6"]), 401, "guess {i}");
    }
    assert_eq!(nginx.poll(&srv, "127.0.0.5", "pc1", &secret, &[]), 429, "the guesser is blocked");
    assert_eq!(nginx.poll(&srv, "127.0.0.6", "pc1", &secret, &[]), 200, "another client behind the same proxy is not");
    assert_eq!(blocked(&srv), [("127.0.0.5".to_string(), "pc1".to_string())]);
    let log = fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert!(log.contains("127.0.0.5: authentication failed"), "logged with the client's address: {log}");
    assert!(log.contains(&format!("127.0.0.5 (via {PROXY}:")), "and the proxy's: {log}");
}

#[test]
fn behind_an_untrusted_nginx_the_forwarded_address_is_ignored_and_nothing_is_admin() {
    let t = TempDir::new("proxy-untrusted");
    let (srv, nginx, cfg) = setup(&t, "", &[]);
    let secret = secret_of(&cfg);
    for i in 0..10 {
        assert_eq!(nginx.poll(&srv, "127.0.0.5", "pc1", WRONG, &[]), 401, "guess {i}");
    }
    // Everything through the proxy is the proxy's address.
    assert_eq!(nginx.poll(&srv, "127.0.0.6", "pc1", &secret, &[]), 429, "a neighbour shares the proxy's block");
    assert_eq!(blocked(&srv), [(PROXY.to_string(), "pc1".to_string())]);
    // The proxy's address is loopback, an admin one by default; a request it
    // forwards is still not administrative.
    let health = nginx.request(&srv, "127.0.0.5", "GET", "/admin/v1/health", &[], b"");
    assert_eq!(health, 403, "no admin route through a proxy missing from trusted_proxies");
    let log = fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert!(log.contains("forwarding headers from a peer not in [security] trusted_proxies"), "{log}");
}

#[test]
fn behind_a_trusted_nginx_networks_and_admin_networks_apply_to_the_forwarded_client() {
    let t = TempDir::new("proxy-networks");
    let networks = format!("networks = [\"{PROXY}/32\", \"127.0.0.5/32\", \"127.0.0.6/32\"]");
    let admins = format!("admin_networks = [\"{PROXY}/32\", \"127.0.0.5/32\"]");
    let edits = [
        ("networks = [\"0.0.0.0/0\", \"::/0\"]", networks.as_str()),
        ("admin_networks = [\"127.0.0.0/8\", \"::1/128\"]", admins.as_str()),
    ];
    let (srv, nginx, cfg) = setup(&t, &format!("\"{PROXY}/32\""), &edits);
    let secret = secret_of(&cfg);
    assert_eq!(nginx.poll(&srv, "127.0.0.6", "pc1", &secret, &[]), 200, "a client in networks");
    assert_eq!(nginx.poll(&srv, "127.0.0.7", "pc1", &secret, &[]), 403, "one outside them, through a listed proxy");
    let health = |src| nginx.request(&srv, src, "GET", "/admin/v1/health", &[], b"");
    assert_eq!(health("127.0.0.5"), 200, "an admin client");
    assert_eq!(health("127.0.0.6"), 403, "the proxy's address is an admin one, the client's is not");
}
