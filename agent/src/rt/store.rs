//! The agent's state directory.
//!
//! ```text
//! STATE/
//!   history                  HistoryRecord: installed package ids
//!   identity                 Identity: the device's credentials after a rotation
//!                            (`rt/identity.rs`; secret and key, 0600)
//!   versions                 Versions: each package name's highest version run
//!   outbox/<report-id>       OutboxRecord: a report not yet acknowledged
//!   trust                    the trust bundle last adopted (`engine::trust`), as the server signed it
//!   packages/<ID>/record     PackageRecord: phase, verified fragments, status
//!   packages/<ID>/info       the info file as fetched (verified via the manifest)
//!   packages/<ID>/manifest   the signed manifest as fetched
//!   packages/<ID>/archive    the fragments one after the other (both protocols)
//!   packages/<ID>/journal.a|b  download checkpoints (A/B slots, CRC'd)
//!   packages/<ID>/unpack/    the unpacked archive: the action's working directory
//!   packages/<ID>/action.log the action's stdout and stderr
//! ```
//!
//! Every record goes through `write_atomic` (temporary, fsync, rename, fsync
//! dir): a crash leaves the old or the new record, never a torn one.
//!
//! The agent runs as root and writes and runs things here, so [`Store::open`]
//! refuses a directory another user could have planted anything in: STATE,
//! `outbox/`, `packages/` and every `packages/<ID>/` must belong to the
//! agent's user, must not be links, and must not be writable by group or
//! others; every directory above STATE must belong to root or the agent's
//! user and not be writable by others unless sticky (`/tmp`). It refuses
//! rather than repairs: once others could write there, its contents cannot be
//! trusted, and only an admin can judge them. Subdirectories that others may
//! merely read are made 0700. No file here is opened through a link.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use outpost_hal::linux::{
    Untrusted, open_owned_dir, read_nofollow, resolve_trusted, sync_dir, trusted_dir, write_atomic,
};

use crate::engine::journal::{self, HistoryRecord, OutboxRecord, PackageRecord, kind};
use crate::engine::manifest::Release;
use crate::engine::version::Versions;

/// Handle on the state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A store error: IO or a record that does not decode.
#[derive(Debug)]
pub enum StoreError {
    /// Filesystem failure.
    Io(PathBuf, io::Error),
    /// A record that cannot be read.
    Record(PathBuf, journal::RecordError),
    /// A directory others could tamper with: the store refuses to use it.
    Unsafe(Untrusted),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Record(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Unsafe(e) => write!(
                f,
                "refusing to use it: {e}; it and its subdirectories must belong to the agent's user and not be \
                 writable by group or others, under directories only root or that user can write (check what \
                 others may have put there before fixing it)"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// Whether the disk is full.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Self::Io(_, e) if e.kind() == io::ErrorKind::StorageFull)
    }
}

fn io_at(p: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |e| StoreError::Io(p.to_owned(), e)
}

/// The bytes of the file `p`, `None` if absent (never through a link).
fn read_optional(p: PathBuf) -> Result<Option<Vec<u8>>, StoreError> {
    match read_nofollow(&p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io(p, e)),
    }
}

/// Create the directory `d` (mode 0700) unless it exists.
fn make_private_dir(d: &Path, recursive: bool) -> Result<(), StoreError> {
    match fs::DirBuilder::new().recursive(recursive).mode(0o700).create(d) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(StoreError::Io(d.to_owned(), e)),
        _ => Ok(()),
    }
}

/// Create the missing directory `d` (and its missing parents, mode 0700),
/// but only below an existing directory that is reached through trusted
/// directories and that others cannot write ([`trusted_dir`]): nothing is
/// created where another user could have pointed a link.
fn create_under_trusted(d: &Path) -> Result<(), StoreError> {
    let abs = std::path::absolute(d).map_err(io_at(d))?;
    let Some(base) = abs.ancestors().skip(1).find(|a| fs::symlink_metadata(a).is_ok()) else {
        return Err(StoreError::Io(abs, io::ErrorKind::NotFound.into()));
    };
    let rest = abs.strip_prefix(base).map_err(|_| StoreError::Io(abs.clone(), io::ErrorKind::InvalidInput.into()))?;
    let base = trusted_dir(base).map_err(StoreError::Unsafe)?;
    make_private_dir(&base.join(rest), true)
}

/// Check a subdirectory of the store (see the module doc) and make it 0700
/// if others may read it.
fn check_private_dir(d: &Path) -> Result<(), StoreError> {
    let (f, mode) = open_owned_dir(d).map_err(StoreError::Unsafe)?;
    if mode & 0o077 != 0 {
        f.set_permissions(fs::Permissions::from_mode(0o700)).map_err(io_at(d))?;
        log::info!(target: "outpost", "{}: mode {:04o} made 0700", d.display(), mode & 0o7777);
    }
    Ok(())
}

impl Store {
    /// Open (and create, mode 0700) the state directory after checking it,
    /// the directories above it and those it holds (see the module doc).
    /// The store's root is the checked, canonical path.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        if fs::symlink_metadata(root).is_err() {
            create_under_trusted(root)?;
        }
        let root = resolve_trusted(root, false).map_err(StoreError::Unsafe)?;
        open_owned_dir(&root).map_err(StoreError::Unsafe)?;
        for sub in ["outbox", "packages"] {
            let d = root.join(sub);
            make_private_dir(&d, false)?;
            check_private_dir(&d)?;
        }
        let packages = root.join("packages");
        for e in fs::read_dir(&packages).map_err(io_at(&packages))? {
            let e = e.map_err(io_at(&packages))?;
            if e.file_type().map_err(io_at(&e.path()))?.is_file() {
                continue; // not a package: never used
            }
            check_private_dir(&e.path())?;
        }
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of one package.
    pub fn package_dir(&self, id: u64) -> PathBuf {
        self.root.join("packages").join(id.to_string())
    }

    fn read_record<T: serde::de::DeserializeOwned>(&self, path: &Path, k: u8) -> Result<Option<T>, StoreError> {
        match read_nofollow(path) {
            Ok(b) => journal::decode(k, &b).map(Some).map_err(|e| StoreError::Record(path.to_owned(), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io(path.to_owned(), e)),
        }
    }

    fn write_record<T: serde::Serialize>(&self, path: &Path, k: u8, v: &T) -> Result<(), StoreError> {
        let bytes = journal::encode(k, v).map_err(|e| StoreError::Record(path.to_owned(), e))?;
        write_atomic(path, &bytes).map_err(io_at(path))
    }

    /// The history (empty when none was written yet).
    pub fn history(&self) -> Result<HistoryRecord, StoreError> {
        Ok(self.read_record(&self.root.join("history"), kind::HISTORY)?.unwrap_or_default())
    }

    /// Add `id` to the history.
    pub fn add_history(&self, id: u64) -> Result<(), StoreError> {
        let mut h = self.history()?;
        if h.add(id) {
            self.write_record(&self.root.join("history"), kind::HISTORY, &h)?;
        }
        Ok(())
    }

    /// Each package name's highest version run (empty when none ran yet).
    pub fn versions(&self) -> Result<Versions, StoreError> {
        Ok(self.read_record(&self.root.join("versions"), kind::VERSIONS)?.unwrap_or_default())
    }

    /// Note durably that `release`'s action starts (written before it runs).
    pub fn note_release(&self, release: &Release) -> Result<(), StoreError> {
        let mut v = self.versions()?;
        v.note(release);
        self.write_record(&self.root.join("versions"), kind::VERSIONS, &v)
    }

    /// The record of package `id`, if any.
    pub fn package(&self, id: u64) -> Result<Option<PackageRecord>, StoreError> {
        self.read_record(&self.package_dir(id).join("record"), kind::PACKAGE)
    }

    /// Write the record of a package (creating its directory, mode 0700).
    pub fn put_package(&self, rec: &PackageRecord) -> Result<(), StoreError> {
        let dir = self.package_dir(rec.id);
        if fs::symlink_metadata(&dir).is_err() {
            make_private_dir(&dir, false)?;
            sync_dir(&self.root.join("packages")).map_err(io_at(&dir))?;
        }
        self.write_record(&dir.join("record"), kind::PACKAGE, rec)
    }

    /// Ids of every package directory with a record.
    pub fn package_ids(&self) -> Result<Vec<u64>, StoreError> {
        let dir = self.root.join("packages");
        let mut ids: Vec<u64> = fs::read_dir(&dir)
            .map_err(io_at(&dir))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The trust bundle last adopted, as stored (`None`: none yet).
    pub fn trust_bundle(&self) -> Result<Option<Vec<u8>>, StoreError> {
        read_optional(self.root.join("trust"))
    }

    /// Store a verified trust bundle durably, before it is used.
    pub fn put_trust_bundle(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let p = self.root.join("trust");
        write_atomic(&p, bytes).map_err(io_at(&p))
    }

    /// Write a file of a package durably (info, manifest).
    pub fn put_package_file(&self, id: u64, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let dir = self.package_dir(id);
        make_private_dir(&dir, false)?;
        let p = dir.join(name);
        write_atomic(&p, data).map_err(io_at(&p))
    }

    /// Read a file of a package, `None` if absent.
    pub fn package_file(&self, id: u64, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read_optional(self.package_dir(id).join(name))
    }

    /// Remove the cached payload of a package (fragments, unpack tree),
    /// keeping its record, info and manifest.
    pub fn drop_payload(&self, id: u64) -> Result<(), StoreError> {
        let dir = self.package_dir(id);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let p = e.path();
            // `frag-*`: the OCS layout of agents before 2026-12.
            if name.starts_with("frag-") || name == "archive" || name.starts_with("journal.") {
                fs::remove_file(&p).map_err(io_at(&p))?;
            } else if name.starts_with("unpack") {
                fs::remove_dir_all(&p).map_err(io_at(&p))?;
            }
        }
        sync_dir(&dir).map_err(io_at(&dir))
    }

    /// Note durably that a reboot is wanted (after package `id`).
    pub fn set_reboot_pending(&self, id: u64) -> Result<(), StoreError> {
        let p = self.root.join("reboot-pending");
        write_atomic(&p, id.to_string().as_bytes()).map_err(io_at(&p))
    }

    /// The package whose reboot is pending, if any.
    pub fn reboot_pending(&self) -> Option<u64> {
        let bytes = read_nofollow(&self.root.join("reboot-pending")).ok()?;
        std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
    }

    /// Forget the pending reboot (durably, before rebooting: no reboot loops).
    pub fn clear_reboot_pending(&self) -> Result<(), StoreError> {
        let p = self.root.join("reboot-pending");
        match fs::remove_file(&p) {
            Ok(()) => sync_dir(&self.root).map_err(io_at(&p)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io(p, e)),
        }
    }

    /// Bytes of payload (archive, fragments, unpacked tree) a package holds,
    /// and when it was last written.
    pub fn payload(&self, id: u64) -> (u64, std::time::SystemTime) {
        fn walk(p: &Path, acc: &mut (u64, std::time::SystemTime)) {
            let Ok(rd) = fs::read_dir(p) else { return };
            for e in rd.flatten() {
                let Ok(m) = e.metadata() else { continue }; // does not follow links
                if m.is_dir() {
                    walk(&e.path(), acc);
                } else {
                    acc.0 += m.len();
                    if let Ok(t) = m.modified() {
                        acc.1 = acc.1.max(t);
                    }
                }
            }
        }
        let mut acc = (0, std::time::UNIX_EPOCH);
        walk(&self.package_dir(id), &mut acc);
        acc
    }

    /// Forget a package entirely (record, metadata, payload).
    pub fn remove_package(&self, id: u64) -> Result<(), StoreError> {
        let dir = self.package_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => sync_dir(&self.root.join("packages")).map_err(io_at(&dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io(dir, e)),
        }
    }

    /// Queue a report durably.
    pub fn queue_report(&self, r: &OutboxRecord) -> Result<(), StoreError> {
        self.write_record(&self.root.join("outbox").join(format!("{:016x}", r.report_id)), kind::OUTBOX, r)
    }

    /// Reports not yet acknowledged. Unreadable entries are logged and skipped.
    pub fn pending_reports(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        let dir = self.root.join("outbox");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_at(&dir))?.flatten() {
            let p = e.path();
            if p.extension().is_some() {
                continue; // a temporary left by a crash
            }
            match self.read_record::<OutboxRecord>(&p, kind::OUTBOX) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(err) => {
                    log::warn!(target: "outpost", "skipping unreadable queued report: {err}")
                }
            }
        }
        out.sort_by_key(|r| r.report_id);
        Ok(out)
    }

    /// Drop an acknowledged report.
    pub fn ack_report(&self, report_id: u64) -> Result<(), StoreError> {
        let p = self.root.join("outbox").join(format!("{report_id:016x}"));
        match fs::remove_file(&p) {
            Ok(()) | Err(_) => sync_dir(&self.root.join("outbox")).map_err(io_at(&p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("outpost-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_history_and_outbox() {
        let d = tmp("rec");
        let s = Store::open(&d).unwrap();
        s.add_history(5).unwrap();
        s.add_history(5).unwrap();
        assert_eq!(s.history().unwrap().ids, [5]);
        let r = OutboxRecord { report_id: 7, package: 5, status: "SUCCESS".into() };
        s.queue_report(&r).unwrap();
        assert_eq!(s.pending_reports().unwrap(), [r]);
        s.ack_report(7).unwrap();
        assert!(s.pending_reports().unwrap().is_empty());
        // A garbage history is an error, not a panic or a silent reset.
        fs::write(d.join("history"), b"garbage").unwrap();
        assert!(s.history().is_err());
        // Each name's highest version run, kept across a reopen.
        let version = crate::engine::version::Version::parse("1.10").unwrap();
        s.note_release(&Release { name: "app".into(), version, downgrade: false }).unwrap();
        assert_eq!(Store::open(&d).unwrap().versions().unwrap().get("app"), Some(version));
        fs::write(d.join("versions"), b"garbage").unwrap();
        assert!(s.versions().is_err(), "an error, not a reset that would allow a downgrade");
        fs::remove_dir_all(&d).unwrap();
    }
}
