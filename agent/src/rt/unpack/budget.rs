//! What one unpack may write: members and data bytes (the signed manifest's
//! numbers, or the fixed bounds), the mode bits kept, and sparse writing.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::UnpackError;
use crate::engine::plan::UnpackBounds;

/// Runs of zeros are looked for in blocks of this many bytes.
const HOLE_BLOCK: usize = 4096;

/// Counts what an unpack writes against its bounds.
#[derive(Debug)]
pub(super) struct Budget {
    bounds: UnpackBounds,
    bytes: u64,
    members: u64,
}

impl Budget {
    pub(super) fn new(bounds: UnpackBounds) -> Self {
        Self { bounds, bytes: 0, members: 0 }
    }

    /// Members admitted so far.
    pub(super) fn members(&self) -> u64 {
        self.members
    }

    /// Admit one more member, or refuse the archive.
    pub(super) fn member(&mut self, name: &Path) -> Result<(), UnpackError> {
        self.members += 1;
        if self.members > self.bounds.members {
            return Err(UnpackError::OverBound(format!(
                "{}: more than {} members",
                name.display(),
                self.bounds.members
            )));
        }
        Ok(())
    }

    /// The permission bits kept from an archive mode: never set-id or
    /// sticky; group and other write only when the package asks.
    pub(super) fn mode(&self, mode: u32) -> u32 {
        mode & self.bounds.mode_mask()
    }

    /// Copy a member's data into `out`, counting it against the byte bound.
    /// `sparse`: blocks of zeros are left as holes (GNU sparse members,
    /// whose holes the tar reader hands over as zeros).
    pub(super) fn copy(
        &mut self,
        name: &Path,
        data: &mut dyn Read,
        out: &mut File,
        sparse: bool,
    ) -> Result<(), UnpackError> {
        let mut buf = vec![0u8; 64 * 1024];
        let (mut len, mut hole) = (0u64, 0u64);
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Corrupt(format!("{}: {e}", name.display()))),
            };
            self.bytes += n as u64;
            if self.bytes > self.bounds.bytes {
                return Err(UnpackError::OverBound(format!(
                    "{}: unpacks to more than {} bytes",
                    name.display(),
                    self.bounds.bytes
                )));
            }
            for block in buf[..n].chunks(HOLE_BLOCK) {
                if sparse && block.iter().all(|b| *b == 0) {
                    hole += block.len() as u64;
                    continue;
                }
                if hole > 0 {
                    len += hole;
                    out.seek(SeekFrom::Start(len))?;
                    hole = 0;
                }
                out.write_all(block)?;
                len += block.len() as u64;
            }
        }
        if hole > 0 {
            out.set_len(len + hole)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn bounds_modes_and_holes() {
        let d = std::env::temp_dir().join(format!("outpost-budget-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let mut b = Budget::new(UnpackBounds { bytes: 64 << 20, members: 2, keep_modes: false });
        assert_eq!((b.mode(0o4777), b.mode(0o666)), (0o755, 0o644));
        b.member(Path::new("a")).unwrap();
        b.member(Path::new("b")).unwrap();
        assert!(matches!(b.member(Path::new("c")), Err(UnpackError::OverBound(_))));
        // 32 MiB of zeros with one byte in the middle, written sparsely.
        let mut f = File::create(d.join("sparse")).unwrap();
        let mut data = io::repeat(0).take(16 << 20).chain(&b"x"[..]).chain(io::repeat(0).take(16 << 20));
        b.copy(Path::new("sparse"), &mut data, &mut f, true).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), (32 << 20) + 1);
        assert!(m.blocks() * 512 < 1 << 20, "{} blocks", m.blocks());
        // Past the byte bound the copy stops.
        let mut f = File::create(d.join("big")).unwrap();
        let err = b.copy(Path::new("big"), &mut io::repeat(1).take(33 << 20), &mut f, false).unwrap_err();
        assert!(matches!(err, UnpackError::OverBound(_)), "{err}");
        assert!(f.metadata().unwrap().len() <= 32 << 20);
        let keep = Budget::new(UnpackBounds { keep_modes: true, ..UnpackBounds::UNSIGNED });
        assert_eq!(keep.mode(0o6777), 0o777);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
