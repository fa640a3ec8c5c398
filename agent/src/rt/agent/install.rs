//! Verifying a downloaded archive and unpacking it within its bounds, and
//! the space check made before fetching and before unpacking.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use outpost_hal::storage::DiskSpace;

use super::super::store::{Store, StoreError};
use super::super::unpack::{self, UnpackBounds};
use crate::engine::digest::{ArchiveHasher, hex, info_digest_matches};
use crate::engine::info::Info;
use crate::engine::plan;
use crate::engine::status::StatusCode;

/// Check the whole `archive` (the manifest's SHA-256 when there is one, and
/// always the info file's own digest), then unpack it into `dir` within
/// `bounds`. `Some(code)` on failure; nothing is unpacked then
/// (`ERR_BAD_DIGEST` only for a digest mismatch, after which the payload is
/// dropped).
pub(crate) fn verify_and_unpack(
    store: &Store,
    info: &Info,
    archive: &Path,
    sha256: Option<&[u8; 32]>,
    dir: &Path,
    bounds: UnpackBounds,
) -> Result<Option<StatusCode>, StoreError> {
    let id = info.id;
    let io_err = |e: io::Error| StoreError::Io(dir.to_owned(), e);
    let tmp = dir.with_file_name("unpack.tmp");
    for d in [dir, tmp.as_path()] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(io_err)?;
        }
    }
    if info.frags == 0 {
        fs::create_dir_all(dir).map_err(io_err)?;
        return Ok(None);
    }
    let mut chain = fs::File::open(archive).map_err(|e| StoreError::Io(archive.to_owned(), e))?;
    let mut hasher = ArchiveHasher::new(info.digest_algo);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = chain.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let (sha, legacy) = hasher.finish();
    if sha256.is_some_and(|want| *want != sha) || !info_digest_matches(info, &legacy) {
        log::error!(target: "outpost", "package {id}: archive digest mismatch (sha256 {}); nothing unpacked", hex(&sha));
        store.drop_payload(id)?;
        return Ok(Some(StatusCode::ErrBadDigest));
    }
    fs::create_dir_all(&tmp).map_err(io_err)?;
    chain.seek(SeekFrom::Start(0)).map_err(io_err)?;
    settle(id, &tmp, dir, unpack::unpack_bounded(chain, &tmp, bounds))
}

/// After unpacking (or rebuilding) into `tmp`: move it to `dir`, or say why
/// not and remove it (`Some(code)`).
pub(super) fn settle(
    id: u64,
    tmp: &Path,
    dir: &Path,
    r: Result<u64, unpack::UnpackError>,
) -> Result<Option<StatusCode>, StoreError> {
    match r {
        Ok(n) => {
            fs::rename(tmp, dir).map_err(|e| StoreError::Io(dir.to_owned(), e))?;
            log::info!(target: "outpost", "package {id}: unpacked {n} members");
            Ok(None)
        }
        Err(e) => {
            log::error!(target: "outpost", "package {id}: {e}; nothing was installed");
            let _ = fs::remove_dir_all(tmp);
            Ok(Some(match e {
                unpack::UnpackError::Io(ref io) if io.kind() == io::ErrorKind::StorageFull => StatusCode::ErrOutOfSpace,
                _ => StatusCode::ErrBuild,
            }))
        }
    }
}

/// Why a download of `left` more bytes, for an archive of `archive` bytes
/// that unpacks to `unpacked` bytes beside it, does not fit on `disk` now;
/// `None` when it fits, or when the disk cannot be asked (the writes will tell).
pub(super) fn lacks_space<D: DiskSpace>(disk: &mut D, left: u64, unpacked: u64, archive: u64) -> Option<String> {
    let space = disk.space().ok()?;
    let needed = left.saturating_add(unpacked);
    (!plan::fits(space.available, needed, archive))
        .then(|| format!("needs {needed} bytes, {} available", space.available))
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_hal::sim::SimDisk;

    #[test]
    fn space_check_reads_the_disk_through_the_hal() {
        const MIB: u64 = 1 << 20;
        let mut disk = SimDisk::new(1024 * MIB);
        // 10 MiB left of a 100 MiB archive: 110 MiB plus the 16 MiB margin.
        assert_eq!(lacks_space(&mut disk, 10 * MIB, 100 * MIB, 100 * MIB), None);
        disk.set_available(120 * MIB);
        assert_eq!(
            lacks_space(&mut disk, 10 * MIB, 100 * MIB, 100 * MIB).as_deref(),
            Some("needs 115343360 bytes, 125829120 available")
        );
        disk.set_available(126 * MIB);
        assert_eq!(lacks_space(&mut disk, 10 * MIB, 100 * MIB, 100 * MIB), None);
        disk.set_available(0);
        disk.set_broken(true);
        assert_eq!(
            lacks_space(&mut disk, 10 * MIB, 100 * MIB, 100 * MIB),
            None,
            "a disk that cannot be asked does not stop it"
        );
        // An archive that unpacks to 2 GiB needs room for 2 GiB, not for its own size.
        disk.set_broken(false);
        disk.set_available(1024 * MIB);
        assert!(lacks_space(&mut disk, 0, 2048 * MIB, MIB).is_some());
    }
}
