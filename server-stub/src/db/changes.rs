//! Whether the state a poll is answered from may have changed: the
//! epoch [`crate::poll_cache`] keeps each answer with.
//!
//! A commit on SQLite that changed rows and waited for the disk (not
//! [`super::Db::relaxed`]: those writes — last contacts, NOTIFIED marks,
//! a lockout's trust rows, progress — change no other device's answer)
//! moves the epoch on, after the commit:
//! - in this process, a counter;
//! - in a process that does not serve (`outpost-server assign`,
//!   `device revoke`, … while `serve` runs), also the file
//!   `DIR/state.changes`, replaced by a new one at each change, so that
//!   the server sees it with a `stat` (inode, time, size), no read of the
//!   database.
//!
//! Whoever reads the epoch before the database, and keeps an answer with
//! it, knows the answer stale as soon as the epoch differs: a commit after
//! the read moves it on after committing. A write to the database by
//! another program (the `sqlite3` shell) is not seen: touch
//! `DIR/state.changes` after it, or stop `serve` first.

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

/// This process serves: its own changes are seen through the counter.
pub fn serving() {
    SERVING.store(true, Ordering::SeqCst);
}

/// The state's epoch, as of now. Read it before reading the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    local: u64,
    /// Inode, modification time (s, ns) and size of `DIR/state.changes`.
    pub(crate) file: Option<(u64, i64, i64, u64)>,
}

/// The epoch of the database whose change file is `file`.
pub fn epoch(file: &Path) -> Epoch {
    let local = LOCAL.load(Ordering::Acquire);
    let file = std::fs::metadata(file).ok().map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.size()));
    Epoch { local, file }
}

/// A change was committed to the database whose change file is `file`.
pub(crate) fn changed(file: Option<&Path>) {
    LOCAL.fetch_add(1, Ordering::AcqRel);
    if SERVING.load(Ordering::SeqCst) {
        return;
    }
    if let Some(f) = file
        && let Err(e) = replace(f)
    {
        log::warn!(target: "outpost", "{}: {e}; a running server may answer polls from before this change for up to {} s", f.display(), crate::poll_cache::TTL_SECS);
    }
}

/// Replace `file` by a new one (a new inode: seen even within the
/// resolution of a file's time).
fn replace(file: &Path) -> std::io::Result<()> {
    let tmp = file.with_extension(format!("changes.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    writeln!(f, "{} {}", std::process::id(), LOCAL.load(Ordering::Relaxed))?;
    drop(f);
    std::fs::rename(&tmp, file)
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
        let before = epoch(&file).file;
        assert_eq!(before, None);
        replace(&file).unwrap();
        let once = epoch(&file).file;
        assert!(once.is_some(), "the file appeared");
        assert_eq!(once, epoch(&file).file, "nothing changed since");
        replace(&file).unwrap();
        assert_ne!(once, epoch(&file).file, "replaced within the same tick: a new inode");
        let now = epoch(&file);
        LOCAL.fetch_add(1, Ordering::AcqRel);
        assert_ne!(now, epoch(&file), "a change in this process");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
