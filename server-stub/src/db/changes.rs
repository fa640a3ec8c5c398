//! Whether the state a poll is answered from may have changed: the
//! epoch [`crate::poll_cache`] keeps each answer with.
//!
//! A commit on SQLite that changed rows and waited for the disk (not
//! `Db::relaxed`: those writes — last contacts, NOTIFIED marks,
//! a lockout's trust rows, progress — change no other device's answer)
//! moves the epoch on, after the commit:
//! - in this process, a counter;
//! - in a process that does not serve (`outpost-server assign`,
//!   `device revoke`, … while `serve` runs), also the file
//!   `DIR/state.changes`, which grows by a byte at each change: the server
//!   sees it with a `stat` (its inode and size, which never comes back to
//!   an earlier value), no read of the database. A command that cannot
//!   grow it fails (its change is committed; the server would see it only
//!   when answers kept expire, [`crate::poll_cache::TTL_SECS`]). `serve`
//!   starts the file anew.
//!
//! Whoever reads the epoch before the database, and keeps an answer with
//! it, knows the answer stale as soon as the epoch differs: a commit after
//! the read moves it on after committing. A write to the database by
//! another program (the `sqlite3` shell) is not seen: append to
//! `DIR/state.changes` after it (`echo >> DIR/state.changes`), or stop
//! `serve` first. SQLite's own `PRAGMA data_version` would see those too,
//! but also every write the server itself makes (a second's contacts),
//! and answers would last a second.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Changes committed in this process.
static LOCAL: AtomicU64 = AtomicU64::new(0);
/// Whether this process serves: its changes need not go through the file.
static SERVING: AtomicBool = AtomicBool::new(false);

/// The file that says a change was made to the database at `db` by a
/// process that does not serve it.
pub fn file_of(db: &Path) -> PathBuf {
    db.with_extension("changes")
}

/// This process serves the database whose change file is `file`: its own
/// changes are seen through the counter, and the file starts anew (a new
/// inode: what it said before concerns no answer kept now).
pub fn serving(file: &Path) -> std::io::Result<()> {
    SERVING.store(true, Ordering::SeqCst);
    let tmp = file.with_extension("changes.new");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    open(&tmp, true)?;
    std::fs::rename(&tmp, file)
}

/// The state's epoch, as of now. Read it before reading the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    local: u64,
    /// Inode and size of `DIR/state.changes`.
    pub(crate) file: Option<(u64, u64)>,
}

/// The epoch of the database whose change file is `file`.
pub fn epoch(file: &Path) -> Epoch {
    let local = LOCAL.load(Ordering::Acquire);
    let file = std::fs::metadata(file).ok().map(|m| (m.ino(), m.size()));
    Epoch { local, file }
}

/// A change was committed to the database whose change file is `file`.
/// `told`: its caller tells the answers kept which devices it concerns
/// (reports: [`crate::poll_cache::PollCache::reported`]), so the epoch
/// stays where it is; only in the process that serves, which keeps those
/// answers (a command's changes always move it). `Err`: a server running
/// on it could not be told.
pub(crate) fn changed(file: Option<&Path>, told: bool) -> Result<(), String> {
    if SERVING.load(Ordering::SeqCst) {
        if !told {
            LOCAL.fetch_add(1, Ordering::AcqRel);
        }
        return Ok(());
    }
    LOCAL.fetch_add(1, Ordering::AcqRel);
    let Some(f) = file else { return Ok(()) };
    grow(f).map_err(|e| {
        format!(
            "the change is committed, but {} could not be written ({e}): a server running on this directory \
             may answer polls as before it for up to {} s",
            f.display(),
            crate::poll_cache::TTL_SECS
        )
    })
}

/// Open `file` to append to it, never through a link; `new`: it must not exist.
fn open(file: &Path, new: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    if new {
        o.write(true).create_new(true)
    } else {
        o.append(true).create(true)
    };
    o.custom_flags(libc::O_NOFOLLOW).mode(0o600).open(file)
}

/// One byte more in `file`.
fn grow(file: &Path) -> std::io::Result<()> {
    open(file, false)?.write_all(b".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_from_another_process_is_seen_in_the_file_and_one_here_in_the_counter() {
        let dir = std::env::temp_dir().join(format!("outpost-changes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = file_of(&dir.join("state.db"));
        assert_eq!(file, dir.join("state.changes"));
        // Other tests of this process commit too: the file's part alone.
        assert_eq!(epoch(&file).file, None);
        grow(&file).unwrap();
        let once = epoch(&file).file;
        assert!(once.is_some(), "the file appeared");
        assert_eq!(once, epoch(&file).file, "nothing changed since");
        grow(&file).unwrap();
        assert_ne!(once, epoch(&file).file, "grown within the same tick");
        let now = epoch(&file);
        LOCAL.fetch_add(1, Ordering::AcqRel);
        assert_ne!(now, epoch(&file), "a change in this process");
        // Never written through a link.
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), &file).unwrap();
        assert!(grow(&file).is_err());
        assert!(!dir.join("elsewhere").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
