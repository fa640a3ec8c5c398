//! Running a package's action in its unpack directory, under a timeout.
//!
//! LAUNCH runs a file from the archive (`./NAME`, hyphens allowed) through
//! `/bin/sh -c`; EXECUTE runs a shell command line; STORE copies the tree to
//! its destination. The process gets its own process group, so a timeout
//! kills everything it started (before its leader is reaped, so the group id
//! cannot have been reused). After a normal exit, processes it left running
//! are left alone: installers start services. Output goes to `action.log`.
//!
//! Nothing runs from a path another user could swap: before any action, the
//! package directory (the parent of the unpack directory) is checked — reached
//! through trusted directories only, ours, made 0700 if others could read it
//! — and the unpack directory is opened without following a link; the
//! process then starts in that open directory (`fchdir`), not in a path.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outpost_hal::linux::{Untrusted, current_dir_fd, euid, open_owned_dir, resolve_trusted};
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

/// Check the directory an action runs in and hold it open (see the module
/// doc): the package directory above `dir` must be private to us, so that
/// nobody else can have changed, or can change, anything below it.
pub fn pin(dir: &Path) -> Result<File, Untrusted> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(Untrusted::NotDir(dir.to_owned()));
    };
    let parent = resolve_trusted(parent, false)?;
    let (held, mode) = open_owned_dir(&parent)?;
    if mode & 0o077 != 0 {
        held.set_permissions(fs::Permissions::from_mode(0o700)).map_err(|e| Untrusted::Io(parent.clone(), e))?;
        log::warn!(target: "outpost", "{}: mode {:04o} made 0700", parent.display(), mode & 0o7777);
    }
    let dir = parent.join(name);
    let io_at = |e| Untrusted::Io(dir.clone(), e);
    let f =
        OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(&dir).map_err(io_at)?;
    let uid = f.metadata().map_err(io_at)?.uid();
    if uid != euid() {
        return Err(Untrusted::Owner(dir, uid));
    }
    Ok(f)
}

/// Run `info`'s action with `dir` as working directory, once [`pin`] holds it.
pub fn run(info: &Info, dir: &Path, log_path: &Path, timeout: Duration) -> Outcome {
    let held = match pin(dir) {
        Ok(f) => f,
        Err(e) => {
            log::error!(target: "outpost", "package {}: not running its action: {e}", info.id);
            return Outcome::NotStarted;
        }
    };
    match info.action {
        Action::Store => match store(dir, Path::new(&info.target)) {
            Ok(()) => Outcome::Exited(0),
            Err(e) => {
                log::error!(target: "outpost", "package {}: store to {} failed: {e}", info.id, info.target);
                Outcome::NotStarted
            }
        },
        Action::Execute => spawn(info.id, &info.target, held, log_path, timeout),
        Action::Launch => {
            let Some(prog) = launch_program(&info.target) else {
                log::error!(target: "outpost", "package {}: launch command {:?} names no file of the package", info.id, info.target);
                return Outcome::NotStarted;
            };
            let real =
                dir.join(prog).canonicalize().ok().filter(|p| dir.canonicalize().is_ok_and(|d| p.starts_with(d)));
            let Some(path) = real.filter(|p| fs::metadata(p).is_ok_and(|m| m.is_file())) else {
                log::error!(target: "outpost", "package {}: {prog} is not a file of the package", info.id);
                return Outcome::NotStarted;
            };
            if let Err(e) = fs::set_permissions(&path, fs::Permissions::from_mode(0o755)) {
                log::error!(target: "outpost", "package {}: cannot make {prog} executable: {e}", info.id);
                return Outcome::NotStarted;
            }
            let cmd = info.target.trim_start();
            let line = if cmd.starts_with("./") { cmd.to_string() } else { format!("./{cmd}") };
            spawn(info.id, &line, held, log_path, timeout)
        }
    }
}

/// A fresh, empty `action.log` (mode 0600): whatever is at `path` (an old
/// log, or a link someone left there) is unlinked first, and the file is
/// created with `O_EXCL|O_NOFOLLOW`, so the action's output never goes
/// through a link.
fn create_log(path: &Path) -> io::Result<File> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Run `line` through `/bin/sh -c` in the directory `dir` is open on.
fn spawn(id: u64, line: &str, dir: File, log_path: &Path, timeout: Duration) -> Outcome {
    let log_file = match create_log(log_path).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(f) => f,
        Err(e) => {
            log::error!(target: "outpost", "package {id}: cannot create {}: {e}", log_path.display());
            return Outcome::NotStarted;
        }
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(line)
        .env("OUTPOST_PACKAGE_ID", id.to_string())
        .stdin(Stdio::null())
        .stdout(log_file.0)
        .stderr(log_file.1)
        .process_group(0);
    current_dir_fd(&mut cmd, dir);
    let child = cmd.spawn();
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
                outpost_hal::linux::kill_group(child.id());
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

/// Why a STORE did not complete.
#[derive(Debug)]
pub enum StoreActionError {
    /// The destination is not an absolute path.
    Relative,
    /// The destination, or a directory on the way to it or in it, is one
    /// another user could change under the copy.
    Untrusted(Untrusted),
    /// Reading the package or writing the copy failed.
    Io(io::Error),
}

impl std::fmt::Display for StoreActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Relative => f.write_str("store destination must be an absolute path"),
            Self::Untrusted(u) => write!(f, "store destination is writable by others or not ours, nothing stored: {u}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for StoreActionError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<Untrusted> for StoreActionError {
    fn from(u: Untrusted) -> Self {
        Self::Untrusted(u)
    }
}

/// Copy the tree at `src` into `dest` (created with its parents), keeping
/// modes and symbolic links; dot files included. Below `dest`, a link or file
/// already where the tree has one is removed and made anew, never written
/// through (as `tar` does).
///
/// The agent is root: `dest` must be reached through trusted directories only
/// (owned by root or us, writable by nobody else unless sticky) and be ours
/// and writable by nobody else, as must every directory already in it.
/// Otherwise another user could swap a directory for a link mid-copy and have
/// root write (and chmod) anywhere.
pub fn store(src: &Path, dest: &Path) -> Result<(), StoreActionError> {
    if !dest.is_absolute() {
        return Err(StoreActionError::Relative);
    }
    fs::create_dir_all(dest)?;
    let real = resolve_trusted(dest, true)?;
    open_owned_dir(&real)?;
    copy_tree(src, &real)
}

fn copy_tree(src: &Path, dest: &Path) -> Result<(), StoreActionError> {
    for e in fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dest.join(e.file_name());
        let ft = e.file_type()?;
        let there = fs::symlink_metadata(&to).ok().map(|m| m.file_type());
        if there.is_some_and(|t| !t.is_dir()) {
            fs::remove_file(&to)?; // a directory there is not removed: that fails
        }
        if ft.is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_dir() {
            if there.is_some_and(|t| t.is_dir()) {
                open_owned_dir(&to)?; // already there: nobody else may change it
            } else {
                fs::create_dir(&to)?;
            }
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, fs::metadata(&from)?.permissions())?;
        } else {
            let mut src = File::open(&from)?;
            let mode = src.metadata()?.permissions();
            let mut dst = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode.mode())
                .custom_flags(libc::O_NOFOLLOW)
                .open(&to)?;
            io::copy(&mut src, &mut dst)?;
            dst.set_permissions(mode)?;
        }
    }
    Ok(())
}
