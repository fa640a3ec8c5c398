//! Issue 12, "no rollback": a package built with `package add --name NAME
//! --version VERSION` carries both in its signed manifest, and an agent that
//! has run a higher version of NAME refuses it (`ERR_DOWNGRADE`): nothing of
//! it is fetched or run. So a frozen or replayed control channel cannot put
//! an older, still-valid package back. A manifest signed with `--downgrade`
//! is accepted; the same version again (`assign --force`) is no downgrade;
//! packages without a version are not subject to the rule. What the agent
//! has run is kept in its state directory across restarts (every `run
//! --once` here is a new agent process), and noted before the action
//! starts, so a crash during it does not open the way back.

use std::fs;

use outpost_tests::{Member, Server, TempDir, agent, kill_agent_during_action, targz, text};

#[test]
fn an_older_version_is_refused_with_err_downgrade_unless_its_manifest_says_a_downgrade_is_intended() {
    let t = TempDir::new("downgrade");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    // Each version's setup.sh notes which version ran.
    let add = |version: &str, extra: &[&str]| {
        let script = format!("#!/bin/sh\necho {version} >> {}\n", mark.display());
        let arc = t.path().join(format!("app-{version}.tar.gz"));
        fs::write(&arc, targz(&[Member::File("setup.sh", script.as_bytes(), 0o755)])).unwrap();
        let mut args = vec!["--file", arc.to_str().unwrap(), "--action", "launch", "--command", "setup.sh"];
        args.extend_from_slice(&["--name", "app", "--version", version]);
        args.extend_from_slice(extra);
        srv.package_add(&args)
    };
    // 1.10 is the newer: versions compare as numbers.
    let old = add("1.9", &[]);
    let new = add("1.10", &[]);
    let back = add("1.9.0", &["--downgrade"]);
    let nine = add("9", &[]);
    let unversioned = srv.package_add(&["--action", "execute", "--command", "true", "--name", "app"]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.start();
    let ran = || fs::read_to_string(&mark).unwrap_or_default().lines().map(String::from).collect::<Vec<_>>();
    let run = |id: u64, extra: &[&str]| {
        srv.assign(id, "pc-1", extra);
        let o = agent(&cfg, &["run", "--once"], &[]);
        assert!(o.status.success(), "{}", text(&o));
        (srv.status_of(id, "pc-1"), o)
    };

    assert_eq!(run(new, &[]).0, "SUCCESS");
    assert_eq!(ran(), ["1.10"]);
    let o = srv.cmd(&["status", "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(r#""name": "app 1.10""#), "{}", text(&o));

    // The older version, offered by a new agent process: refused before
    // anything of it is fetched.
    let (status, o) = run(old, &[]);
    assert_eq!(status, "ERR_DOWNGRADE", "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("app 1.9 is older than the 1.10 run here"), "{}", text(&o));
    let dir = t.path().join(format!("pc-1-state/packages/{old}"));
    assert!(!dir.join("archive").exists() && !dir.join("unpack").exists(), "nothing of it fetched");
    assert_eq!(ran(), ["1.10"], "not run");
    // Forced again, and signed again (`package resign` keeps name and
    // version), it is still a downgrade.
    let o = srv.cmd(&["package", "resign", "--id", &old.to_string(), "--valid-days", "30"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(run(old, &["--force"]).0, "ERR_DOWNGRADE");

    // The same version again is no downgrade.
    assert_eq!(run(new, &["--force"]).0, "SUCCESS");
    assert_eq!(ran(), ["1.10", "1.10"]);

    // Signed as an intended downgrade: accepted, and the line is now at 1.9.
    assert_eq!(run(back, &[]).0, "SUCCESS");
    assert_eq!(ran(), ["1.10", "1.10", "1.9.0"]);
    assert_eq!(run(old, &["--force"]).0, "SUCCESS", "1.9 is no longer older than what ran");
    assert_eq!(run(new, &["--force"]).0, "SUCCESS", "upgrading again");

    // A package without a version is in no line.
    assert_eq!(run(unversioned, &[]).0, "SUCCESS");
    assert_eq!(run(nine, &[]).0, "SUCCESS");
    assert_eq!(ran().last().map(String::as_str), Some("9"));
}

#[test]
fn a_crash_during_the_newer_version_s_action_does_not_open_the_way_back() {
    let t = TempDir::new("downgrade-crash");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    // It ends by itself shortly after the agent is killed: no test ever
    // signals a process group.
    let cmd = format!("echo 2 >> {}; sleep 3", mark.display());
    let new = srv.package_add(&["--action", "execute", "--command", &cmd, "--name", "app", "--version", "2"]);
    let cmd = format!("echo 1 >> {}", mark.display());
    let old = srv.package_add(&["--action", "execute", "--command", &cmd, "--name", "app", "--version", "1"]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(new, "pc-1", &[]);
    srv.start();
    kill_agent_during_action(&cfg, &mark); // before any final status

    let o = agent(&cfg, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(new, "pc-1"), "ERR_DONE_FAILED", "{}", text(&o));
    srv.assign(old, "pc-1", &[]);
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(old, "pc-1"), "ERR_DOWNGRADE", "{}", text(&o));
    assert_eq!(fs::read_to_string(&mark).unwrap(), "2\n", "version 1 never ran");
}

#[test]
fn package_add_refuses_bad_versions_and_a_version_without_a_name() {
    let t = TempDir::new("downgrade-cli");
    let srv = Server::init(t.join("srv"), &[]);
    let add = |extra: &[&str]| {
        let mut a = vec!["package", "add", "--action", "execute", "--command", "true"];
        a.extend_from_slice(extra);
        srv.cmd(&a)
    };
    for bad in ["1.x", "1..2", "v2", "01.2", "1.2.3.4.5.6.7.8.9", "4294967296", ""] {
        let o = add(&["--name", "app", "--version", bad]);
        assert!(!o.status.success(), "{bad:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("version"), "{bad:?}: {}", text(&o));
    }
    for bad in [&["--version", "1"][..], &["--name", "app", "--downgrade"], &["--name", " app", "--version", "1"]] {
        let o = add(bad);
        assert!(!o.status.success(), "{bad:?}: {}", text(&o));
    }
    let long = "n".repeat(65);
    assert!(!add(&["--name", &long, "--version", "1"]).status.success(), "a name over 64 bytes");
    let o = add(&["--name", "app", "--version", "1.10.2", "--allow-downgrade"]);
    assert!(o.status.success(), "{}", text(&o));
}
