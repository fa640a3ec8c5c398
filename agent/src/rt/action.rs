//! Running a package's action in its unpack directory, under a timeout.
//!
//! LAUNCH runs a file from the archive (`./NAME`, hyphens allowed) through
//! `/bin/sh -c`; EXECUTE runs a shell command line; STORE copies the tree to
//! its destination. The process gets its own process group, so a timeout
//! kills everything it started (before its leader is reaped, so the group id
//! cannot have been reused). After a normal exit, processes it left running
//! are left alone: installers start services. Output goes to `action.log`.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outpost_hal::notify::{Answer, Notice, Notifier};

use crate::engine::info::{Action, Info};
use crate::engine::plan::{self, Outcome, launch_program};

/// Ask the user before installing, if the package wants it; the answer as
/// the package allows it (see [`plan::honour`]). `ask` shows a notice.
pub fn consent(info: &Info, ask: &mut dyn FnMut(&Notice<'_>) -> Answer) -> Answer {
    let Some(notice) = plan::notice_before(info) else { return Answer::Proceed };
    let answer = plan::honour(info, ask(&notice));
    log::info!(target: "outpost", "package {}: the user was asked, answer: {answer:?}", info.id);
    answer
}

/// Tell the user the install is done, if the package wants it (`NEED_DONE_ACTION`).
pub fn tell_done(info: &Info, ask: &mut dyn FnMut(&Notice<'_>) -> Answer) {
    if let Some(notice) = plan::notice_done(info) {
        let _ = ask(&notice);
    }
}

/// Ask through a HAL notifier; a failing hook means proceed.
pub fn ask_with<N: Notifier>(n: &mut N) -> impl FnMut(&Notice<'_>) -> Answer + '_ {
    move |notice| {
        n.ask(notice).unwrap_or_else(|e| {
            log::warn!(target: "outpost", "package {}: notification hook failed ({e}); proceeding", notice.package);
            Answer::Proceed
        })
    }
}

/// How often a running action is checked.
const WAIT_STEP: Duration = Duration::from_millis(20);

/// Run `info`'s action with `dir` as working directory.
pub fn run(info: &Info, dir: &Path, log_path: &Path, timeout: Duration) -> Outcome {
    match info.action {
        Action::Store => match store(dir, Path::new(&info.target)) {
            Ok(()) => Outcome::Exited(0),
            Err(e) => {
                log::error!(target: "outpost", "package {}: store to {} failed: {e}", info.id, info.target);
                Outcome::NotStarted
            }
        },
        Action::Execute => spawn(info.id, &info.target, dir, log_path, timeout),
        Action::Launch => {
            let Some(prog) = launch_program(&info.target) else {
                log::error!(target: "outpost", "package {}: launch command {:?} names no file of the package", info.id, info.target);
                return Outcome::NotStarted;
            };
            let path = dir.join(prog);
            let inside = path.canonicalize().ok().zip(dir.canonicalize().ok()).is_some_and(|(p, d)| p.starts_with(d));
            let is_file = fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false);
            if !inside || !is_file {
                log::error!(target: "outpost", "package {}: {prog} is not a file of the package", info.id);
                return Outcome::NotStarted;
            }
            if let Err(e) = fs::set_permissions(&path, fs::Permissions::from_mode(0o755)) {
                log::error!(target: "outpost", "package {}: cannot make {prog} executable: {e}", info.id);
                return Outcome::NotStarted;
            }
            let cmd = info.target.trim_start();
            let line = if cmd.starts_with("./") { cmd.to_string() } else { format!("./{cmd}") };
            spawn(info.id, &line, dir, log_path, timeout)
        }
    }
}

/// SIGKILL the process group led by `pid`. Only call it while that leader
/// is alive and not yet reaped, so the group id cannot have been reused.
#[allow(unsafe_code)]
fn kill_group(pid: u32) {
    let Ok(pgid) = i32::try_from(pid) else { return };
    if pgid <= 1 {
        return; // -0 is our own group, -1 is every process: never
    }
    // SAFETY: kill(2) with a negative pid signals a process group; it has no
    // memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn spawn(id: u64, line: &str, dir: &Path, log_path: &Path, timeout: Duration) -> Outcome {
    let log_file = match File::create(log_path).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(f) => f,
        Err(e) => {
            log::error!(target: "outpost", "package {id}: cannot create {}: {e}", log_path.display());
            return Outcome::NotStarted;
        }
    };
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("OUTPOST_PACKAGE_ID", id.to_string())
        .stdin(Stdio::null())
        .stdout(log_file.0)
        .stderr(log_file.1)
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            log::error!(target: "outpost", "package {id}: cannot start /bin/sh: {e}");
            return Outcome::NotStarted;
        }
    };
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                // Processes the action started and left running (services an
                // installer starts) are theirs to keep.
                return match (st.code(), st.signal()) {
                    (Some(c), _) => Outcome::Exited(c),
                    _ => Outcome::Signaled,
                };
            }
            Ok(None) if start.elapsed() >= timeout => {
                log::error!(target: "outpost", "package {id}: action still running after {}s, killing it", timeout.as_secs());
                kill_group(child.id());
                let _ = child.wait();
                return Outcome::TimedOut;
            }
            Ok(None) => super::sleep(WAIT_STEP),
            Err(e) => {
                log::error!(target: "outpost", "package {id}: waiting for the action failed: {e}");
                return Outcome::Signaled;
            }
        }
    }
}

/// Copy the tree at `src` into `dest` (created with its parents), keeping
/// modes and symbolic links; dot files included.
pub fn store(src: &Path, dest: &Path) -> io::Result<()> {
    if !dest.is_absolute() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "store destination must be an absolute path"));
    }
    fs::create_dir_all(dest)?;
    copy_tree(src, dest)
}

fn copy_tree(src: &Path, dest: &Path) -> io::Result<()> {
    for e in fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dest.join(e.file_name());
        let ft = e.file_type()?;
        if ft.is_symlink() {
            let target = fs::read_link(&from)?;
            if fs::symlink_metadata(&to).is_ok() {
                fs::remove_file(&to)?;
            }
            symlink(target, &to)?;
        } else if ft.is_dir() {
            if !to.is_dir() {
                fs::create_dir(&to)?;
            }
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, fs::metadata(&from)?.permissions())?;
        } else {
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}
