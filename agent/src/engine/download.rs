//! One package's download, resumable at byte granularity across kill -9,
//! power cuts and reboots (sans-IO: bytes come in, writes go to a
//! [`BlockStore`] borrowed per call).
//!
//! ```text
//!  open(store, manifest) ─► request() → (fragment n, Range) ─► [GET]
//!      ─► handle_head(status, Content-Range) ─► handle_body(store, chunk)* ─► handle_end(store)
//!                                            └► handle_abort(store) when the transfer breaks
//! ```
//!
//! Fragments are written at their offsets into one file, [`ARCHIVE`]. The
//! journal is two slots ([`SLOTS`]) holding [`Checkpoint`] records (postcard +
//! CRC-32, a sequence number, bound to the manifest by its archive SHA-256).
//! A checkpoint is written only after the data it covers is synced, into the
//! slot *not* holding the newest valid record, then synced: a torn journal
//! write leaves the other slot. Checkpoints fall exactly on every
//! `checkpoint_bytes` of received data and at each fragment's end, so a power
//! cut loses at most `checkpoint_bytes` (default 256 KiB). A fragment counts
//! as verified only once its SHA-256 matched and its bytes were synced.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use outpost_hal::storage::BlockStore;
use serde::{Deserialize, Serialize};

use super::fetch::{FetchError, FragmentFetch};
use super::journal::{self, kind};
use super::manifest::{FragmentEntry, Manifest};

/// The archive file, fragments at their offsets.
pub const ARCHIVE: &str = "archive";
/// The two journal slots.
pub const SLOTS: [&str; 2] = ["journal.a", "journal.b"];
/// Default bytes between checkpoints.
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 256 * 1024;

/// The durable progress of a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Increases with every checkpoint; the highest valid one wins.
    pub seq: u64,
    /// Package id.
    pub package: u64,
    /// The manifest's archive SHA-256 (a checkpoint of another version is ignored).
    pub archive_sha256: [u8; 32],
    /// Leading fragments verified and durable.
    pub verified: u32,
    /// Durable bytes of the next fragment.
    pub offset: u64,
}

/// Why a body chunk was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError<E> {
    /// The response is wrong (see [`FetchError`]); end this transfer.
    Fetch(FetchError),
    /// The store failed (disk full, power lost).
    Store(E),
}

impl<E: fmt::Display> fmt::Display for BodyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fetch(e) => e.fmt(f),
            Self::Store(e) => write!(f, "storage: {e}"),
        }
    }
}

/// The download state machine for one package.
#[derive(Debug)]
pub struct Download {
    fragments: Vec<FragmentEntry>,
    starts: Vec<u64>,
    cp: Checkpoint,
    /// Slot holding the newest valid checkpoint.
    current_slot: Option<usize>,
    fetch: Option<FragmentFetch>,
    checkpoint_bytes: u64,
    unsynced: u64,
    checkpoints: u64,
}

impl Download {
    /// Open the download of `m` in `store`: resume from the newest valid
    /// checkpoint (re-hashing the durable prefix of the fragment in progress),
    /// or start afresh. Garbage in the journal means starting afresh.
    pub fn open<S: BlockStore>(store: &mut S, m: &Manifest, checkpoint_bytes: u64) -> Result<Self, S::Error> {
        let mut starts = Vec::with_capacity(m.fragments.len());
        let mut at = 0;
        for f in &m.fragments {
            starts.push(at);
            at += f.size;
        }
        let best = newest_checkpoint(store, m)?;
        let (current_slot, cp) = match best {
            Some((i, cp)) => (Some(i), cp),
            None => (
                None,
                Checkpoint { seq: 0, package: m.package_id, archive_sha256: m.archive_sha256, verified: 0, offset: 0 },
            ),
        };
        let mut d = Self {
            fragments: m.fragments.clone(),
            starts,
            cp,
            current_slot,
            fetch: None,
            checkpoint_bytes: checkpoint_bytes.max(1),
            unsynced: 0,
            checkpoints: 0,
        };
        d.start_fragment(store)?;
        Ok(d)
    }

    /// Set up the fetch of the fragment in progress from its durable prefix.
    fn start_fragment<S: BlockStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        let i = self.cp.verified as usize;
        let Some(entry) = self.fragments.get(i) else {
            self.fetch = None;
            return Ok(());
        };
        let mut fetch = FragmentFetch::new(entry.size, entry.sha256);
        let mut buf = vec![0u8; 64 * 1024];
        let start = self.starts[i];
        while fetch.have() < self.cp.offset {
            let want = buf.len().min((self.cp.offset - fetch.have()) as usize);
            let n = match store.read_at(ARCHIVE, start + fetch.have(), &mut buf[..want]) {
                Ok(n) => n,
                Err(e) if outpost_hal::Error::kind(&e) == outpost_hal::ErrorKind::NotFound => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break; // less on disk than the journal says: fetch the rest
            }
            fetch.resume(&buf[..n]);
        }
        self.cp.offset = fetch.have();
        self.fetch = Some(fetch);
        Ok(())
    }

    /// Whether every fragment is verified and durable.
    pub fn is_complete(&self) -> bool {
        self.cp.verified as usize == self.fragments.len()
    }

    /// Leading fragments verified and durable.
    pub fn verified(&self) -> u32 {
        self.cp.verified
    }

    /// Bytes held: verified fragments plus the durable prefix of the next.
    pub fn have(&self) -> u64 {
        self.starts.get(self.cp.verified as usize).copied().unwrap_or_else(|| self.total())
            + self.fetch.as_ref().map_or(0, FragmentFetch::have)
    }

    /// Size of the whole archive.
    pub fn total(&self) -> u64 {
        self.fragments.iter().map(|f| f.size).sum()
    }

    /// Checkpoints written since `open` (for write accounting).
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// The next request: fragment number (1-based) and `Range` header value.
    pub fn request(&self) -> Option<(usize, Option<String>)> {
        let f = self.fetch.as_ref()?;
        Some((self.cp.verified as usize + 1, f.range()))
    }

    /// The response head of the current request.
    pub fn handle_head(&mut self, status: u16, content_range: Option<&str>) -> Result<(), FetchError> {
        match self.fetch.as_mut() {
            Some(f) => f.handle_head(status, content_range),
            None => Err(FetchError::TooLong),
        }
    }

    /// The next body chunk: written at its offset, with checkpoints exactly
    /// every `checkpoint_bytes`. When the store fails (disk full, power
    /// lost), the fragment's state falls back to its last checkpoint: what
    /// the engine believes it has never runs ahead of what is on disk.
    pub fn handle_body<S: BlockStore>(&mut self, store: &mut S, chunk: &[u8]) -> Result<(), BodyError<S::Error>> {
        let r = self.take_body(store, chunk);
        if let Err(BodyError::Store(_)) = r {
            self.unsynced = 0;
            // Best effort: a dead store is reopened from scratch anyway.
            let _ = self.start_fragment(store);
        }
        r
    }

    fn take_body<S: BlockStore>(&mut self, store: &mut S, mut chunk: &[u8]) -> Result<(), BodyError<S::Error>> {
        let start = self.starts.get(self.cp.verified as usize).copied().unwrap_or(0);
        while !chunk.is_empty() {
            let room = (self.checkpoint_bytes - self.unsynced).min(chunk.len() as u64) as usize;
            let (piece, rest) = chunk.split_at(room);
            chunk = rest;
            let Some(fetch) = self.fetch.as_mut() else { return Err(BodyError::Fetch(FetchError::TooLong)) };
            let (off, data) = fetch.handle_body(piece).map_err(BodyError::Fetch)?;
            if !data.is_empty() {
                store.write_at(ARCHIVE, start + off, data).map_err(BodyError::Store)?;
                self.unsynced += data.len() as u64;
            }
            if self.unsynced >= self.checkpoint_bytes {
                self.checkpoint(store).map_err(BodyError::Store)?;
            }
        }
        Ok(())
    }

    /// The body ended normally. `Ok(None)` when the fragment is verified
    /// (durably); `Ok(Some(Short))` when more is needed; `Ok(Some(Corrupt))`
    /// when it was wrong and starts over.
    pub fn handle_end<S: BlockStore>(&mut self, store: &mut S) -> Result<Option<FetchError>, S::Error> {
        let Some(fetch) = self.fetch.as_ref() else { return Ok(None) };
        match fetch.finish() {
            Ok(()) => {
                store.sync(ARCHIVE)?;
                self.cp.verified += 1;
                self.cp.offset = 0;
                self.write_checkpoint(store)?;
                self.start_fragment(store)?;
                Ok(None)
            }
            Err(FetchError::Corrupt) => {
                self.restart_fragment(store)?;
                Ok(Some(FetchError::Corrupt))
            }
            Err(e) => {
                self.checkpoint(store)?;
                Ok(Some(e))
            }
        }
    }

    /// The transfer broke off: keep what arrived.
    pub fn handle_abort<S: BlockStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        if self.unsynced > 0 { self.checkpoint(store) } else { Ok(()) }
    }

    /// Start the fragment in progress over (a server that sends a range we
    /// cannot use, or bytes that failed their digest).
    pub fn restart_fragment<S: BlockStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        if let Some(e) = self.fragments.get(self.cp.verified as usize) {
            self.fetch = Some(FragmentFetch::new(e.size, e.sha256));
        }
        self.cp.offset = 0;
        self.unsynced = 0;
        self.write_checkpoint(store)
    }

    /// Data → sync → checkpoint → sync.
    fn checkpoint<S: BlockStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        store.sync(ARCHIVE)?;
        self.cp.offset = self.fetch.as_ref().map_or(0, FragmentFetch::have);
        self.write_checkpoint(store)
    }

    fn write_checkpoint<S: BlockStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        self.cp.seq += 1;
        // A record of plain data always encodes.
        let rec = journal::encode(kind::CHECKPOINT, &self.cp).unwrap_or_default();
        let slot = self.current_slot.map_or(0, |s| 1 - s);
        store.write_at(SLOTS[slot], 0, &rec)?;
        store.truncate(SLOTS[slot], rec.len() as u64)?;
        store.sync(SLOTS[slot])?;
        self.current_slot = Some(slot);
        self.unsynced = 0;
        self.checkpoints += 1;
        Ok(())
    }
}

/// The newest valid checkpoint of `m`'s download in `store`, and its slot.
fn newest_checkpoint<S: BlockStore>(store: &mut S, m: &Manifest) -> Result<Option<(usize, Checkpoint)>, S::Error> {
    let mut best: Option<(usize, Checkpoint)> = None;
    let mut buf = vec![0u8; 512];
    for (i, slot) in SLOTS.iter().enumerate() {
        let Ok(len) = store.len(slot) else { continue };
        if len > buf.len() as u64 {
            continue;
        }
        let n = store.read_at(slot, 0, &mut buf[..len as usize])?;
        if let Ok(cp) = journal::decode::<Checkpoint>(kind::CHECKPOINT, &buf[..n]) {
            let ours = cp.package == m.package_id && cp.archive_sha256 == m.archive_sha256;
            let sane = (cp.verified as usize) <= m.fragments.len()
                && m.fragments.get(cp.verified as usize).is_none_or(|f| cp.offset <= f.size);
            if ours && sane && best.as_ref().is_none_or(|(_, b)| cp.seq > b.seq) {
                best = Some((i, cp));
            }
        }
    }
    Ok(best)
}

/// Bytes of `m`'s archive held durably in `store` (verified fragments plus
/// the checkpointed prefix of the next), read from the journal alone: no
/// re-hashing, so cheap enough for `outpost-agent status`.
pub fn durable_bytes<S: BlockStore>(store: &mut S, m: &Manifest) -> Result<u64, S::Error> {
    let Some((_, cp)) = newest_checkpoint(store, m)? else { return Ok(0) };
    let start = m.fragment_offset(cp.verified as usize);
    Ok(if (cp.verified as usize) < m.fragments.len() { start + cp.offset } else { start })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::manifest::{FORMAT, sha256};
    use outpost_hal::sim::SimBlocks;

    fn manifest(data: &[u8], frag: usize) -> Manifest {
        Manifest {
            format: FORMAT,
            package_id: 1,
            version: 1,
            created: 0,
            info_sha256: [0; 32],
            archive_size: data.len() as u64,
            archive_sha256: sha256(data),
            fragments: data.chunks(frag).map(|c| FragmentEntry { size: c.len() as u64, sha256: sha256(c) }).collect(),
            flags: 0,
            reboot_exit_codes: vec![],
            unpacked: None,
        }
    }

    #[test]
    fn downloads_then_reopens_complete() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let m = manifest(&data, 1024);
        let mut s = SimBlocks::new(1 << 20);
        let mut d = Download::open(&mut s, &m, 700).unwrap();
        while let Some((n, range)) = d.request() {
            assert!(range.is_none());
            let f = &data[(n - 1) * 1024..(n * 1024).min(data.len())];
            d.handle_head(200, None).unwrap();
            d.handle_body(&mut s, f).unwrap();
            assert_eq!(d.handle_end(&mut s).unwrap(), None);
        }
        assert_eq!(s.durable(ARCHIVE).unwrap(), &data[..]);
        let again = Download::open(&mut s, &m, 700).unwrap();
        assert!(again.is_complete());
        assert!(d.checkpoints() >= 5 + 5, "one per fragment end and per 700 bytes");
    }

    #[test]
    fn durable_bytes_follow_the_checkpoints_without_rehashing() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        let m = manifest(&data, 1024);
        let mut s = SimBlocks::new(1 << 20);
        assert_eq!(durable_bytes(&mut s, &m).unwrap(), 0, "nothing yet");
        let mut d = Download::open(&mut s, &m, 300).unwrap();
        d.request().unwrap();
        d.handle_head(200, None).unwrap();
        d.handle_body(&mut s, &data[..1024]).unwrap();
        d.handle_end(&mut s).unwrap();
        d.request().unwrap();
        d.handle_head(200, None).unwrap();
        d.handle_body(&mut s, &data[1024..1024 + 700]).unwrap();
        // Fragment 1 verified, and checkpoints every 300 bytes of fragment 2.
        assert_eq!(durable_bytes(&mut s, &m).unwrap(), 1024 + 600);
        let other = manifest(&data[..4000], 1024);
        assert_eq!(durable_bytes(&mut s, &other).unwrap(), 0, "another archive's journal counts nothing");
        while let Some((n, _)) = d.request() {
            let f = &data[(n - 1) * 1024..(n * 1024).min(data.len())];
            d.handle_head(200, None).unwrap();
            d.handle_body(&mut s, f).unwrap();
            d.handle_end(&mut s).unwrap();
        }
        assert_eq!(durable_bytes(&mut s, &m).unwrap(), data.len() as u64);
    }
}
