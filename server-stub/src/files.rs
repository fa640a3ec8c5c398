//! Modes of the server directory's private files.
//!
//! `server.toml` (it may hold the OCS Basic password), `state.db` (device
//! secret hashes) with its `-wal`/`-shm`/`-journal` files, and the private
//! keys are created 0600; `keys/` and `tls/` 0700. `serve` checks them at
//! start and tightens any that others can read, with a warning.
//!
//! The CA's private key `tls/ca-key.pem` signs the server certificate
//! (`init`) and the devices' client certificates (`device add`, `device
//! rotate`). `serve` and the other commands never read it, so an
//! administrator can keep it offline and bring it back for those; see
//! [`CA_KEY_HELP`].

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Files under DIR that must be private (0600), if they exist.
pub const PRIVATE_FILES: &[&str] = &[
    "server.toml",
    "state.db",
    "state.db-wal",
    "state.db-shm",
    "state.db-journal",
    "keys/signing.pk8",
    "tls/server-key.pem",
    "tls/ca-key.pem",
    "tls/ca-next-key.pem",
    "tls/ca-old-key.pem",
];

/// Directories under DIR that hold secrets (0700); `""` is DIR itself.
pub const PRIVATE_DIRS: &[&str] = &["", "keys", "tls", "trust"];

/// What `--help` says about the CA key.
pub const CA_KEY_HELP: &str = "The CA's private key DIR/tls/ca-key.pem signs certificates: the server's (at \
init, with `outpost-server tls`, and when serve renews it, which it does by itself once less than a third of \
its lifetime, at most 30 days, is left) and the devices' client certificates (device add, device rotate). You \
may keep the key offline (for example `mv DIR/tls/ca-key.pem /media/usb/`): serve, package add, device \
revoke, assign, status, validate, unaffect and unblock work without it; device add and device rotate then \
give a secret only, with a note, or fail when [security] require_client_cert is true; and serve warns (in \
its log, hourly, and in GET /admin/v1/health) once its certificate is due. Bring the key back \
(DIR/tls/ca-key.pem, mode 0600) to issue client certificates, and serve renews its own within seconds (or \
run `outpost-server tls renew --dir DIR`); then move it offline again. A CA rollover (docs/rollover.md) \
makes a new CA key, DIR/tls/ca-next-key.pem, which `ca switch` needs and makes DIR/tls/ca-key.pem: move it \
offline after the switch.";

/// Create `path` empty with mode 0600 if it does not exist (never follows
/// a dangling link, never truncates).
pub fn create_private(path: &Path) -> io::Result<()> {
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Hold `DIR/serve.lock` (an advisory lock, `flock`) while the file
/// returned lives: the one `serve` on a SQLite directory. A second is
/// refused: it would keep its own answers and lockout counters in memory
/// and miss the other's changes ([`crate::poll_cache`]). The lock goes
/// with the process, however it ends.
pub fn hold_serve_lock(dir: &Path) -> Result<fs::File, String> {
    let path = dir.join("serve.lock");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // Never through a link; a FIFO put there does not block the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(format!(
            "another outpost-server serve runs on {} ({} is locked): one server per SQLite directory; \
             several instances need PostgreSQL ([database] url in server.toml; README, \"Several servers on PostgreSQL\")",
            dir.display(),
            path.display()
        )),
        Err(fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display())),
    }
}

/// One mode change made by [`tighten`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// The file or directory.
    pub path: PathBuf,
    /// Its mode before.
    pub was: u32,
    /// Its mode now.
    pub now: u32,
}

/// Take group and other permissions away from DIR's private files and
/// directories. Missing ones are skipped (the CA key may be offline).
pub fn tighten(dir: &Path) -> io::Result<Vec<Tightened>> {
    let mut out = Vec::new();
    let targets = PRIVATE_DIRS.iter().map(|d| (d, 0o700)).chain(PRIVATE_FILES.iter().map(|f| (f, 0o600)));
    for (name, private) in targets {
        let path = if name.is_empty() { dir.to_owned() } else { dir.join(name) };
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let was = meta.permissions().mode() & 0o7777;
        if was & 0o077 != 0 {
            let now = was & private;
            fs::set_permissions(&path, fs::Permissions::from_mode(now))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            out.push(Tightened { path, was, now });
        }
    }
    Ok(out)
}

/// What `serve` runs first: tighten, warn about each change, and mention a
/// CA key that is still online.
pub fn check_at_serve(dir: &Path) -> Result<(), String> {
    for t in tighten(dir).map_err(|e| format!("cannot restrict the server's private files: {e}"))? {
        log::warn!(
            target: "outpost",
            "{} was mode {:04o}, readable by others; made {:04o}",
            t.path.display(),
            t.was,
            t.now
        );
    }
    if dir.join("tls/ca-key.pem").exists() {
        log::info!(
            target: "outpost",
            "tls/ca-key.pem is on this server: serve renews the server certificate with it when due (see `outpost-server serve --help` to keep it offline)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn loose_private_files_are_tightened_and_missing_ones_skipped() {
        let dir = std::env::temp_dir().join(format!("outpost-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("tls")).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("server.toml"), "x").unwrap();
        fs::set_permissions(dir.join("server.toml"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(dir.join("tls"), fs::Permissions::from_mode(0o755)).unwrap();
        create_private(&dir.join("state.db")).unwrap();
        create_private(&dir.join("state.db")).unwrap();
        let changed = tighten(&dir).unwrap();
        let names: Vec<_> = changed.iter().map(|t| t.path.strip_prefix(&dir).unwrap().to_path_buf()).collect();
        assert_eq!(names, [PathBuf::new(), PathBuf::from("tls"), PathBuf::from("server.toml")]);
        assert_eq!((mode(&dir.join("server.toml")), mode(&dir.join("tls"))), (0o600, 0o700));
        assert_eq!(mode(&dir), 0o700, "DIR itself");
        assert_eq!(mode(&dir.join("state.db")), 0o600);
        assert!(tighten(&dir).unwrap().is_empty(), "idempotent");
        fs::remove_dir_all(&dir).unwrap();
    }
}
