//! Issue 12, "no replay": a signed manifest carries its expiry (`package
//! add --valid-days`, default 90; `package resign`). A frozen or replayed
//! control channel that offers a package past its expiry gets
//! `ERR_EXPIRED`: nothing of it is fetched or run. `resign --valid-days 0`
//! withdraws a package from every device that has not fetched it yet.

use std::fs;

use outpost_tests::{Member, Server, TempDir, agent, targz, text};

#[test]
fn an_expired_manifest_is_refused_with_err_expired_and_resign_renews_it() {
    let t = TempDir::new("expiry");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let script = format!("#!/bin/sh\necho ran >> {}\n", mark.display());
    let arc = t.join("a.tar.gz");
    fs::write(&arc, targz(&[Member::File("setup.sh", script.as_bytes(), 0o755)])).unwrap();
    let id = srv.package_add(&["--file", arc.to_str().unwrap(), "--action", "launch", "--command", "setup.sh"]);
    let cfgs: Vec<_> = ["pc-1", "pc-2", "pc-3"].iter().map(|d| srv.device_add(d, t.path())).collect();
    srv.start();
    let resign = |days: &str| {
        let o = srv.cmd(&["package", "resign", "--id", &id.to_string(), "--valid-days", days]);
        assert!(o.status.success(), "{}", text(&o));
    };

    // Valid (90 days by default): installed.
    srv.assign(id, "pc-1", &[]);
    let o = agent(&cfgs[0], &["run", "--once"], &[]);
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS", "{}", text(&o));

    // Withdrawn: expired at once. The manifest still verifies; its expiry is
    // what refuses it, before any fragment.
    resign("0");
    srv.assign(id, "pc-2", &[]);
    let o = agent(&cfgs[1], &["run", "--once"], &[]);
    assert_eq!(srv.status_of(id, "pc-2"), "ERR_EXPIRED", "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expired"), "{}", text(&o));
    assert!(!t.path().join(format!("pc-2-state/packages/{id}/archive")).exists(), "nothing fetched");
    assert_eq!(fs::read_to_string(&mark).unwrap().lines().count(), 1, "ran on pc-1 only");

    // Renewed: installs again.
    resign("30");
    srv.assign(id, "pc-3", &[]);
    let o = agent(&cfgs[2], &["run", "--once"], &[]);
    assert_eq!(srv.status_of(id, "pc-3"), "SUCCESS", "{}", text(&o));
}
