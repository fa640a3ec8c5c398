//! Item 4: guessing device secrets and OCS Basic credentials. After
//! `max_auth_failures` (10) failures within `auth_failures_interval` the
//! claimed device is blocked from that address for `client_block_time`:
//! its requests get 429 without their secret being checked, even the right
//! one. Devices behind the same NAT address, claiming their own identities,
//! are not blocked; `status --blocked` shows the block and `unblock` lifts
//! it on the running server. OCS Basic credentials, one secret shared by
//! every OCS agent, are counted and blocked per address only. Failures are
//! logged per client at most once a minute. A block ends the answers a
//! device's polls get from memory (`src/poll_cache.rs`): the first test
//! got 200 for the blocked claim with the server's own commits not moving
//! the cache's epoch on (`db/changes.rs`).

use std::path::Path;
use std::time::Duration;

use outpost_agent::rt::http::{Client, Url};
use outpost_tests::{Server, TempDir, text};

use crate::ocs_kind::{edit_config, ocs_post, prolog};

/// The secret `device add` wrote into the agent configuration at `cfg`.
fn secret_of(cfg: &Path) -> String {
    let t = std::fs::read_to_string(cfg).expect("agent config");
    t.lines().find_map(|l| l.strip_prefix("secret = ")).expect("secret line").trim_matches('"').to_string()
}

/// `POST /api/v1/poll` as `device` with `secret`; returns the status.
fn poll(srv: &Server, device: &str, secret: &str) -> u16 {
    let ca = std::fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).expect("CA");
    let c = Client::new(&ca, Duration::from_secs(5), Duration::from_secs(5)).expect("client");
    let url = Url::parse(&format!("https://127.0.0.1:{}/api/v1/poll", srv.https_port)).expect("url");
    let auth = format!("Outpost {device} {secret}");
    let mut r = c.request("POST", &url, &[("Authorization", &auth)], b"outpost 1\n").expect("poll");
    let _ = r.read_to_vec(1 << 16);
    r.status
}

/// How many polls the server answered from memory (`/metrics`).
fn polls_from_memory(srv: &Server) -> u64 {
    let ca = std::fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).expect("CA");
    let c = Client::new(&ca, Duration::from_secs(5), Duration::from_secs(5)).expect("client");
    let url = Url::parse(&format!("https://127.0.0.1:{}/metrics", srv.https_port)).expect("url");
    let mut r = c.request("GET", &url, &[], b"").expect("/metrics");
    let text = String::from_utf8(r.read_to_vec(1 << 20).expect("body")).expect("text");
    let v = text.lines().find_map(|l| l.strip_prefix("outpost_polls_from_memory_total "));
    v.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no count of polls from memory:\n{text}"))
}

const WRONG: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn serve_log(srv: &Server) -> String {
    std::fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default()
}

/// `status --blocked --json` as (address, identity) pairs.
fn blocked(srv: &Server) -> Vec<(String, String)> {
    let o = srv.cmd(&["status", "--blocked", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| (r["address"].as_str().unwrap_or("").into(), r["identity"].as_str().unwrap_or("").into()))
        .collect()
}

#[test]
fn guessing_a_device_secret_is_blocked_after_ten_failures() {
    let t = TempDir::new("sec-lock-guess");
    let mut srv = Server::init(t.join("srv"), &[]);
    let secret = secret_of(&srv.device_add("pc1", t.path()));
    srv.start();
    // The device's own second poll is answered from memory
    // (src/poll_cache.rs); the block, written by the server itself, must
    // end such answers too.
    assert_eq!(poll(&srv, "pc1", &secret), 200);
    let before = polls_from_memory(&srv);
    assert_eq!(poll(&srv, "pc1", &secret), 200);
    // (On PostgreSQL no answer is kept: every poll takes the whole path.)
    let kept = u64::from(!outpost_tests::backend_is_postgres());
    assert_eq!(polls_from_memory(&srv), before + kept, "answered from memory");
    for i in 0..10 {
        assert_eq!(poll(&srv, "pc1", WRONG), 401, "guess {i}");
    }
    assert_eq!(poll(&srv, "pc1", &secret), 429, "blocked: even the right secret is not checked");
    let log = serve_log(&srv);
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("authentication failed")).collect();
    assert_eq!(failures.len(), 1, "the first failure logged, the rest within the minute not: {log}");
    assert!(failures.iter().all(|l| l.contains("127.0.0.1") && l.contains("pc1")), "with the peer: {log}");
    assert!(!log.contains(WRONG) && !log.contains(&secret), "no secret in the log");
    assert_eq!(blocked(&srv), [("127.0.0.1".to_string(), "pc1".to_string())]);
    let o = srv.cmd(&["status"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("BLOCKED ADDRESS"), "{}", text(&o));
}

#[test]
fn one_guessing_client_does_not_lock_out_its_nat_neighbours() {
    let t = TempDir::new("sec-lock-nat");
    let mut srv = Server::init(t.join("srv"), &[]);
    let victim = secret_of(&srv.device_add("victim", t.path()));
    let neighbour = secret_of(&srv.device_add("neighbour", t.path()));
    let newcomer = secret_of(&srv.device_add("newcomer", t.path()));
    edit_config(&srv, "max_address_auth_failures = 100", "max_address_auth_failures = 30");
    srv.start();
    assert_eq!(poll(&srv, "neighbour", &neighbour), 200, "the neighbour works from this address");
    for _ in 0..10 {
        assert_eq!(poll(&srv, "victim", WRONG), 401);
    }
    assert_eq!(poll(&srv, "victim", &victim), 429, "the guessed identity is blocked from this address");
    assert_eq!(poll(&srv, "neighbour", &neighbour), 200, "its NAT neighbour is not");
    assert_eq!(poll(&srv, "newcomer", &newcomer), 200, "nor a device that never worked from here");
    // Rotating made-up identities trips the address-wide threshold (30 here) …
    for i in 0..20 {
        assert_eq!(poll(&srv, &format!("made-up-{i}"), WRONG), 401, "made-up {i}");
    }
    assert_eq!(poll(&srv, "stranger", WRONG), 429, "the address is blocked for new identities");
    // … but devices that authenticated from this address keep working.
    assert_eq!(poll(&srv, "neighbour", &neighbour), 200);
    assert_eq!(poll(&srv, "newcomer", &newcomer), 200);
}

#[test]
fn unblock_takes_effect_on_the_running_server() {
    let t = TempDir::new("sec-lock-unblock");
    let mut srv = Server::init(t.join("srv"), &[]);
    let secret = secret_of(&srv.device_add("pc1", t.path()));
    srv.start();
    for _ in 0..10 {
        assert_eq!(poll(&srv, "pc1", WRONG), 401);
    }
    assert_eq!(poll(&srv, "pc1", &secret), 429);
    let o = srv.cmd(&["unblock", "--address", "127.0.0.1"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("1 block(s) lifted"), "{}", text(&o));
    assert_eq!(poll(&srv, "pc1", &secret), 200, "no restart needed");
    assert!(blocked(&srv).is_empty());
    let o = srv.cmd(&["unblock", "--address", "not-an-address"]);
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn guessing_ocs_basic_credentials_is_blocked_per_address_and_logged() {
    let t = TempDir::new("sec-lock-basic");
    let mut srv = Server::init(t.join("srv"), &[]);
    let conf = srv.dir.join("server.toml");
    let mut c = std::fs::read_to_string(&conf).expect("server.toml");
    c.push_str("\n[ocs.basic_auth]\nuser = \"ocs\"\npassword = \"branch-pw-77\"\nrealm = \"Outpost\"\n");
    std::fs::write(&conf, c).expect("write server.toml");
    srv.start();
    // base64("ocs:branch-pw-77") and base64("ocs:guess")
    let (good, bad) = ("Basic b2NzOmJyYW5jaC1wdy03Nw==", "Basic b2NzOmd1ZXNz");
    let pc = |i: usize| format!("pc{i}-2026-11-23-18-03-38");
    assert_eq!(ocs_post(&srv, &prolog(&pc(0)), Some(good)).0, 200, "an agent that works from this address");
    assert_eq!(ocs_post(&srv, &prolog(&pc(1)), None).0, 401, "the challenge");
    // The secret is shared and DEVICEIDs are public: a guesser claims a
    // different DEVICEID each time, and still gets 10 tries per address.
    for i in 1..=10 {
        assert_eq!(ocs_post(&srv, &prolog(&pc(i)), Some(bad)).0, 401, "guess {i}");
    }
    for i in [11, 1, 0] {
        let (status, _, retry) = ocs_post(&srv, &prolog(&pc(i)), Some(good));
        assert_eq!(status, 429, "the address is blocked for every DEVICEID ({i}), the password unchecked");
        assert!(retry.is_some(), "Retry-After");
    }
    let log = serve_log(&srv);
    assert_eq!(log.matches("127.0.0.1: authentication failed (OCS Basic").count(), 1, "{log}");
    assert!(log.contains("blocking every claim (ocs) from 127.0.0.1"), "{log}");
    assert!(!log.contains("branch-pw-77") && !log.contains("b2NzOmd1ZXNz"), "no credentials in the log");
    assert_eq!(blocked(&srv), [("127.0.0.1".to_string(), "*".to_string())]);
}

#[test]
fn many_failures_from_one_client_are_logged_a_few_lines_at_most() {
    let t = TempDir::new("sec-lock-logs");
    let mut srv = Server::init(t.join("srv"), &[]);
    // No block gets in the way: every one of the 200 guesses is checked.
    edit_config(&srv, "max_address_auth_failures = 100", "max_address_auth_failures = 100000");
    edit_config(&srv, "max_auth_failures = 10", "max_auth_failures = 100000");
    srv.start();
    for i in 0..200 {
        assert_eq!(poll(&srv, &format!("made-up-{}", i % 7), WRONG), 401, "guess {i}");
    }
    let log = serve_log(&srv);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("authentication failed")).collect();
    assert!(!lines.is_empty() && lines.len() <= 3, "{} failure lines for 200 failures: {log}", lines.len());
    assert!(lines.iter().all(|l| l.contains("127.0.0.1")), "each with the peer address: {log}");
}
