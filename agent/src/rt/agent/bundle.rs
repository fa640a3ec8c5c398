//! Offline bundles ([`crate::engine::bundle`]): a third source of a
//! package's metadata and fragments beside the server and the cache, that
//! needs no network. `outpost-agent install FILE` and the `import_dir` scan
//! hand a bundle to the one lifecycle ([`crate::engine::deploy`]): the same
//! signature, digest, expiry, downgrade and allowed-action checks as a
//! download, the same journal, unpack, action, and a status queued in the
//! outbox like any other, reported exactly once when the server is next
//! reachable.
//!
//! `import_dir` is scanned at every cycle (at start and after each poll
//! interval) for `*.outpost` files; each bundle is installed once: its
//! identity (the SHA-256 of its head: id, info file, signed manifest) is
//! recorded in `STATE/imported` (the newest [`MAX_IMPORTED`]) once it
//! reached a final status, or once it is known not to be a bundle or not a
//! valid one. Files there are only read, never changed, and only regular
//! files are opened (no link followed, no FIFO waited on).
//!
//! The head's package id is not signed by itself: the head is verified
//! in full (`verify_bundle`) before any record or report of that
//! package is touched, and a deployment the server drives (a download in
//! progress, a status not yet reported) is never taken over by a bundle:
//! the bundle is left for a later run.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use outpost_hal::linux::{DirBlocks, OpenRegularError, open_regular_nofollow, read_nofollow, write_atomic};

use super::super::env::{BodySink, Env, GetError};
use super::super::fragment;
use super::super::store::StoreError;
use super::drive::{Done, Source};
use super::{Agent, AgentError};
use crate::engine::bundle::{BundleError, MAX_HEAD, decode_head, fragment_span};
use crate::engine::deploy::Fetched;
use crate::engine::download::Download;
use crate::engine::journal::Phase;
use crate::engine::manifest::{Manifest, sha256};
use crate::engine::proto::Offer;
use crate::engine::status::StatusCode;

/// The `pack_loc` of a package installed from a bundle: no fragment
/// location; an interrupted one resumes when its bundle is given again.
pub(super) const BUNDLE_LOC: &str = "bundle";
/// Bundle identities kept in `STATE/imported`.
pub const MAX_IMPORTED: usize = 1024;
/// Bundles looked at per scan of `import_dir`.
const MAX_SCAN: usize = 256;

/// Why a file cannot be used as a bundle.
#[derive(Debug)]
pub enum BundleOpenError {
    /// It cannot be read.
    Io(io::Error),
    /// It is not a bundle, or is cut or padded.
    Format(BundleError),
    /// It is a symbolic link, a FIFO, a device: never opened as a bundle.
    NotRegular,
}

impl std::fmt::Display for BundleOpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::Format(e) => e.fmt(f),
            Self::NotRegular => OpenRegularError::NotRegular.fmt(f),
        }
    }
}

/// An open bundle: its head in memory, its payload read in place.
pub struct Bundle {
    path: PathBuf,
    file: File,
    /// The package it claims to be.
    pub id: u64,
    /// The info file.
    pub(super) info: Vec<u8>,
    /// The signed manifest.
    pub(super) manifest: Vec<u8>,
    /// Bytes of payload.
    pub(super) payload_len: u64,
    payload_at: u64,
    /// SHA-256 of the head: the bundle's identity for `import_dir`.
    pub digest: [u8; 32],
}

impl Bundle {
    /// Open `path` and decode its head (at most [`MAX_HEAD`] bytes read).
    pub fn open(path: &Path) -> Result<Self, BundleOpenError> {
        let io_err = BundleOpenError::Io;
        // Not through a link, never blocking on a FIFO or touching a device.
        let file = open_regular_nofollow(path).map_err(|e| match e {
            OpenRegularError::Io(e) => io_err(e),
            OpenRegularError::NotRegular => BundleOpenError::NotRegular,
        })?;
        let meta = file.metadata().map_err(io_err)?;
        let mut head = Vec::new();
        (&file).take(MAX_HEAD as u64).read_to_end(&mut head).map_err(io_err)?;
        let h = decode_head(&head).map_err(BundleOpenError::Format)?;
        if (h.len as u64).checked_add(h.payload_len) != Some(meta.len()) {
            return Err(BundleOpenError::Format(BundleError::Size));
        }
        Ok(Self {
            path: path.to_owned(),
            id: h.package,
            info: h.info.to_vec(),
            manifest: h.manifest.to_vec(),
            payload_len: h.payload_len,
            payload_at: h.len as u64,
            digest: sha256(&head[..h.len]),
            file,
        })
    }

    /// The next fragment of `m` (verified) into `dl`, read from the payload
    /// as a server that ignores `Range` would send it. A fragment that fails
    /// its digest is final (`ERR_BAD_DIGEST`); a read that fails (the stick
    /// pulled out) leaves the package for a later run.
    pub(super) fn fetch(&self, m: &Manifest, dl: &mut Download, blocks: &mut DirBlocks) -> Result<Fetched, StoreError> {
        let Some((n, _)) = dl.request() else { return Ok(Fetched::Complete) };
        let at = self.path.display();
        let mut get = |_: Option<&str>, sink: &mut dyn BodySink| self.send(m, n, sink);
        Ok(match fragment::fetch_via(&mut get, &at, m.package_id, dl, blocks, None, false)?.0 {
            Fetched::Corrupt => {
                log::error!(target: "outpost", "package {}: fragment {n} of bundle {at} fails its digest; nothing installed", m.package_id);
                Fetched::Final(StatusCode::ErrBadDigest)
            }
            Fetched::Failed(why) => Fetched::Unavailable(why),
            f => f,
        })
    }

    fn send(&self, m: &Manifest, n: usize, sink: &mut dyn BodySink) -> Result<(), GetError> {
        let broken = |e: io::Error| GetError::Broken(format!("{}: {e}", self.path.display()));
        let (offset, size) = fragment_span(m, n).ok_or_else(|| GetError::Unreachable("no such fragment".into()))?;
        sink.head(200, None).map_err(GetError::Refused)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut done = 0;
        while done < size {
            let want = buf.len().min((size - done) as usize);
            let at = self.payload_at + offset + done;
            let got = self.file.read_at(&mut buf[..want], at).map_err(broken)?;
            if got == 0 {
                return Err(broken(io::ErrorKind::UnexpectedEof.into()));
            }
            sink.data(&buf[..got]).map_err(broken)?;
            done += got as u64;
        }
        Ok(())
    }
}

/// How an install from a bundle ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// With this final status (queued for the server).
    Final(StatusCode),
    /// Not in this run (why is logged): it goes on when the bundle is given again.
    Later,
    /// Its head does not verify (why): nothing installed, nothing recorded
    /// for the package it claims.
    Invalid(String),
}

impl<E: Env> Agent<E> {
    /// Install `b` through the lifecycle, with no network.
    ///
    /// The head is verified first, before any package record or the outbox
    /// is touched (`verify_bundle`); a package the server drives
    /// (a download in progress, a status not yet reported) is left alone
    /// and the bundle left for a later run.
    pub fn install_bundle(&mut self, b: &Bundle) -> Result<Installed, AgentError> {
        let offer = Offer { id: b.id, priority: 5, force: false, info_loc: String::new(), pack_loc: BUNDLE_LOC.into() };
        let prev = self.store.package(b.id)?;
        let resuming = prev.as_ref().is_some_and(|r| r.pack_loc == BUNDLE_LOC && r.phase == Phase::Fetching);
        if let Err(why) = self.verify_bundle(b, resuming)? {
            log::error!(target: "outpost", "package {}: not a valid bundle: {why}; refusing it, nothing installed or recorded", b.id);
            return Ok(Installed::Invalid(why));
        }
        let pending = self.store.pending_reports()?.iter().any(|r| r.package == b.id);
        if let Some(rec) = &prev
            && rec.pack_loc != BUNDLE_LOC
            && (rec.phase != Phase::Finished || pending)
        {
            log::warn!(target: "outpost", "package {}: the server's deployment of it is in progress or not yet reported; the bundle is left for a later run", b.id);
            return Ok(Installed::Later);
        }
        // A failure of a bundle install still on its way to the server is
        // superseded by this new try (another copy of the bundle): only the
        // newest outcome goes.
        if let Some(rec) = prev
            && rec.pack_loc == BUNDLE_LOC
            && rec.status.as_deref().is_some_and(|s| !StatusCode::parse(s).is_success())
        {
            for r in self.store.pending_reports()?.iter().filter(|r| r.package == b.id) {
                self.store.ack_report(r.report_id)?;
            }
        }
        let done = match self.deployment(&offer)? {
            Some(d) => self.drive_from(d, &offer, Source::Bundle(b))?,
            None => Done::Finished, // its status is on its way
        };
        let status = self.store.package(b.id)?.and_then(|r| r.status);
        Ok(match (done, status) {
            (Done::Finished, Some(s)) => Installed::Final(StatusCode::parse(&s)),
            _ => Installed::Later,
        })
    }

    /// Check `b`'s head as a download's metadata is checked, touching no
    /// record: the manifest signed by a trusted key, for the package the
    /// head names, the info file's digest, the payload's size, expiry (not
    /// for a bundle install being resumed) and downgrade.
    fn verify_bundle(&self, b: &Bundle, resuming: bool) -> Result<Result<(), String>, StoreError> {
        let now = self.env.unix_time();
        let m = match Manifest::decode_verified_any(&b.manifest, &self.trust.keys(now)) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if m.package_id != b.id {
            return Ok(Err(format!("its manifest is for package {}", m.package_id)));
        }
        if sha256(&b.info) != m.info_sha256 {
            return Ok(Err("its info file does not match its signed manifest".into()));
        }
        if b.payload_len != m.archive_size {
            return Ok(Err("its payload is not its signed size".into()));
        }
        if !resuming && m.is_expired(now) {
            return Ok(Err(format!("its signed manifest expired at {}", m.expires.unwrap_or(0))));
        }
        if let Some(r) = &m.release
            && let Err(have) = self.store.versions()?.admit(r)
        {
            return Ok(Err(format!("{} {} is older than the {have} run here", r.name, r.version)));
        }
        Ok(Ok(()))
    }

    /// Install each bundle of `import_dir` not installed before (see the
    /// module doc). Returns how many reached a final status.
    pub(super) fn import_bundles(&mut self) -> Result<usize, AgentError> {
        let Some(dir) = self.cfg.agent.import_dir.clone() else { return Ok(0) };
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) }; // no stick now
        warn_if_open(Path::new(&dir));
        let files =
            entries.flatten().map(|e| e.path()).filter(|p| p.as_os_str().as_encoded_bytes().ends_with(b".outpost"));
        let record = self.store.root().join("imported");
        let mut seen = read_imported(&record);
        let mut finished = 0;
        for path in files.take(MAX_SCAN) {
            let digest = match Bundle::open(&path) {
                Ok(b) if seen.contains(&b.digest) => continue,
                Ok(b) => match self.install_bundle(&b)? {
                    Installed::Final(_) => {
                        finished += 1;
                        b.digest
                    }
                    Installed::Later => continue,
                    Installed::Invalid(_) => b.digest, // logged; not tried again
                },
                Err(BundleOpenError::Io(..)) => continue, // perhaps readable later
                Err(e) => {
                    let d = sha256(path.as_os_str().as_encoded_bytes());
                    if seen.contains(&d) {
                        continue;
                    }
                    log::error!(target: "outpost", "{}: {e}; not tried again", path.display());
                    d
                }
            };
            seen.push(digest);
            let skip = seen.len().saturating_sub(MAX_IMPORTED);
            seen.drain(..skip);
            write_atomic(&record, seen.as_flattened()).map_err(|e| StoreError::Io(record.clone(), e))?;
        }
        Ok(finished)
    }
}

/// Log once per run when `dir` is writable by group or others, or (when
/// the agent runs as root) owned by another user: whoever can write there
/// chooses which validly signed packages are installed. Not refused: USB
/// sticks are often mounted with a user's uid.
fn warn_if_open(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    let Ok(m) = std::fs::metadata(dir) else { return };
    let writable = m.mode() & 0o022 != 0;
    let foreign = outpost_hal::linux::euid() == 0 && m.uid() != 0;
    if (writable || foreign) && !WARNED.swap(true, Ordering::Relaxed) {
        let why = if writable { "is writable by group or others" } else { "is owned by another user than root" };
        log::warn!(target: "outpost", "import_dir {} {why}: whoever can write there chooses which validly signed packages get installed", dir.display());
    }
}

/// The identities in `STATE/imported` (none when absent or unreadable).
fn read_imported(p: &Path) -> Vec<[u8; 32]> {
    let mut seen = Vec::new();
    for c in read_nofollow(p).unwrap_or_default().chunks_exact(32) {
        let mut d = [0u8; 32];
        d.copy_from_slice(c);
        seen.push(d);
    }
    seen
}

/// What `import_dir` holds now, as one number that changes when a
/// `*.outpost` file appears, goes or changes (name, size, modification
/// time; at most [`MAX_SCAN`] files), or the directory comes or goes (a
/// stick mounted there). Cheap enough to look at every second between
/// cycles ([`super::run_forever`]).
pub(super) fn import_fingerprint(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut files: Vec<(Vec<u8>, u64, i64)> = entries
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().ends_with(b".outpost"))
        .take(MAX_SCAN)
        .filter_map(|e| {
            use std::os::unix::fs::MetadataExt;
            let m = e.metadata().ok()?;
            Some((e.file_name().as_encoded_bytes().to_vec(), m.len(), m.mtime_nsec() ^ m.mtime()))
        })
        .collect();
    files.sort();
    // FNV-1a over the list: no hasher to carry for this.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h = (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(b"dir");
    for (name, len, mtime) in &files {
        eat(name);
        eat(&len.to_le_bytes());
        eat(&mtime.to_le_bytes());
    }
    h
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    #[test]
    fn a_new_or_changed_bundle_changes_the_fingerprint_and_other_files_do_not() {
        let d = std::env::temp_dir().join(format!("outpost-import-fp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(import_fingerprint(&d), 0, "no directory (no stick)");
        std::fs::create_dir_all(&d).unwrap();
        let empty = import_fingerprint(&d);
        assert_ne!(empty, 0, "a directory, even empty, is not the absent one");
        std::fs::write(d.join("notes.txt"), b"x").unwrap();
        assert_eq!(import_fingerprint(&d), empty, "not a bundle");
        std::fs::write(d.join("app.outpost"), b"xx").unwrap();
        let one = import_fingerprint(&d);
        assert_ne!(one, empty, "a bundle appeared");
        assert_eq!(import_fingerprint(&d), one, "stable while nothing changes");
        std::fs::write(d.join("app.outpost"), b"xxx").unwrap();
        assert_ne!(import_fingerprint(&d), one, "the bundle changed");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
