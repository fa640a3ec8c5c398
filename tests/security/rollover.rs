//! Issue 12, "harden the chain of trust": CA and signing-key rollover
//! (`docs/rollover.md`). An agent configured with the old CA and the old
//! key follows both rollovers at its polls, with no manual step, and learns
//! a CA or a key only over a connection it verified with what it already
//! trusts, vouched for by a key it already trusts.
//!
//! - [`an_agent_holding_only_the_old_ca_follows_a_ca_rollover_with_no_manual_step`]:
//!   `ca rotate`, a poll, `ca switch`: the agent still deploys; one that did
//!   not poll between the two cannot connect (what learning the CA spares).
//! - [`a_ca_offered_over_a_connection_the_agent_cannot_verify_is_never_learned`]:
//!   a man in the middle with its own CA offers a bundle listing it, even
//!   signed with the real signing key: the agent never talks to it.
//! - [`packages_signed_by_the_old_or_the_new_key_verify_during_the_overlap`]:
//!   `keys rotate`; old and new packages install on old and new agents.
//! - [`a_signing_key_no_trusted_key_vouches_for_is_refused`]: a bundle
//!   signed only by the key it brings is refused, and so is that key's package.

use std::fs;

use outpost_agent::engine::trust::{Bundle, TrustedCa, TrustedKey};
use outpost_tests::{Server, TempDir, agent, https_from, text};
use ring::signature::{Ed25519KeyPair, KeyPair};

/// An execute package that only exits 0.
fn package(srv: &Server, name: &str) -> u64 {
    srv.package_add(&["--action", "execute", "--command", "true", "--name", name])
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", text(o));
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_agent_holding_only_the_old_ca_follows_a_ca_rollover_with_no_manual_step() {
    let t = TempDir::new("ca-rollover");
    let mut srv = Server::init(t.join("srv"), &[]);
    let pc1 = srv.device_add("pc-1", t.path());
    let late = srv.device_add("late", t.path());
    let config_before = fs::read(&pc1).unwrap();
    let old_ca = t.join("old-ca.pem");
    fs::copy(srv.dir.join("tls/ca-cert.pem"), &old_ca).unwrap();
    srv.start();
    let p1 = package(&srv, "before");
    srv.assign(p1, "pc-1", &[]);
    let o = agent(&pc1, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(p1, "pc-1"), "SUCCESS", "{}", text(&o));

    // Step 1: a new CA, published while the old one serves. No restart.
    ok(&srv.cmd(&["ca", "rotate"]));
    let p2 = package(&srv, "between");
    srv.assign(p2, "pc-1", &[]);
    let o = agent(&pc1, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(p2, "pc-1"), "SUCCESS", "{}", text(&o));
    assert!(stderr(&o).contains("trust bundle version 1 adopted"), "{}", text(&o));
    assert!(t.path().join("pc-1-state/trust").exists());
    // A device registered now gets both CAs.
    let fresh = srv.device_add("fresh", t.path());
    let conf = fs::read_to_string(&fresh).unwrap();
    // `server.ca_cert` (the config also holds the device's client certificate).
    let ca_cert = conf.split("ca_cert = \"\"\"").nth(1).and_then(|r| r.split("\"\"\"").next()).unwrap_or_default();
    assert_eq!(ca_cert.matches("BEGIN CERTIFICATE").count(), 2, "{conf}");

    // Step 2: the server's certificate now comes from the new CA.
    let o = srv.cmd(&["ca", "switch"]);
    ok(&o);
    assert!(srv.stop());
    srv.start();
    let poll = |ca: &std::path::Path| {
        https_from("127.0.0.1", srv.https_port, ca, "GET", "/admin/v1/health", &[], b"").map(|(s, _)| s)
    };
    assert!(poll(&old_ca).is_err(), "the old CA no longer verifies the server");
    assert_eq!(poll(&srv.dir.join("tls/ca-cert.pem")).unwrap(), 200, "the new CA does");

    let p3 = package(&srv, "after");
    for d in ["pc-1", "late", "fresh"] {
        srv.assign(p3, d, &[]);
    }
    let o = agent(&pc1, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(p3, "pc-1"), "SUCCESS", "{}", text(&o));
    assert_eq!(fs::read(&pc1).unwrap(), config_before, "no manual step: the configuration is as device add wrote it");
    let o = agent(&fresh, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(p3, "fresh"), "SUCCESS", "{}", text(&o));
    // What learning the CA spared pc-1: an agent that did not poll between
    // rotate and switch holds only the old CA, and is cut off.
    let o = agent(&late, &["run", "--once"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_ne!(srv.status_of(p3, "late"), "SUCCESS");
    assert!(stderr(&o).contains("certificate"), "{}", text(&o));
}

#[test]
fn a_ca_offered_over_a_connection_the_agent_cannot_verify_is_never_learned() {
    let t = TempDir::new("ca-mitm");
    let mut real = Server::init(t.join("srv"), &[]);
    let pc1 = real.device_add("pc-1", t.path());
    let p1 = package(&real, "p1");
    real.assign(p1, "pc-1", &[]);

    // The man in the middle: the real server's directory (devices, the
    // real signing key: the strongest attacker) with another CA's
    // certificate for the same address, and a bundle listing that CA,
    // signed with the real key.
    let other = Server::init(t.join("other"), &[]);
    let mut mitm = real.copy_to(t.join("mitm"));
    for f in ["ca-cert.pem", "ca-key.pem", "server-cert.pem", "server-key.pem"] {
        fs::copy(other.dir.join("tls").join(f), mitm.dir.join("tls").join(f)).unwrap();
    }
    ok(&mitm.cmd(&["ca", "rotate"]));
    let forged = fs::read(mitm.dir.join("trust/bundle")).unwrap();
    let (b, _, sigs) = Bundle::decode(&forged).unwrap();
    assert!(
        b.cas.iter().any(|c| c.pem.trim() == fs::read_to_string(other.dir.join("tls/ca-cert.pem")).unwrap().trim())
    );
    let real_key = outpost_server::pki::signing_public_hex(&real.dir).unwrap();
    assert!(sigs.iter().any(|(k, _)| outpost_agent::engine::digest::hex(k) == real_key), "signed with the real key");

    mitm.start();
    let o = agent(&pc1, &["run", "--once"], &[]);
    assert!(!t.path().join("pc-1-state/trust").exists(), "nothing learned from the man in the middle: {}", text(&o));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(stderr(&o).contains("certificate"), "{}", text(&o));
    assert!(!fs::read_to_string(mitm.dir.join("serve.log")).unwrap().contains("sent trust bundle"));
    assert!(mitm.stop());

    // The real server: the agent still trusts what it trusted, and works.
    real.start();
    let o = agent(&pc1, &["run", "--once"], &[]);
    assert_eq!(real.status_of(p1, "pc-1"), "SUCCESS", "{}", text(&o));
    assert!(!t.path().join("pc-1-state/trust").exists());
}

#[test]
fn packages_signed_by_the_old_or_the_new_key_verify_during_the_overlap() {
    let t = TempDir::new("key-rollover");
    let mut srv = Server::init(t.join("srv"), &[]);
    let pc1 = srv.device_add("pc-1", t.path());
    let pc2 = srv.device_add("pc-2", t.path());
    let old_key = outpost_server::pki::signing_public_hex(&srv.dir).unwrap();
    srv.start();
    let first = package(&srv, "first");
    srv.assign(first, "pc-1", &[]);
    let o = agent(&pc1, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(first, "pc-1"), "SUCCESS", "{}", text(&o));
    let by_old = package(&srv, "signed by the old key");

    let o = srv.cmd(&["keys", "rotate", "--overlap-days", "30"]);
    ok(&o);
    let new_key = outpost_server::pki::signing_public_hex(&srv.dir).unwrap();
    assert_ne!(old_key, new_key);
    let by_new = package(&srv, "signed by the new key");
    // A device registered now has the new key in its configuration.
    let pc3 = srv.device_add("pc-3", t.path());
    assert!(fs::read_to_string(&pc3).unwrap().contains(&new_key));

    for (cfg, d) in [(&pc1, "pc-1"), (&pc2, "pc-2"), (&pc3, "pc-3")] {
        for p in [by_old, by_new] {
            srv.assign(p, d, &[]);
        }
        let o = agent(cfg, &["run", "--once"], &[]);
        assert_eq!(srv.status_of(by_old, d), "SUCCESS", "{d}: {}", text(&o));
        assert_eq!(srv.status_of(by_new, d), "SUCCESS", "{d}: {}", text(&o));
        assert!(stderr(&o).contains("trust bundle version 1 adopted"), "{d}: {}", text(&o));
    }
    // A package signed by the old key can still be re-signed (renewed), now by the new one.
    ok(&srv.cmd(&["package", "resign", "--id", &by_old.to_string(), "--valid-days", "30"]));
}

#[test]
fn a_signing_key_no_trusted_key_vouches_for_is_refused() {
    let t = TempDir::new("key-forged");
    let mut srv = Server::init(t.join("srv"), &[]);
    let pc1 = srv.device_add("pc-1", t.path());
    srv.start();
    // A genuine rotation first: the agent holds version 1.
    ok(&srv.cmd(&["keys", "rotate"]));
    let genuine = package(&srv, "genuine");
    srv.assign(genuine, "pc-1", &[]);
    let o = agent(&pc1, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(genuine, "pc-1"), "SUCCESS", "{}", text(&o));
    let held = fs::read(t.path().join("pc-1-state/trust")).unwrap();

    // Someone who can write the server's files but holds no trusted key:
    // a key of their own, a bundle that lists it and only it vouches for,
    // and a package it signs.
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let rogue = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let public: [u8; 32] = rogue.public_key().as_ref().try_into().unwrap();
    let ca = fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).unwrap();
    let forged = Bundle {
        version: 9,
        issued: 0,
        cas: vec![TrustedCa { pem: ca, until: u64::MAX }],
        keys: vec![TrustedKey { public, until: None }],
    };
    let sig = rogue.sign(&forged.signed_bytes()).as_ref().try_into().unwrap();
    fs::write(srv.dir.join("trust/bundle"), forged.encode(&[(public, sig)])).unwrap();
    fs::write(srv.dir.join("keys/signing.pk8"), pkcs8.as_ref()).unwrap();
    let rogue_pkg = package(&srv, "rogue");
    srv.assign(rogue_pkg, "pc-1", &[]);
    let o = agent(&pc1, &["run", "--once"], &[]);
    assert!(stderr(&o).contains("not signed by a key this agent trusts"), "{}", text(&o));
    assert_eq!(srv.status_of(rogue_pkg, "pc-1"), "ERR_BAD_DIGEST", "{}", text(&o));
    assert_eq!(fs::read(t.path().join("pc-1-state/trust")).unwrap(), held, "the bundle held is kept");
}
