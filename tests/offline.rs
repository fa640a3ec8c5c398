//! Branch offices with no network, or none worth waiting on: offline
//! bundles (`outpost-server bundle`, `outpost-agent install FILE`,
//! `[agent] import_dir`) and installs from the cache at the agent's start
//! (`[agent] install = "at_startup"`). Real processes on 127.0.0.1; "the
//! network is down" is a server that is not running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outpost_tests::{Member, Server, TempDir, agent, bin, random_bytes, targz, text, tune_agent};

/// A launch package of several fragments whose setup.sh appends a line to `mark`.
fn add_package(srv: &Server, t: &TempDir, mark: &Path) -> u64 {
    let script = format!("#!/bin/sh\necho ran >> {}\n", mark.display());
    let filler = random_bytes(200_000, 7);
    let arc = t.join("app.tar.gz");
    fs::write(&arc, targz(&[Member::File("setup.sh", script.as_bytes(), 0o755), Member::File("data", &filler, 0o644)]))
        .unwrap();
    srv.package_add(&[
        "--file",
        arc.to_str().unwrap(),
        "--action",
        "launch",
        "--command",
        "setup.sh",
        "--frag-size",
        "64K",
    ])
}

fn bundle(srv: &Server, id: u64, out: &Path) {
    let o = srv.cmd(&["bundle", "--package", &id.to_string(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Where the signed manifest starts in a bundle's bytes.
fn manifest_at(bundle: &[u8]) -> usize {
    let info_len = u32::from_le_bytes(bundle[17..21].try_into().unwrap()) as usize;
    21 + info_len + 4
}

fn runs(mark: &Path) -> usize {
    fs::read_to_string(mark).unwrap_or_default().lines().count()
}

fn outbox(state: &Path) -> usize {
    fs::read_dir(state.join("outbox")).map(|d| d.count()).unwrap_or(0)
}

/// Reports the server has received from `device` (each report id once).
fn reports_received(srv: &Server, device: &str) -> i64 {
    srv.sql_value(&format!("SELECT COUNT(*) FROM reports WHERE device = '{device}'")).parse().unwrap()
}

fn state_of(t: &TempDir, device: &str) -> PathBuf {
    t.join(&format!("{device}-state"))
}

#[test]
fn a_bundle_installs_with_no_server_running_and_is_reported_once_when_the_server_is_back() {
    let t = TempDir::new("offline-bundle");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let id = add_package(&srv, &t, &mark);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    let file = t.join("app.outpost");
    bundle(&srv, id, &file);

    // The server is not running: the install needs nothing from it.
    let o = agent(&cfg, &["install", file.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("installed: SUCCESS"), "{}", text(&o));
    assert_eq!(runs(&mark), 1);
    let state = state_of(&t, "pc-1");
    assert_eq!(outbox(&state), 1, "the status waits for the server");
    assert_eq!(srv.status_of(id, "pc-1"), "WAITING NOTIFICATION");

    // The server comes back: the status reaches it, once.
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS");
    assert_eq!(outbox(&state), 0);
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(reports_received(&srv, "pc-1"), 1, "reported exactly once");
    assert_eq!(runs(&mark), 1, "not run again");
}

#[test]
fn a_tampered_bundle_installs_nothing_and_says_why() {
    let t = TempDir::new("offline-tampered");
    let srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let id = add_package(&srv, &t, &mark);
    let good = t.join("app.outpost");
    bundle(&srv, id, &good);
    let bytes = fs::read(&good).unwrap();
    let at = manifest_at(&bytes);
    type Tamper = fn(&mut Vec<u8>, usize);
    // A payload that fails its digest ends as a final ERR_BAD_DIGEST for
    // this install; a head that does not verify is not a valid bundle at
    // all: nothing recorded for the package it names.
    let cases: [(&str, Tamper, &str); 5] = [
        ("payload", |b, _| *b.last_mut().unwrap() ^= 1, "fails its digest"),
        ("signature", |b, at| b[at + 40] ^= 1, "not a valid bundle"),
        ("info", |b, _| b[21] ^= 1, "not a valid bundle"),
        ("cut", |b, _| b.truncate(b.len() - 10), "not what its head says"),
        ("magic", |b, _| b[0] = b'X', "not an Outpost bundle"),
    ];
    for (i, (what, tamper, why)) in cases.iter().enumerate() {
        let device = format!("pc-{i}");
        let cfg = srv.device_add(&device, t.path());
        let mut b = bytes.clone();
        tamper(&mut b, at);
        let file = t.join(&format!("{what}.outpost"));
        fs::write(&file, &b).unwrap();
        let o = agent(&cfg, &["install", file.to_str().unwrap()], &[]);
        assert!(!o.status.success(), "{what}: {}", text(&o));
        assert!(text(&o).contains(why), "{what}: {}", text(&o));
        assert_eq!(runs(&mark), 0, "{what}: nothing ran");
        let dir = state_of(&t, &device).join(format!("packages/{id}"));
        assert!(!dir.join("unpack").exists() && !dir.join("archive").exists(), "{what}: nothing kept");
        if *why != "fails its digest" {
            assert!(!dir.exists(), "{what}: nothing recorded");
            assert_eq!(outbox(&state_of(&t, &device)), 0, "{what}: nothing queued");
        }
    }
    // The good copy installs where a tampered one failed.
    let o = agent(&srv.dir.parent().unwrap().join("pc-0.toml"), &["install", good.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(runs(&mark), 1);
}

#[test]
fn import_dir_installs_each_bundle_once() {
    let t = TempDir::new("offline-import");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let id = add_package(&srv, &t, &mark);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    let stick = t.join("stick");
    fs::create_dir(&stick).unwrap();
    bundle(&srv, id, &stick.join("app.outpost"));
    fs::write(stick.join("junk.outpost"), b"not a bundle").unwrap();
    tune_agent(&cfg, &format!("import_dir = '{}'", stick.display()));
    let before = fs::read(stick.join("app.outpost")).unwrap();

    // No server: the poll fails, the bundle installs.
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(runs(&mark), 1, "{}", text(&o));
    assert!(text(&o).contains("not an Outpost bundle"), "{}", text(&o));
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert_eq!(runs(&mark), 1, "installed once: {}", text(&o));
    assert!(!text(&o).contains("not an Outpost bundle"), "not tried again: {}", text(&o));
    assert_eq!(fs::read(stick.join("app.outpost")).unwrap(), before, "the stick is only read");

    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS");
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("not an Outpost bundle"), "not tried again: {}", text(&o));
    assert_eq!(runs(&mark), 1);
    assert_eq!(reports_received(&srv, "pc-1"), 1, "reported once, not again at each scan");
}

#[test]
fn at_startup_caches_asks_for_a_restart_and_installs_at_the_next_start_with_no_server() {
    let t = TempDir::new("offline-startup");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let id = add_package(&srv, &t, &mark);
    // A second package whose download cannot complete: its second fragment is gone.
    let partial_mark = t.join("partial-mark");
    let partial = add_package(&srv, &t, &partial_mark);
    fs::remove_file(srv.dir.join(format!("download/{partial}/{partial}-2"))).unwrap();
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    srv.assign(partial, "pc-1", &[]);
    let asked = t.join("asked");
    let rebooted = t.join("rebooted");
    let hook = format!("echo $OUTPOST_NOTIFY_KIND $OUTPOST_NOTIFY_PACKAGE >> {}", asked.display());
    tune_agent(
        &cfg,
        &format!(
            "install = 'at_startup'\nfragment_tries = 1\nreboot = 'immediately'\nreboot_dry_run = '{}'\nnotify_command = '{hook}'",
            rebooted.display()
        ),
    );
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert_eq!(runs(&mark), 0, "cached, not installed: {}", text(&o));
    assert!(text(&o).contains("installs at the agent's next start"), "{}", text(&o));
    assert_eq!(fs::read_to_string(&asked).unwrap(), format!("reboot {id}\n"), "the user is asked once");
    assert!(fs::read_to_string(&rebooted).is_ok_and(|s| !s.is_empty()), "the policy rebooted");
    assert_eq!(srv.status_of(id, "pc-1"), "NOTIFIED", "polled, not installed");
    let cached = state_of(&t, "pc-1").join(format!("packages/{partial}/archive"));
    assert!(fs::metadata(&cached).is_ok_and(|m| m.len() > 0), "part of the other one is cached");

    // The machine restarts with no server: the install comes from the cache,
    // before the agent asks the server anything; never from an incomplete one.
    assert!(srv.stop());
    let o = agent(&cfg, &["run", "--once"], &[]);
    let log = text(&o);
    assert_eq!(runs(&mark), 1, "{log}");
    let installed = log.find("installed from the cache at start").expect("installed at start");
    assert!(log.find("poll failed").is_some_and(|p| p > installed), "before the poll: {log}");
    assert_eq!(fs::read_to_string(&asked).unwrap().lines().count(), 1, "not asked again");
    assert_eq!(runs(&partial_mark), 0, "not from an incomplete cache: {log}");
    assert!(log.contains("not all of it is cached"), "{log}");

    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS", "{}", text(&o));
    assert_eq!(runs(&mark), 1);
    assert_eq!(runs(&partial_mark), 0);
}

#[test]
fn a_forged_bundle_for_a_package_the_server_is_delivering_changes_nothing() {
    let t = TempDir::new("offline-forged");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let id = add_package(&srv, &t, &mark);
    let forged = t.join("forged.outpost");
    bundle(&srv, id, &forged);
    let mut b = fs::read(&forged).unwrap();
    let at = manifest_at(&b) + 40;
    b[at] ^= 1; // one byte of the manifest flipped: its signature fails
    fs::write(&forged, &b).unwrap();
    // The server's delivery stops halfway: its second fragment is away.
    let frag2 = srv.dir.join(format!("download/{id}/{id}-2"));
    let away = t.join("frag2");
    fs::rename(&frag2, &away).unwrap();
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    tune_agent(&cfg, "fragment_tries = 1");
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    let state = state_of(&t, "pc-1");
    let archive = state.join(format!("packages/{id}/archive"));
    assert!(fs::metadata(&archive).is_ok_and(|m| m.len() > 0), "halfway: {}", text(&o));
    let queued = outbox(&state);
    let record = fs::read(state.join(format!("packages/{id}/record"))).ok();

    // Given on the command line: not a valid bundle, nothing recorded.
    let o = agent(&cfg, &["install", forged.to_str().unwrap()], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not a valid bundle"), "{}", text(&o));
    assert_eq!(outbox(&state), queued, "nothing queued: {}", text(&o));
    assert_eq!(fs::read(state.join(format!("packages/{id}/record"))).ok(), record, "record untouched");

    // And in import_dir, while the server's delivery completes.
    let stick = t.join("stick");
    fs::create_dir(&stick).unwrap();
    fs::copy(&forged, stick.join("forged.outpost")).unwrap();
    tune_agent(&cfg, &format!("import_dir = '{}'", stick.display()));
    fs::rename(&away, &frag2).unwrap();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not a valid bundle"), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS", "{}", text(&o));
    assert_eq!(runs(&mark), 1);
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("not a valid bundle"), "not tried again: {}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS");
    assert_eq!(reports_received(&srv, "pc-1"), 1, "SUCCESS reported once, nothing else");
}

#[test]
#[allow(clippy::disallowed_methods)] // a real process: a bounded wait
fn links_and_fifos_in_import_dir_are_skipped() {
    let t = TempDir::new("offline-fifo");
    let srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let id = add_package(&srv, &t, &mark);
    let cfg = srv.device_add("pc-1", t.path());
    let real = t.join("real.outpost");
    bundle(&srv, id, &real);
    let stick = t.join("stick");
    fs::create_dir(&stick).unwrap();
    std::os::unix::fs::symlink(&real, stick.join("link.outpost")).unwrap();
    let made = Command::new("mkfifo").arg(stick.join("fifo.outpost")).status().unwrap();
    assert!(made.success());
    tune_agent(&cfg, &format!("import_dir = '{}'", stick.display()));

    // No server: the poll fails; the scan must neither block nor follow.
    let mut child = Command::new(bin("outpost-agent"))
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--once"])
        .env("OUTPOST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("the agent blocked on a FIFO in import_dir");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(runs(&mark), 0, "nothing installed through a link: {}", text(&o));
    assert!(!state_of(&t, "pc-1").join(format!("packages/{id}")).exists(), "nothing recorded: {}", text(&o));
    assert!(text(&o).contains("not a regular file"), "{}", text(&o));
}
