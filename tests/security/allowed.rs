//! Issue 12 (FusionInventory's advice): the endpoint, not the server,
//! decides what a package may do. A server (or whoever took it over) offers
//! a package whose action is not in `agent.allowed_actions`, or that stores
//! outside `agent.allowed_store_paths`: it ends `ERR_NOT_ALLOWED`, and
//! nothing of it is fetched, run or written.

use std::fs;

use outpost_tests::{Member, Server, TempDir, agent, targz, text, tune_agent};

#[test]
fn a_package_outside_allowed_actions_or_store_paths_ends_err_not_allowed_and_nothing_runs() {
    let t = TempDir::new("allowed");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let script = format!("#!/bin/sh\necho ran >> {}\n", mark.display());
    let arc = t.join("a.tar.gz");
    fs::write(&arc, targz(&[Member::File("setup.sh", script.as_bytes(), 0o755)])).unwrap();
    let arc = arc.to_str().unwrap();
    let launch = srv.package_add(&["--file", arc, "--action", "launch", "--command", "setup.sh"]);
    let outside = t.join("etc-cron.d");
    let store_out = srv.package_add(&["--file", arc, "--action", "store", "--path", outside.to_str().unwrap()]);
    let inside = t.join("apps/tool");
    let store_in = srv.package_add(&["--file", arc, "--action", "store", "--path", inside.to_str().unwrap()]);
    let cfg = srv.device_add("pc-1", t.path());
    let apps = t.join("apps");
    tune_agent(&cfg, &format!("allowed_actions = [\"store\"]\nallowed_store_paths = [\"{}\"]", apps.display()));
    for id in [launch, store_out, store_in] {
        srv.assign(id, "pc-1", &[]);
    }
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(launch, "pc-1"), "ERR_NOT_ALLOWED", "{}", text(&o));
    assert_eq!(srv.status_of(store_out, "pc-1"), "ERR_NOT_ALLOWED", "{}", text(&o));
    assert_eq!(srv.status_of(store_in, "pc-1"), "SUCCESS", "{}", text(&o));
    assert!(!mark.exists(), "the launch package did not run");
    assert!(!outside.exists(), "nothing stored outside the allowed paths");
    assert!(inside.join("setup.sh").exists(), "stored inside them");
    for id in [launch, store_out] {
        let dir = t.path().join(format!("pc-1-state/packages/{id}"));
        assert!(!dir.join("archive").exists() && !dir.join("unpack").exists(), "nothing of {id} fetched");
    }
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in agent.allowed_actions"), "{}", text(&o));
}
