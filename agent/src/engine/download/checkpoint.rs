//! The journal of a download: two slots ([`SLOTS`]) each holding one
//! [`Checkpoint`] (postcard + CRC-32 through [`crate::engine::journal`]), the
//! newest valid one winning. A checkpoint is bound to its package and to the
//! [`Layout`]'s key (the signed archive SHA-256, or for an OCS package the
//! SHA-256 of its info file), so a checkpoint of another version is ignored.

use alloc::vec;
use alloc::vec::Vec;

use outpost_hal::storage::BlockStore;
use serde::{Deserialize, Serialize};

use super::{Fragments, Layout};
use crate::engine::journal::{self, kind};

/// The two journal slots.
pub const SLOTS: [&str; 2] = ["journal.a", "journal.b"];

/// The durable progress of a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Increases with every checkpoint; the highest valid one wins.
    pub seq: u64,
    /// Package id.
    pub package: u64,
    /// The layout's key (a checkpoint of another version is ignored).
    pub key: [u8; 32],
    /// Leading fragments verified (or, unsigned, complete) and durable.
    pub verified: u32,
    /// Durable bytes of the next fragment.
    pub offset: u64,
    /// Where the next fragment starts in the archive: the length of the
    /// fragments before it (which, unsigned, only their answers told).
    pub start: u64,
}

/// The checkpoint of the first format, written by agents before unsigned
/// fragments existed: its fragment start follows from the manifest.
#[derive(Deserialize)]
struct CheckpointV1 {
    seq: u64,
    package: u64,
    archive_sha256: [u8; 32],
    verified: u32,
    offset: u64,
}

impl Checkpoint {
    /// The first checkpoint of `layout`'s download: nothing held.
    pub(super) fn empty(layout: &Layout) -> Self {
        Self { seq: 0, package: layout.package, key: layout.key, verified: 0, offset: 0, start: 0 }
    }

    /// Whether this checkpoint can be a state of `layout`'s download.
    fn fits(&self, layout: &Layout) -> bool {
        if self.package != layout.package || self.key != layout.key || self.verified as usize > layout.count() {
            return false;
        }
        match &layout.fragments {
            Fragments::Signed(f) => {
                let start: u64 = f[..self.verified as usize].iter().map(|e| e.size).sum();
                self.start == start && f.get(self.verified as usize).is_none_or(|e| self.offset <= e.size)
            }
            Fragments::Unsigned { max_total, .. } => {
                self.start.checked_add(self.offset).is_some_and(|e| e <= *max_total)
            }
        }
    }
}

/// Decode one slot's record: the current format, or the first one for a
/// signed layout.
fn decode(bytes: &[u8], layout: &Layout) -> Option<Checkpoint> {
    if let Ok(cp) = journal::decode::<Checkpoint>(kind::CHECKPOINT, bytes) {
        return Some(cp);
    }
    let v1 = journal::decode::<CheckpointV1>(kind::CHECKPOINT_V1, bytes).ok()?;
    let Fragments::Signed(f) = &layout.fragments else { return None };
    let start = f.get(..v1.verified as usize)?.iter().map(|e| e.size).sum();
    Some(Checkpoint {
        seq: v1.seq,
        package: v1.package,
        key: v1.archive_sha256,
        verified: v1.verified,
        offset: v1.offset,
        start,
    })
}

/// The newest valid checkpoint of `layout`'s download in `store`, and its slot.
pub(super) fn newest<S: BlockStore>(store: &mut S, layout: &Layout) -> Result<Option<(usize, Checkpoint)>, S::Error> {
    let mut best: Option<(usize, Checkpoint)> = None;
    let mut buf = vec![0u8; 512];
    for (i, slot) in SLOTS.iter().enumerate() {
        let Ok(len) = store.len(slot) else { continue };
        if len > buf.len() as u64 {
            continue;
        }
        let n = store.read_at(slot, 0, &mut buf[..len as usize])?;
        if let Some(cp) = decode(&buf[..n], layout)
            && cp.fits(layout)
            && best.as_ref().is_none_or(|(_, b)| cp.seq > b.seq)
        {
            best = Some((i, cp));
        }
    }
    Ok(best)
}

/// Write `cp` into `slot` and sync it.
pub(super) fn write<S: BlockStore>(store: &mut S, slot: usize, cp: &Checkpoint) -> Result<(), S::Error> {
    // A record of plain data always encodes.
    let rec: Vec<u8> = journal::encode(kind::CHECKPOINT, cp).unwrap_or_default();
    store.write_at(SLOTS[slot], 0, &rec)?;
    store.truncate(SLOTS[slot], rec.len() as u64)?;
    store.sync(SLOTS[slot])
}

/// Bytes of `layout`'s archive held durably in `store` (complete fragments
/// plus the checkpointed prefix of the next), read from the journal alone:
/// no re-hashing, so cheap enough for `outpost-agent status`.
pub fn durable_bytes<S: BlockStore>(store: &mut S, layout: &Layout) -> Result<u64, S::Error> {
    let Some((_, cp)) = newest(store, layout)? else { return Ok(0) };
    Ok(if (cp.verified as usize) < layout.count() { cp.start + cp.offset } else { cp.start })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::manifest::FragmentEntry;
    use outpost_hal::sim::SimBlocks;

    #[derive(Serialize)]
    struct WriteV1 {
        seq: u64,
        package: u64,
        archive_sha256: [u8; 32],
        verified: u32,
        offset: u64,
    }

    #[test]
    fn a_checkpoint_of_the_first_format_still_resumes_a_signed_download() {
        let fragments = vec![FragmentEntry { size: 100, sha256: [1; 32] }, FragmentEntry { size: 50, sha256: [2; 32] }];
        let layout = Layout { package: 7, key: [9; 32], fragments: Fragments::Signed(fragments) };
        let v1 = WriteV1 { seq: 3, package: 7, archive_sha256: [9; 32], verified: 1, offset: 20 };
        let mut s = SimBlocks::new(1 << 20);
        s.write_at(SLOTS[1], 0, &journal::encode(kind::CHECKPOINT_V1, &v1).unwrap()).unwrap();
        s.sync(SLOTS[1]).unwrap();
        let (slot, cp) = newest(&mut s, &layout).unwrap().unwrap();
        assert_eq!((slot, cp.verified, cp.offset, cp.start, cp.seq), (1, 1, 20, 100, 3));
        assert_eq!(durable_bytes(&mut s, &layout).unwrap(), 120);
        // Not for an unsigned layout (no such journal was ever written).
        let ocs = Layout { package: 7, key: [9; 32], fragments: Fragments::Unsigned { count: 2, max_total: 1000 } };
        assert_eq!(newest(&mut s, &ocs).unwrap(), None);
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_the_layout_is_ignored() {
        let layout = Layout { package: 7, key: [9; 32], fragments: Fragments::Unsigned { count: 3, max_total: 1000 } };
        let mut s = SimBlocks::new(1 << 20);
        let good = Checkpoint { seq: 1, package: 7, key: [9; 32], verified: 1, offset: 10, start: 500 };
        write(&mut s, 0, &good).unwrap();
        assert_eq!(durable_bytes(&mut s, &layout).unwrap(), 510);
        for bad in [
            Checkpoint { seq: 2, start: 995, ..good.clone() },   // past the bound
            Checkpoint { seq: 2, verified: 4, ..good.clone() },  // more fragments than there are
            Checkpoint { seq: 2, key: [8; 32], ..good.clone() }, // another version
        ] {
            write(&mut s, 1, &bad).unwrap();
            assert_eq!(newest(&mut s, &layout).unwrap().map(|(i, _)| i), Some(0), "{bad:?}");
        }
    }
}
