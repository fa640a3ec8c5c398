//! Named faults of the real agent process: disk full and recovery, a crash
//! during the action, reports queued while the server is away.

use std::fs;
use std::process::{Command, Stdio};

use outpost_agent::engine::journal::OutboxRecord;
use outpost_agent::rt::store::Store;
use outpost_tests::{Member, Server, TempDir, agent, kill_agent_during_action, random_bytes, targz, text};

/// A tmpfs of `mib` MiB at `dir`, unmounted when dropped. `None` where
/// this machine does not let the test mount one.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, mib: u32) -> Option<Self> {
        fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }

    fn resize(&self, mib: u32) {
        let st = Command::new("mount").args(["-o", &format!("remount,size={mib}m")]).arg(&self.0).status().unwrap();
        assert!(st.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_reports_err_out_of_space_once_then_goes_on_when_space_returns() {
    let t = TempDir::new("diskfull");
    let state = t.join("pc-1-state");
    let Some(fs_) = Tmpfs::mount(&state, 20) else {
        eprintln!("SKIPPED disk_full_…: this machine does not allow mounting a tmpfs (needs root)");
        return;
    };
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let arc = t.join("big.tar.gz");
    let script = format!("echo ok > {}\n", mark.display());
    fs::write(
        &arc,
        targz(&[
            Member::File("setup.sh", script.as_bytes(), 0o755),
            Member::File("d", &random_bytes(6 << 20, 0xfeed_beef), 0o644),
        ]),
    )
    .unwrap();
    let id = srv.package_add(&["--file", arc.to_str().unwrap(), "--action", "launch", "--command", "setup.sh"]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    srv.start();

    // 6 MiB to fetch + 6 to unpack + a 16 MiB margin do not fit in 20 MiB.
    for _ in 0..2 {
        let o = agent(&cfg, &["run", "--once"], &[]);
        assert!(!o.status.success(), "unfinished: {}", text(&o));
    }
    assert_eq!(srv.status_of(id, "pc-1"), "ERR_OUT_OF_SPACE", "reported");
    let log = fs::read_to_string(srv.dir.join("serve.log")).unwrap();
    assert_eq!(log.matches("-> ERR_OUT_OF_SPACE").count(), 1, "reported once: {log}");
    assert!(!mark.exists());

    // Space returns: the agent goes on by itself, although the server no
    // longer lists the package (it has a final status there).
    fs_.resize(64);
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS");
    assert_eq!(fs::read_to_string(&mark).unwrap(), "ok\n");
}

#[test]
fn crash_during_the_action_is_not_run_again_silently() {
    let t = TempDir::new("crash-action");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    // It ends by itself shortly after the agent is killed: no test ever
    // signals a process group (a wrong pid there could take the machine down).
    let cmd = format!("echo $$ >> {}; sleep 3", mark.display());
    let id = srv.package_add(&["--action", "execute", "--command", &cmd]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    srv.start();
    kill_agent_during_action(&cfg, &mark);

    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "ERR_DONE_FAILED");
    assert_eq!(fs::read_to_string(&mark).unwrap().lines().count(), 1, "not run again");
    assert!(String::from_utf8_lossy(&o.stderr).contains("stopped during its action"), "{}", text(&o));
}

#[test]
fn reports_queued_while_the_server_is_away_are_delivered_exactly_once() {
    let t = TempDir::new("outbox");
    let mut srv = Server::init(t.join("srv"), &[]);
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    let store = Store::open(&t.join("pc-1-state")).unwrap();
    let report = OutboxRecord { report_id: 0xabcdef, package: id, status: "EXIT_CODE_7".into() };
    store.queue_report(&report).unwrap();

    // Server down: the run fails, the report stays queued.
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(store.pending_reports().unwrap(), std::slice::from_ref(&report));

    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(store.pending_reports().unwrap().is_empty(), "acknowledged and dropped");
    assert_eq!(srv.status_of(id, "pc-1"), "EXIT_CODE_7");

    // The same report id again (a reply lost after the server applied it): dropped.
    store.queue_report(&OutboxRecord { status: "SUCCESS".into(), ..report }).unwrap();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "EXIT_CODE_7", "a duplicate id changes nothing");
}

#[test]
fn reboot_requests_follow_the_policy() {
    let t = TempDir::new("reboot");
    let mut srv = Server::init(t.join("srv"), &[]);
    let flagged = srv.package_add(&["--action", "execute", "--command", "true", "--reboot"]);
    let by_code = srv.package_add(&["--action", "execute", "--command", "exit 194", "--reboot-exit-code", "194"]);
    let plain = srv.package_add(&["--action", "execute", "--command", "true"]);
    let dry = t.join("reboots");
    let now = srv.device_add("now", t.path());
    outpost_tests::tune_agent(&now, &format!("reboot = \"immediately\"\nreboot_dry_run = \"{}\"", dry.display()));
    let never = srv.device_add("never", t.path());
    outpost_tests::tune_agent(&never, &format!("reboot = \"never\"\nreboot_dry_run = \"{}\"", dry.display()));
    srv.assign(plain, "now", &[]);
    srv.start();

    let o = agent(&now, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!dry.exists(), "a package that does not ask causes no reboot");

    srv.assign(flagged, "now", &[]);
    let o = agent(&now, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(flagged, "now"), "SUCCESS", "reported before the reboot");
    assert_eq!(fs::read_to_string(&dry).unwrap(), "reboot requested\n");

    srv.assign(by_code, "now", &[]);
    let o = agent(&now, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(by_code, "now"), "SUCCESS_REBOOT_REQUIRED");
    assert_eq!(fs::read_to_string(&dry).unwrap().lines().count(), 2);

    srv.assign(flagged, "never", &[]);
    let o = agent(&never, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(flagged, "never"), "SUCCESS");
    assert_eq!(fs::read_to_string(&dry).unwrap().lines().count(), 2, "policy never: no reboot");
    assert!(String::from_utf8_lossy(&o.stderr).contains("the policy is never"), "{}", text(&o));
}

#[test]
fn cache_cap_evicts_packages_not_needed_now_least_recently_used_first() {
    let t = TempDir::new("cache");
    let mut srv = Server::init(t.join("srv"), &[]);
    let answer = t.join("answer");
    fs::write(&answer, "delay\n").unwrap();
    let mut ids = Vec::new();
    for seed in 1..=3u64 {
        let arc = t.join(&format!("p{seed}.tar.gz"));
        let mut data = random_bytes(400_000, 0xfeed_beef);
        data[0] = seed as u8;
        fs::write(&arc, targz(&[Member::File("d", &data, 0o644)])).unwrap();
        ids.push(srv.package_add(&[
            "--file",
            arc.to_str().unwrap(),
            "--action",
            "execute",
            "--command",
            "true",
            "--notify-user",
            "--notify-can-delay",
            "--notify-countdown",
            "0",
        ]));
    }
    let cfg = srv.device_add("pc-1", t.path());
    outpost_tests::tune_agent(&cfg, &format!("cache_max_size = 1000000\nnotify_command = 'cat {}'", answer.display()));
    srv.start();
    let state = t.join("pc-1-state/packages");
    let cached = || -> Vec<u64> {
        let mut v: Vec<u64> =
            fs::read_dir(&state).unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
        v.sort();
        v
    };
    // Two packages downloaded, then delayed by the user: both stay cached.
    for id in &ids[..2] {
        srv.assign(*id, "pc-1", &[]);
        let o = agent(&cfg, &["run", "--once"], &[]);
        assert!(!o.status.success(), "delayed: {}", text(&o));
    }
    assert_eq!(cached(), ids[..2]);
    // The server drops the first; a third comes. Over 1 MB: the first (not
    // offered, least recently used) goes; the second (offered) stays.
    assert!(srv.cmd(&["unaffect", "--package", &ids[0].to_string()]).status.success());
    srv.assign(ids[2], "pc-1", &[]);
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("package {}: evicted", ids[0])), "{}", text(&o));
    assert_eq!(cached(), ids[1..], "{}", text(&o));
}
