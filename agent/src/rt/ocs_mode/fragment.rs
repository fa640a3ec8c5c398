//! OCS mode's fragment fetch, and what a digest mismatch of the whole
//! archive does: the payload is fetched again at a later run (the runs back
//! off), until the mismatches outlast [`crate::engine::refetch`]'s deadline.
//!
//! An OCS info file gives no fragment sizes, and the fragment server is
//! untrusted: each answer's body is bounded by what the package may still
//! hold ([`MAX_UNPACKED_BYTES`] less its other fragments, the bound of a
//! package whose size is not signed) and by the free space less a headroom
//! ([`plan::space_margin`]). Past either, the try fails (what was written
//! stays, so a full package fails each later try at once, until the OCS
//! scheduler gives up on it).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use outpost_hal::linux::{LinuxDisk, sync_dir};
use outpost_hal::storage::DiskSpace;

use super::super::agent::AgentError;
use super::super::http::Url;
use super::super::store::StoreError;
use super::{BodySink, OcsAgent, OcsEnv, SlotResult};
use crate::engine::info::{Info, Proto};
use crate::engine::journal::PackageRecord;
use crate::engine::limits::MAX_UNPACKED_BYTES;
use crate::engine::plan;
use crate::engine::refetch::{Refetch, Verdict};
use crate::engine::status::StatusCode;

impl<E: OcsEnv> OcsAgent<E> {
    /// The archive did not match the info file's digest; its payload is
    /// gone. Fetch it again at the next run, or give up past the deadline.
    pub(super) fn digest_mismatch(&mut self, rec: &mut PackageRecord) -> Result<SlotResult, AgentError> {
        let mut refetch = Refetch::new(1, rec.digest_trouble);
        if refetch.corrupt(self.env.unix_time(), 0) == Verdict::GiveUp {
            log::error!(target: "outpost", "package {}: the archive has not matched its digest for a day; giving up", rec.id);
            self.finish(rec.id, rec.priority, &rec.pack_loc.clone(), &StatusCode::ErrBadDigest)?;
            return Ok(SlotResult::Finished);
        }
        rec.digest_trouble = refetch.trouble();
        rec.fragments_verified = 0;
        self.store.put_package(rec)?;
        Ok(SlotResult::Deferred(Some("archive digest mismatch: fetching it again".into())))
    }

    /// Fetch fragment `n` (1-based) into `frag-n`, resuming `frag-n.part`.
    pub(super) fn fetch_fragment(
        &mut self,
        info: &Info,
        pack_loc: &str,
        n: usize,
    ) -> Result<Result<(), String>, AgentError> {
        let id = info.id;
        let part = self.store.partial_path(id, n);
        let io_err = |e: io::Error| AgentError::Store(StoreError::Io(part.clone(), e));
        let url = match Url::from_location(info.proto == Proto::Https, pack_loc, &format!("{id}/{id}-{n}")) {
            Ok(u) => u,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let file = std::os::unix::fs::OpenOptionsExt::custom_flags(
            OpenOptions::new().append(true).create(true),
            libc::O_NOFOLLOW,
        )
        .open(&part)
        .map_err(io_err)?;
        let have = file.metadata().map_err(io_err)?.len();
        let others = held_besides(&self.store.package_dir(id), &part).map_err(io_err)?;
        let free = LinuxDisk::new(self.store.root()).space().ok().map(|s| s.available);
        let bound = Bound::new(others, have, free);
        let range = (have > 0).then(|| format!("bytes={have}-"));
        let mut sink = PartSink { file, have, status: 0, bound };
        let result = self.env.get(&url, range.as_deref(), &mut sink);
        sink.file.sync_data().map_err(io_err)?;
        match result {
            Ok(()) => {
                drop(sink);
                let done = self.store.fragment_path(id, n);
                fs::rename(&part, &done).map_err(io_err)?;
                sync_dir(&self.store.package_dir(id)).map_err(io_err)?;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(format!("fragment {n}: {e}"))),
        }
    }
}

/// Bytes in `dir`'s fragment files (`frag-N`, `frag-N.part`) other than `part`.
fn held_besides(dir: &Path, part: &Path) -> io::Result<u64> {
    let mut held = 0u64;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let is_frag = e.file_name().to_str().is_some_and(|n| n.starts_with("frag-"));
        if is_frag && e.path() != part {
            held = held.saturating_add(e.metadata()?.len());
        }
    }
    Ok(held)
}

/// How long a fragment's `.part` file may grow in one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bound {
    /// The most bytes the `.part` file may hold.
    max_len: u64,
    /// The package bound is the tighter one (else the free space).
    package: bool,
}

impl Bound {
    /// For a package whose other fragment files hold `others` bytes, a
    /// `.part` file of `have` bytes, and `free` bytes available (`None`: the
    /// disk could not be asked; the writes will tell).
    fn new(others: u64, have: u64, free: Option<u64>) -> Self {
        let package = MAX_UNPACKED_BYTES.saturating_sub(others);
        let disk = free.map_or(u64::MAX, |f| have.saturating_add(f.saturating_sub(plan::space_margin(0))));
        Self { max_len: package.min(disk), package: package <= disk }
    }
}

/// Writes a fragment into its `.part` file, resuming at its length, and
/// refuses a body that would take it past its [`Bound`].
struct PartSink {
    file: File,
    have: u64,
    status: u16,
    bound: Bound,
}

impl BodySink for PartSink {
    fn head(&mut self, status: u16, content_range: Option<&str>) -> Result<(), String> {
        self.status = status;
        match status {
            200 => {
                // Whole fragment (Range not sent or ignored): start over.
                self.file.set_len(0).map_err(|e| e.to_string())?;
                self.have = 0;
                Ok(())
            }
            206 => {
                let start = content_range
                    .and_then(|v| v.trim().strip_prefix("bytes")?.trim().split('-').next()?.trim().parse::<u64>().ok());
                if start == Some(self.have) {
                    Ok(())
                } else {
                    // A range we did not ask for: start this fragment over next time.
                    let _ = self.file.set_len(0);
                    Err(format!("bad content-range {content_range:?} for offset {}", self.have))
                }
            }
            s => Err(format!("server answered {s}")),
        }
    }

    fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
        let len = self.have.saturating_add(chunk.len() as u64);
        if len > self.bound.max_len {
            let why = if self.bound.package {
                "larger than a package without signed sizes may be"
            } else {
                "more than the free space less its headroom"
            };
            return Err(io::Error::other(format!(
                "fragment body goes past {} bytes: {why}; refusing the rest",
                self.bound.max_len
            )));
        }
        self.file.write_all(chunk)?;
        self.have = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_bound_is_the_package_room_or_the_free_space_less_headroom() {
        // Plenty of disk: the package bound, less what the other fragments hold.
        let b = Bound::new(MIB, 0, Some(1 << 40));
        assert_eq!(b, Bound { max_len: MAX_UNPACKED_BYTES - MIB, package: true });
        // A full package: nothing more.
        assert_eq!(Bound::new(MAX_UNPACKED_BYTES, 0, None).max_len, 0);
        // Little disk: what is there (the part's own bytes count), less 16 MiB.
        let b = Bound::new(0, 5 * MIB, Some(40 * MIB));
        assert_eq!(b, Bound { max_len: 5 * MIB + 24 * MIB, package: false });
        assert_eq!(Bound::new(0, 0, Some(MIB)).max_len, 0);
    }
}
