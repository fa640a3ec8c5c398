//! Item 7: a local user and the root agent's files. The review's attack: with
//! a 0777 state directory, an unprivileged user planted links that made the
//! agent overwrite a root-owned file, and swapped the package's directory
//! between unpack and launch so that the agent ran the user's script as root.
//!
//! The defences: `Store::open` (agent/src/rt/store.rs) refuses, at start, a
//! state directory or subdirectory another user owns or may write, and a way
//! to it others may change (exit 2); subdirectories others may only read are
//! made 0700. Every file the agent writes is opened without following a link
//! (`write_atomic`, `DirBlocks`, `action.log`). `action::pin`
//! (agent/src/rt/action.rs) checks the package directory again right before
//! the action and starts it in the directory it opened (`fchdir`), not in a
//! path. `Config::load` (agent/src/rt/config.rs) refuses a config others may
//! write, and makes one with the secret that others can read 0600, warning.
//! A STORE (`action::store`) writes only to a destination reached through
//! trusted directories and writable by nobody else (`ERR_EXECUTE` otherwise),
//! and replaces what it finds there instead of writing through it.
//!
//! The attacker is uid 65534 (`nobody`): its steps run through `setpriv`
//! where there is one, else as root with the results given to 65534. The
//! tests need root (as CI runs them) and skip with a message otherwise.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use outpost_tests::{Member, Server, TempDir, agent, targz, text, tune_agent};

const NOBODY: u32 = 65534;
const VICTIM: &str = "root's own file: must stay as it is\n";

fn root_or_skip(test: &str) -> bool {
    let root = outpost_hal::linux::euid() == 0;
    if !root {
        eprintln!("SKIPPED {test}: needs root (to be the agent and to give files to another user)");
    }
    root
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).mode() & 0o7777
}

fn has_setpriv() -> bool {
    Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// A shell command that runs `script` (no single quotes in it) as the
/// attacker: through `setpriv`, or as root with `made` given to 65534 after.
fn as_attacker(script: &str, made: &[&Path]) -> String {
    assert!(!script.contains('\''));
    if has_setpriv() {
        return format!("setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups sh -c '{script}'");
    }
    let paths: Vec<String> = made.iter().map(|p| p.display().to_string()).collect();
    format!("sh -c '{script}' && chown -hR {NOBODY}:{NOBODY} {}", paths.join(" "))
}

fn attacker(script: &str, made: &[&Path]) {
    let o = Command::new("sh").arg("-c").arg(as_attacker(script, made)).output().expect("sh");
    assert!(o.status.success(), "attacker's step failed: {}", text(&o));
}

/// A root-owned file the attacker wants overwritten.
fn victim(t: &TempDir) -> PathBuf {
    let v = t.join("victim");
    fs::write(&v, VICTIM).unwrap();
    chmod(&v, 0o644);
    v
}

/// A server with a launch package whose `setup.sh` writes `mark`, assigned
/// to pc-1; returns (server, package id, agent config, state dir).
fn launch_setup(t: &TempDir, mark: &Path, extra: &[&str]) -> (Server, u64, PathBuf, PathBuf) {
    let mut srv = Server::init(t.join("srv"), &[]);
    let arc = t.join("a.tar.gz");
    let script = format!("#!/bin/sh\necho installed\necho package > {}\n", mark.display());
    fs::write(&arc, targz(&[Member::File("setup.sh", script.as_bytes(), 0o755)])).unwrap();
    let mut args = vec!["--file", arc.to_str().unwrap(), "--action", "launch", "--command", "setup.sh"];
    args.extend_from_slice(extra);
    let id = srv.package_add(&args);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    srv.start();
    (srv, id, cfg, t.join("pc-1-state"))
}

fn untouched(victim: &Path) {
    let now = fs::read(victim).unwrap();
    assert!(
        now == VICTIM.as_bytes(),
        "the root-owned file was written through a link: {:?}",
        String::from_utf8_lossy(&now)
    );
}

fn refused(o: &Output, why: &str) {
    let all = text(o);
    assert_eq!(o.status.code(), Some(2), "refused with exit 2: {all}");
    assert!(all.contains(why), "says {why:?}: {all}");
}

#[test]
fn a_0777_state_dir_with_an_attackers_links_is_refused_and_the_root_file_is_untouched() {
    if !root_or_skip("a_0777_state_dir_…") {
        return;
    }
    let t = TempDir::new("sec-state-0777");
    let victim = victim(&t);
    let mark = t.join("mark");
    let (srv, id, cfg, state) = launch_setup(&t, &mark, &[]);
    fs::create_dir(&state).unwrap();
    chmod(&state, 0o777);
    // The attacker owns `packages/`, and in the package's directory points
    // every file the agent writes at the victim.
    let pkg = state.join(format!("packages/{id}"));
    let v = victim.display();
    let script = format!(
        "mkdir -m 777 {s}/packages {p} && ln -s {v} {p}/record.tmp && ln -s {v} {p}/action.log \
         && ln -s {v} {s}/reboot-pending.tmp",
        s = state.display(),
        p = pkg.display()
    );
    attacker(&script, &[&state.join("packages"), &state.join("reboot-pending.tmp")]);

    let o = agent(&cfg, &["run", "--once"], &[]);
    refused(
        &o,
        &format!(
            "state directory {}: refusing to use it: {} is writable by group or others (mode 0777)",
            state.display(),
            state.display()
        ),
    );
    untouched(&victim);
    assert!(!mark.exists(), "nothing ran");

    // The admin tightens the state directory only: `packages/` is still the attacker's.
    chmod(&state, 0o755);
    let o = agent(&cfg, &["run", "--once"], &[]);
    refused(&o, &format!("{}/packages belongs to uid {NOBODY}, not to uid 0", state.display()));
    untouched(&victim);

    // Once the admin has removed what the attacker made, the agent works.
    fs::remove_dir_all(state.join("packages")).unwrap();
    fs::remove_file(state.join("reboot-pending.tmp")).unwrap();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS");
    untouched(&victim);
    assert_eq!(mode(&state.join("packages")), 0o700);
}

#[test]
fn links_left_in_a_trusted_state_dir_are_replaced_never_written_through() {
    if !root_or_skip("links_left_…") {
        return;
    }
    let t = TempDir::new("sec-state-links");
    let victim = victim(&t);
    let mark = t.join("mark");
    let (srv, id, cfg, state) = launch_setup(&t, &mark, &[]);
    // Links planted while the directory was open (or by a restored backup),
    // then the directory fixed: private again, the links still there.
    let pkg = state.join(format!("packages/{id}"));
    fs::create_dir_all(&pkg).unwrap();
    for d in [&state, &state.join("packages"), &pkg] {
        chmod(d, 0o700);
    }
    for name in ["record.tmp", "info.tmp", "action.log"] {
        symlink(&victim, pkg.join(name)).unwrap();
        lchown(pkg.join(name), Some(NOBODY), Some(NOBODY)).unwrap();
    }

    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS");
    untouched(&victim);
    let log = pkg.join("action.log");
    assert!(fs::symlink_metadata(&log).unwrap().is_file(), "action.log is a file of its own now");
    assert_eq!(fs::read_to_string(&log).unwrap(), "installed\n");
    assert_eq!(mode(&log), 0o600);
    assert!(fs::symlink_metadata(pkg.join("record")).unwrap().is_file());
}

#[test]
fn a_package_dir_swapped_between_unpack_and_launch_does_not_run_the_attackers_script() {
    if !root_or_skip("a_package_dir_swapped_…") {
        return;
    }
    let t = TempDir::new("sec-state-swap");
    let mark = t.join("mark");
    let pwned = t.join("pwned");
    let notify = ["--notify-user", "--notify-text", "Install?", "--notify-countdown", "0"];
    let (srv, id, cfg, state) = launch_setup(&t, &mark, &notify);
    // The notify command runs between unpack and launch. There, an admin's
    // mistake opens `packages/` to others while the agent (a daemon, checked
    // at its start) runs, and the attacker swaps the package's directory for
    // one holding its own `setup.sh`.
    let packages = state.join("packages");
    let pkg = packages.join(id.to_string());
    let evil = format!("#!/bin/sh\\necho root > {}\\n", pwned.display());
    let swap = format!(
        "mv {p} {p}.old && mkdir -p {p}/unpack && printf \"{evil}\" > {p}/unpack/setup.sh && chmod 755 {p}/unpack/setup.sh",
        p = pkg.display()
    );
    let hook = t.join("hook.sh");
    let hook_err = t.join("hook.err");
    let hook_text = format!(
        "[ \"$OUTPOST_NOTIFY_KIND\" = before ] || exit 0\nchmod 755 {}\nchmod 777 {}\n{} 2>{}\necho proceed\n",
        state.display(),
        packages.display(),
        as_attacker(&swap, &[&pkg]),
        hook_err.display()
    );
    fs::write(&hook, hook_text).unwrap();
    tune_agent(&cfg, &format!("notify_command = 'sh {}'", hook.display()));

    let o = agent(&cfg, &["run", "--once"], &[]);
    let all = text(&o);
    let swapped = fs::metadata(&pkg).is_ok_and(|m| m.uid() == NOBODY) && pkg.with_extension("old").is_dir();
    let err = fs::read_to_string(&hook_err).unwrap_or_default();
    assert!(swapped, "the attacker swapped the package's directory: {err}\n{all}");
    assert!(!pwned.exists(), "the attacker's script ran as root: {all}");
    assert!(!mark.exists(), "nothing runs from a directory others could change: {all}");
    assert_eq!(srv.status_of(id, "pc-1"), "ERR_EXECUTE", "{all}");
    let why = format!("package {id}: not running its action: {} is writable by group or others", packages.display());
    assert!(all.contains(&why), "{all}");
}

#[test]
fn unsafe_state_dirs_are_refused_and_readable_subdirs_made_private() {
    if !root_or_skip("unsafe_state_dirs_…") {
        return;
    }
    let t = TempDir::new("sec-state-cases");
    let srv = Server::init(t.join("srv"), &[]);
    let cfg = srv.device_add("pc-1", t.path());
    let state = t.join("pc-1-state");
    let status = || agent(&cfg, &["status"], &[]);
    let fresh = || {
        let _ = fs::remove_file(&state);
        let _ = fs::remove_dir_all(&state);
        for d in ["", "outbox", "packages", "packages/7"] {
            fs::create_dir_all(state.join(d)).unwrap();
            chmod(&state.join(d), 0o700);
        }
    };
    let s = state.display();

    fresh();
    assert!(status().status.success(), "a private state directory is used: {}", text(&status()));
    chmod(&state, 0o770);
    refused(&status(), &format!("{s}: refusing to use it: {s} is writable by group or others (mode 0770)"));
    fresh();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    lchown(&state, Some(NOBODY), None).unwrap();
    refused(&status(), &format!("{s} belongs to uid {NOBODY}, not to uid 0"));
    for sub in ["outbox", "packages", "packages/7"] {
        fresh();
        chmod(&state.join(sub), 0o777);
        refused(&status(), &format!("{s}/{sub} is writable by group or others (mode 0777)"));
    }
    fresh();
    fs::remove_dir(state.join("packages/7")).unwrap();
    symlink(t.path(), state.join("packages/7")).unwrap();
    refused(&status(), &format!("{s}/packages/7 is a symbolic link"));

    // A link as the state directory, and a way others may change.
    fresh();
    fs::rename(&state, t.join("real-state")).unwrap();
    symlink(t.join("real-state"), &state).unwrap();
    refused(&status(), &format!("{s} is a symbolic link"));
    fs::remove_file(&state).unwrap();
    let open = t.join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let conf = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, conf.replace(&s.to_string(), &open.join("state").display().to_string())).unwrap();
    refused(&status(), &format!("{} is writable by group or others (mode 0777)", open.display()));
    assert!(!open.join("state").exists(), "nothing is created under a directory others may write");
    fs::write(&cfg, conf).unwrap();

    // Readable by others only: repaired. Missing: made private.
    fresh();
    chmod(&state.join("outbox"), 0o755);
    chmod(&state.join("packages/7"), 0o750);
    let o = status();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("{s}/outbox: mode 0755 made 0700")), "{}", text(&o));
    assert_eq!((mode(&state.join("outbox")), mode(&state.join("packages/7"))), (0o700, 0o700));
    fs::remove_dir_all(&state).unwrap();
    let o = status();
    assert!(o.status.success(), "{}", text(&o));
    for d in ["", "outbox", "packages"] {
        assert_eq!(mode(&state.join(d)), 0o700, "{d}/");
    }
}

#[test]
fn a_config_with_the_secret_others_can_read_is_made_private_with_a_warning() {
    let t = TempDir::new("sec-state-config-read");
    let srv = Server::init(t.join("srv"), &[]);
    let cfg = srv.device_add("pc-1", t.path());
    assert_eq!(mode(&cfg), 0o600, "device add writes it private");
    chmod(&cfg, 0o644);
    let o = agent(&cfg, &["status"], &[]);
    assert!(o.status.success(), "repaired, not refused: {}", text(&o));
    let warning = format!(
        "config {} holds the device secret but group or others could read it (mode 0644); made it 0600",
        cfg.display()
    );
    assert!(text(&o).contains(&warning), "{}", text(&o));
    assert_eq!(mode(&cfg), 0o600);
    let o = agent(&cfg, &["status"], &[]);
    assert!(!text(&o).contains("could read it"), "warned once: {}", text(&o));
}

#[test]
fn a_config_others_can_write_or_own_is_refused() {
    let t = TempDir::new("sec-state-config-write");
    let srv = Server::init(t.join("srv"), &[]);
    let cfg = srv.device_add("pc-1", t.path());
    let c = cfg.display();
    chmod(&cfg, 0o620);
    let o = agent(&cfg, &["status"], &[]);
    refused(&o, &format!("refusing config: {c} is writable by group or others (mode 0620)"));
    assert_eq!(mode(&cfg), 0o620, "left for the admin to judge");
    assert!(!t.join("pc-1-state").exists(), "refused before anything else");
    chmod(&cfg, 0o600);
    if !root_or_skip("a_config_others_can_write_or_own_is_refused (owner part)") {
        return;
    }
    lchown(&cfg, Some(NOBODY), None).unwrap();
    refused(&agent(&cfg, &["status"], &[]), &format!("refusing config: {c} belongs to uid {NOBODY}, not to uid 0"));
    lchown(&cfg, Some(0), None).unwrap();
    // Through a link the attacker owns: it could re-point it.
    let link = t.join("link.toml");
    symlink(&cfg, &link).unwrap();
    lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
    refused(&agent(&link, &["status"], &[]), &format!("{} belongs to uid {NOBODY}", link.display()));
    assert!(agent(&cfg, &["status"], &[]).status.success());
}

/// A server with a store package (one file, `conf`) to `dest`, assigned to
/// pc-1; returns (server, package id, agent config).
fn store_setup(t: &TempDir, dest: &Path) -> (Server, u64, PathBuf) {
    let mut srv = Server::init(t.join("srv"), &[]);
    let arc = t.join("s.tar.gz");
    fs::write(&arc, targz(&[Member::File("conf", b"from the package\n", 0o644)])).unwrap();
    let id = srv.package_add(&["--file", arc.to_str().unwrap(), "--action", "store", "--path", dest.to_str().unwrap()]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    srv.start();
    (srv, id, cfg)
}

#[test]
fn a_store_destination_under_a_world_writable_dir_is_refused_and_nothing_goes_through_a_link() {
    if !root_or_skip("a_store_destination_under_a_world_writable_dir_…") {
        return;
    }
    let t = TempDir::new("sec-store-0777");
    // A root-owned directory the attacker wants written, with root's file.
    let etc = t.join("etc");
    fs::create_dir(&etc).unwrap();
    chmod(&etc, 0o755);
    fs::write(etc.join("conf"), VICTIM).unwrap();
    // The package stores into `open/app`; `open` is 0777 and the attacker
    // made `app` a link to the root-owned directory.
    let open = t.join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let dest = open.join("app");
    attacker(&format!("ln -s {} {}", etc.display(), dest.display()), &[&dest]);
    let (srv, id, cfg) = store_setup(&t, &dest);
    let o = agent(&cfg, &["run", "--once"], &[]);
    let all = text(&o);
    assert_eq!(srv.status_of(id, "pc-1"), "ERR_EXECUTE", "{all}");
    assert!(all.contains("store destination is writable by others"), "a clear error: {all}");
    untouched(&etc.join("conf"));
    assert_eq!(mode(&etc), 0o755, "the target's mode is untouched");
}

#[test]
fn a_store_to_a_root_owned_destination_still_succeeds() {
    if !root_or_skip("a_store_to_a_root_owned_destination_…") {
        return;
    }
    let t = TempDir::new("sec-store-ok");
    let dest = t.join("opt/app");
    let (srv, id, cfg) = store_setup(&t, &dest);
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS", "{}", text(&o));
    assert_eq!(fs::read(dest.join("conf")).unwrap(), b"from the package\n");
}
