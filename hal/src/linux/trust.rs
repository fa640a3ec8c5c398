//! Whom a path can be trusted against: the checks a privileged process makes
//! before it writes under a directory or runs something from it.
//!
//! ```text
//!   resolve_trusted(path) ── walks / → … → path, one component at a time:
//!        every directory: owned by root or us, and not writable by group
//!                         or others unless sticky (like /tmp)
//!        every symlink:   owned by root or us (it sits in a checked directory)
//!   trusted_dir(path)     ── resolve_trusted, and the directory itself passes
//!                            the same check: safe to create entries in
//!   open_owned_dir(dir)   ── O_DIRECTORY|O_NOFOLLOW, then fstat: ours, not
//!                            writable by group or others
//!   current_dir_fd(cmd)   ── the child starts in the directory the checked
//!                            descriptor is open on (fchdir), not in a path
//! ```
//!
//! When every directory on the way is trusted, nobody else can rename,
//! replace or re-point anything on it: the checked path stays the used path.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Symbolic links followed in one walk before it is called a loop (as Linux's
/// `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Mode bits that let group or others write.
pub const GROUP_OTHER_WRITE: u32 = 0o022;
/// The sticky bit: only an entry's owner may rename or remove it.
const STICKY: u32 = 0o1000;

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why a path is not safe to use.
#[derive(Debug)]
pub enum Untrusted {
    /// The path could not be inspected.
    Io(PathBuf, io::Error),
    /// A symbolic link where none is allowed.
    Symlink(PathBuf),
    /// Not a directory where one is needed.
    NotDir(PathBuf),
    /// Not a regular file where one is needed.
    NotFile(PathBuf),
    /// Owned by a user this process does not trust (`uid`).
    Owner(PathBuf, u32),
    /// Writable by group or others (the mode bits).
    Writable(PathBuf, u32),
    /// More than `MAX_LINKS` symbolic links.
    Loop(PathBuf),
}

impl core::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Symlink(p) => write!(f, "{} is a symbolic link", p.display()),
            Self::NotDir(p) => write!(f, "{} is not a directory", p.display()),
            Self::NotFile(p) => write!(f, "{} is not a regular file", p.display()),
            Self::Owner(p, uid) => write!(f, "{} belongs to uid {uid}, not to uid {}", p.display(), euid()),
            Self::Writable(p, mode) => {
                write!(f, "{} is writable by group or others (mode {:04o})", p.display(), mode & 0o7777)
            }
            Self::Loop(p) => write!(f, "{}: too many symbolic links", p.display()),
        }
    }
}

impl std::error::Error for Untrusted {}

fn io_at(p: &Path) -> impl FnOnce(io::Error) -> Untrusted + '_ {
    move |e| Untrusted::Io(p.to_owned(), e)
}

/// A directory on the way to something trusted: owned by root or us, and
/// writable by nobody else unless sticky.
fn check_way(p: &Path, m: &Metadata) -> Result<(), Untrusted> {
    if !m.is_dir() {
        return Err(Untrusted::NotDir(p.to_owned()));
    }
    if m.uid() != 0 && m.uid() != euid() {
        return Err(Untrusted::Owner(p.to_owned(), m.uid()));
    }
    if m.mode() & GROUP_OTHER_WRITE != 0 && m.mode() & STICKY == 0 {
        return Err(Untrusted::Writable(p.to_owned(), m.mode()));
    }
    Ok(())
}

/// The canonical form of `path` (relative to the working directory if not
/// absolute), reached only through trusted directories and links (see the
/// module doc). The last component itself is not checked, only returned: the
/// caller knows what it must be. When `follow_last` is false and the last
/// component is a symbolic link, that is an error.
pub fn resolve_trusted(path: &Path, follow_last: bool) -> Result<PathBuf, Untrusted> {
    let abs =
        if path.is_absolute() { path.to_owned() } else { std::env::current_dir().map_err(io_at(path))?.join(path) };
    // Components still to walk, the next on top.
    let mut todo: Vec<OsString> = Vec::new();
    let push = |todo: &mut Vec<OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => todo.push(n.to_owned()),
                Component::ParentDir => todo.push("..".into()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
    };
    push(&mut todo, &abs);
    let mut cur = PathBuf::from("/");
    check_way(&cur, &fs::symlink_metadata(&cur).map_err(io_at(&cur))?)?;
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            cur.pop(); // an ancestor of a checked directory: checked
            continue;
        }
        let next = cur.join(&name);
        let m = fs::symlink_metadata(&next).map_err(io_at(&next))?;
        let last = todo.is_empty();
        if m.file_type().is_symlink() {
            if last && !follow_last {
                return Err(Untrusted::Symlink(next));
            }
            if m.uid() != 0 && m.uid() != euid() {
                return Err(Untrusted::Owner(next, m.uid())); // it could re-point it
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(Untrusted::Loop(abs));
            }
            let target = fs::read_link(&next).map_err(io_at(&next))?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            push(&mut todo, &target);
            continue;
        }
        if !last {
            check_way(&next, &m)?;
        }
        cur = next;
    }
    Ok(cur)
}

/// [`resolve_trusted`] (following a link at the end), and the directory it
/// names passes the check of those on the way: owned by root or us, and not
/// writable by group or others unless sticky. Nothing another user could
/// change leads to it, so it is safe to create something in it.
pub fn trusted_dir(path: &Path) -> Result<PathBuf, Untrusted> {
    let real = resolve_trusted(path, true)?;
    check_way(&real, &fs::symlink_metadata(&real).map_err(io_at(&real))?)?;
    Ok(real)
}

/// Open the directory `path` without following a link, and check through the
/// descriptor that it is ours (owned by the effective uid) and that group and
/// others cannot write it. Returns it with its mode bits, so the caller can
/// tighten them (`File::set_permissions` is `fchmod`).
pub fn open_owned_dir(path: &Path) -> Result<(File, u32), Untrusted> {
    let f = OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(path).map_err(
        |e| match e.raw_os_error() {
            // With O_DIRECTORY, a link at `path` gives ENOTDIR (ELOOP without).
            Some(libc::ELOOP | libc::ENOTDIR) => match fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => Untrusted::Symlink(path.to_owned()),
                _ => Untrusted::NotDir(path.to_owned()),
            },
            _ => Untrusted::Io(path.to_owned(), e),
        },
    )?;
    let m = f.metadata().map_err(io_at(path))?;
    if m.uid() != euid() {
        return Err(Untrusted::Owner(path.to_owned(), m.uid()));
    }
    if m.mode() & GROUP_OTHER_WRITE != 0 {
        return Err(Untrusted::Writable(path.to_owned(), m.mode()));
    }
    Ok((f, m.mode()))
}

/// Start `cmd`'s process in the directory `dir` is open on (`fchdir(2)` in
/// the child): whatever happens to the directory's path after `dir` was
/// opened and checked, the child starts where the check was made. Do not
/// also set `current_dir`, which would run first and could fail.
pub fn current_dir_fd(cmd: &mut Command, dir: File) {
    let fd = dir.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it calls fchdir(2) and reads errno,
    // nothing else, and allocates nothing. `fd` stays open in the child: `dir`
    // is moved into the closure, which lives as long as `cmd`, and O_CLOEXEC
    // only closes it at exec.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &dir;
            if libc::fchdir(fd) == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, lchown, symlink};

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("outpost-hal-trust-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_writable_directory_on_the_way_is_untrusted_unless_sticky() {
        let d = tempdir("way");
        fs::create_dir_all(d.join("open/state")).unwrap();
        chmod(&d.join("open"), 0o777);
        let e = resolve_trusted(&d.join("open/state"), false).unwrap_err();
        assert!(matches!(e, Untrusted::Writable(ref p, _) if p.ends_with("open")), "{e}");
        chmod(&d.join("open"), 0o1777);
        assert_eq!(resolve_trusted(&d.join("open/state"), false).unwrap(), d.join("open/state"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn links_on_the_way_are_resolved_and_the_last_one_is_refused() {
        let d = tempdir("links");
        fs::create_dir_all(d.join("real/state")).unwrap();
        symlink(d.join("real"), d.join("via")).unwrap();
        symlink("state", d.join("real/last")).unwrap();
        assert_eq!(resolve_trusted(&d.join("via/./x/../state"), false).ok(), None, "x does not exist");
        assert_eq!(resolve_trusted(&d.join("via/state"), false).unwrap(), d.join("real/state"));
        assert!(matches!(resolve_trusted(&d.join("via/last"), false), Err(Untrusted::Symlink(_))));
        assert_eq!(resolve_trusted(&d.join("via/last"), true).unwrap(), d.join("real/state"));
        symlink("loop", d.join("loop")).unwrap();
        assert!(matches!(resolve_trusted(&d.join("loop/x"), true), Err(Untrusted::Loop(_))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_link_another_user_owns_is_untrusted() {
        if euid() != 0 {
            eprintln!("skipped: needs root to give a link away");
            return;
        }
        let d = tempdir("owner");
        fs::create_dir_all(d.join("real")).unwrap();
        symlink(d.join("real"), d.join("theirs")).unwrap();
        lchown(d.join("theirs"), Some(65534), Some(65534)).unwrap();
        assert!(matches!(resolve_trusted(&d.join("theirs"), true), Err(Untrusted::Owner(_, 65534))));
        lchown(d.join("real"), Some(65534), Some(65534)).unwrap();
        assert!(matches!(open_owned_dir(&d.join("real")), Err(Untrusted::Owner(_, 65534))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_trusted_dir_is_checked_itself_too() {
        let d = tempdir("tdir");
        fs::create_dir(d.join("open")).unwrap();
        symlink(d.join("open"), d.join("via")).unwrap();
        assert_eq!(trusted_dir(&d.join("via")).unwrap(), d.join("open"));
        chmod(&d.join("open"), 0o777);
        assert!(matches!(trusted_dir(&d.join("via")), Err(Untrusted::Writable(_, _))));
        chmod(&d.join("open"), 0o1777);
        assert_eq!(trusted_dir(&d.join("open")).unwrap(), d.join("open"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_owned_directory_is_opened_without_following_links() {
        let d = tempdir("open");
        fs::create_dir(d.join("dir")).unwrap();
        symlink(d.join("dir"), d.join("link")).unwrap();
        let (_, mode) = open_owned_dir(&d.join("dir")).unwrap();
        assert_eq!(mode & 0o777, 0o755);
        assert!(matches!(open_owned_dir(&d.join("link")), Err(Untrusted::Symlink(_))));
        chmod(&d.join("dir"), 0o770);
        assert!(matches!(open_owned_dir(&d.join("dir")), Err(Untrusted::Writable(_, _))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_child_starts_in_the_pinned_directory_even_after_a_swap() {
        let d = tempdir("pin");
        fs::create_dir(d.join("checked")).unwrap();
        fs::write(d.join("checked/who"), "checked").unwrap();
        let (dir, _) = open_owned_dir(&d.join("checked")).unwrap();
        fs::rename(d.join("checked"), d.join("moved")).unwrap();
        fs::create_dir(d.join("checked")).unwrap();
        fs::write(d.join("checked/who"), "swapped").unwrap();
        let mut cmd = Command::new("/bin/cat");
        cmd.arg("who");
        current_dir_fd(&mut cmd, dir);
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "checked");
        fs::remove_dir_all(&d).unwrap();
    }
}
