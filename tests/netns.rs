//! Real processes across a real link that goes down and up, in network
//! namespaces this test creates (and removes) itself, addresses in
//! 198.18.0.0/15 only. Skipped, with a message, where namespaces cannot be
//! made (not root).
//!
//! ```text
//!   [server ns 198.18.2.1] ──veth── [client ns 198.18.2.2]
//!    outpost-server serve            outpost-agent run (the link starts down)
//! ```

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outpost_tests::{TempDir, bin, run, text};

const SERVER_IP: &str = "198.18.2.1";
const CLIENT_IP: &str = "198.18.2.2";

/// Two namespaces joined by a veth pair; processes started in them are
/// killed, and the namespaces deleted, when dropped.
struct Pair {
    srv: String,
    cli: String,
    veth_cli: String,
    children: Vec<Child>,
}

impl Pair {
    /// `None` where this machine does not let the test make namespaces.
    fn new(tag: &str) -> Option<Self> {
        let id = std::process::id();
        let p = Pair {
            srv: format!("op{tag}s{id}"),
            cli: format!("op{tag}c{id}"),
            veth_cli: format!("vc{tag}{id}"),
            children: Vec::new(),
        };
        if !ip(&["netns", "add", &p.srv]) {
            return None;
        }
        let veth_srv = format!("vs{tag}{id}");
        let ok = ip(&["netns", "add", &p.cli])
            && ip(&[
                "link",
                "add",
                &veth_srv,
                "netns",
                &p.srv,
                "type",
                "veth",
                "peer",
                "name",
                &p.veth_cli,
                "netns",
                &p.cli,
            ])
            && ip(&["-n", &p.srv, "addr", "add", &format!("{SERVER_IP}/30"), "dev", &veth_srv])
            && ip(&["-n", &p.cli, "addr", "add", &format!("{CLIENT_IP}/30"), "dev", &p.veth_cli])
            && ip(&["-n", &p.srv, "link", "set", "lo", "up"])
            && ip(&["-n", &p.cli, "link", "set", "lo", "up"])
            && ip(&["-n", &p.srv, "link", "set", &veth_srv, "up"]);
        assert!(ok, "could make a namespace but not set up the link between two");
        Some(p)
    }

    /// Bring the client's end of the link up or down.
    fn client_link(&self, up: bool) {
        assert!(ip(&["-n", &self.cli, "link", "set", &self.veth_cli, if up { "up" } else { "down" }]));
    }

    /// A command that runs in namespace `ns` (`ip netns exec` execs it, so
    /// the child is the program itself).
    fn exec(ns: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program).stdin(Stdio::null());
        c
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill(); // this child's pid only, never a group
            let _ = c.wait();
        }
        ip(&["netns", "del", &self.srv]);
        ip(&["netns", "del", &self.cli]);
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).stdin(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Poll `f` every 100 ms until it gives a value, for at most `secs`: real
/// processes on a real link, where virtual time cannot stand in.
#[allow(clippy::disallowed_methods)]
fn within<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..secs * 10 {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Waits the agent announced in its log ("next poll in N s"), in order.
fn waits(log: &Path) -> Vec<u64> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split("next poll in ").nth(1)?.strip_suffix('s')?.parse().ok())
        .collect()
}

#[test]
#[allow(clippy::disallowed_methods)]
fn link_up_wakes_the_agent_out_of_its_backoff() {
    let Some(mut pair) = Pair::new("lk") else {
        eprintln!("SKIPPED link_up_wakes_the_agent_out_of_its_backoff: cannot create network namespaces (needs root)");
        return;
    };
    let t = TempDir::new("netns-link");
    let dir = t.join("srv");
    let server = |args: &[&str]| {
        let o = run(Pair::exec(&pair.srv, &bin("outpost-server")).args(args).arg("--dir").arg(&dir));
        assert!(o.status.success(), "outpost-server {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let https = format!("{SERVER_IP}:8443");
    let http = format!("{SERVER_IP}:8080");
    // On PostgreSQL the server reaches the cluster through its Unix socket:
    // 127.0.0.1 in the server's namespace is not the host's.
    let database = outpost_tests::test_database();
    let socket_url = database.as_ref().map(|db| db.socket_url());
    let mut init = vec!["init", "--https", &https, "--http", &http, "--san", SERVER_IP];
    match &socket_url {
        None => {}
        Some(Some(url)) => init.extend_from_slice(&["--database", url]),
        Some(None) => {
            eprintln!(
                "SKIPPED link_up_wakes_the_agent_out_of_its_backoff: the PostgreSQL cluster has no Unix socket, \
                 and a server in a network namespace cannot reach its 127.0.0.1"
            );
            return;
        }
    }
    server(&init);
    let package = server(&["package", "add", "--action", "execute", "--command", "true"]);
    let cfg = t.join("pc.toml");
    let state = t.join("pc-state");
    server(&[
        "device",
        "add",
        "--id",
        "pc",
        "--agent-config",
        cfg.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    server(&["assign", "--package", &package, "--device", "pc"]);
    let serve_log = fs::File::create(t.join("serve.log")).unwrap();
    let serve = Pair::exec(&pair.srv, &bin("outpost-server"))
        .args(["serve", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(serve_log)
        .spawn()
        .expect("spawn serve");
    pair.children.push(serve);

    // The client's link is down: every poll fails and the backoff grows.
    let agent_log = t.join("agent.log");
    let agent = Pair::exec(&pair.cli, &bin("outpost-agent"))
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .env("OUTPOST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&agent_log).unwrap())
        .spawn()
        .expect("spawn agent");
    pair.children.push(agent);
    // The fourth failure waits 4-8 s (1 s doubling, jitter in [d/2, d]).
    let long = within(20, || waits(&agent_log).into_iter().find(|w| *w >= 4));
    assert!(
        long.is_some(),
        "the backoff never grew: {:?}\n{}",
        waits(&agent_log),
        fs::read_to_string(&agent_log).unwrap()
    );
    // Let the wait look at the link (down) first, then plug the cable in.
    std::thread::sleep(Duration::from_millis(300));
    pair.client_link(true);

    let status = || {
        let o = run(Pair::exec(&pair.srv, &bin("outpost-server")).args(["status", "--json", "--dir"]).arg(&dir));
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        s.contains("\"SUCCESS\"").then_some(s)
    };
    let done = within(30, status);
    let log = fs::read_to_string(&agent_log).unwrap();
    assert!(done.is_some(), "no SUCCESS after the link came up\n{log}");
    // Only a link-up event logs this: the agent did not sit out its backoff.
    assert!(log.contains("the link to the server is up: waking"), "it sat out its backoff instead of waking\n{log}");
}
