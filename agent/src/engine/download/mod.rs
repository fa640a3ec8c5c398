//! One package's download, resumable at byte granularity across kill -9,
//! power cuts and reboots (sans-IO: bytes come in, writes go to a
//! [`BlockStore`] borrowed per call). The same engine serves both protocols:
//! what is known of the fragments beforehand is a [`Layout`] (sizes and
//! SHA-256 from a signed manifest, or for an OCS package only their number).
//!
//! ```text
//!  open(store, layout) ─► request() → (fragment n, Range) ─► [GET]
//!      ─► handle_head(status, Content-Range) ─► handle_body(store, chunk)* ─► handle_end(store)
//!                                            └► handle_abort(store) when the transfer breaks
//! ```
//!
//! Fragments are written one after the other into one file, [`ARCHIVE`].
//! The journal ([`checkpoint`]) is two slots holding [`Checkpoint`]s. A
//! checkpoint is written only after the data it covers is synced, into the
//! slot *not* holding the newest valid record, then synced: a torn journal
//! write leaves the other slot. Checkpoints fall exactly on every
//! `checkpoint_bytes` of received data and at each fragment's end, so a power
//! cut loses at most `checkpoint_bytes` (default 256 KiB). A signed fragment
//! counts as verified only once its SHA-256 matched and its bytes were
//! synced; an unsigned one once its answer ended where it said and its bytes
//! were synced (the archive's digest checks it later).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use outpost_hal::storage::BlockStore;

use super::fetch::{FetchError, FragmentFetch};
use super::manifest::{FragmentEntry, Manifest};

pub mod checkpoint;
mod writer;
pub use checkpoint::{Checkpoint, SLOTS, durable_bytes};
pub use writer::BodyWriter;

/// The archive file, fragments one after the other.
pub const ARCHIVE: &str = "archive";
/// Default bytes between checkpoints.
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 256 * 1024;

/// What is known of a package's fragments before they are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragments {
    /// From a signed manifest: each fragment's size and SHA-256.
    Signed(Vec<FragmentEntry>),
    /// From an OCS info file: only how many. Each ends where its answer
    /// says; all of them together hold at most `max_total` bytes.
    Unsigned {
        /// Number of fragments.
        count: u32,
        /// The bound on the whole archive.
        max_total: u64,
    },
}

/// A package's download as the journal knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Package id.
    pub package: u64,
    /// What binds the journal to this version of the package: the signed
    /// archive SHA-256, or the SHA-256 of an OCS package's info file.
    pub key: [u8; 32],
    /// The fragments.
    pub fragments: Fragments,
}

impl Layout {
    /// The layout a signed manifest gives.
    pub fn signed(m: &Manifest) -> Self {
        Self { package: m.package_id, key: m.archive_sha256, fragments: Fragments::Signed(m.fragments.clone()) }
    }

    /// An OCS package's: `count` fragments of unknown sizes, at most
    /// `max_total` bytes in all, bound to its info file by `key`.
    pub fn unsigned(package: u64, key: [u8; 32], count: u32, max_total: u64) -> Self {
        Self { package, key, fragments: Fragments::Unsigned { count, max_total } }
    }

    /// An OCS package's layout from its info file (`frags` fragments): the
    /// bound is that of a package whose size nobody signed
    /// ([`super::limits::MAX_UNPACKED_BYTES`]), the key the info file's
    /// SHA-256 (a new version of the package starts afresh).
    pub fn ocs(package: u64, info_file: &[u8], frags: u32) -> Self {
        Self::unsigned(package, super::manifest::sha256(info_file), frags, super::limits::MAX_UNPACKED_BYTES)
    }

    /// Number of fragments.
    pub fn count(&self) -> usize {
        match &self.fragments {
            Fragments::Signed(f) => f.len(),
            Fragments::Unsigned { count, .. } => *count as usize,
        }
    }

    /// The size of the whole archive, when it is signed.
    pub fn total(&self) -> Option<u64> {
        match &self.fragments {
            Fragments::Signed(f) => Some(f.iter().map(|e| e.size).sum()),
            Fragments::Unsigned { .. } => None,
        }
    }
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
    layout: Layout,
    cp: Checkpoint,
    /// Slot holding the newest valid checkpoint.
    current_slot: Option<usize>,
    fetch: Option<FragmentFetch>,
    /// The most the next answer may carry (free space), if bounded.
    room: Option<u64>,
    /// Whether `room` cut the current answer short.
    cut_by_room: bool,
    checkpoint_bytes: u64,
    unsynced: u64,
    checkpoints: u64,
}

impl Download {
    /// Open the download of a signed manifest's archive (see [`Self::open_layout`]).
    pub fn open<S: BlockStore>(store: &mut S, m: &Manifest, checkpoint_bytes: u64) -> Result<Self, S::Error> {
        Self::open_layout(store, Layout::signed(m), checkpoint_bytes)
    }

    /// Open the download of `layout` in `store`: resume from the newest valid
    /// checkpoint (re-hashing the durable prefix of a signed fragment in
    /// progress), or start afresh. Garbage in the journal means starting afresh.
    pub fn open_layout<S: BlockStore>(store: &mut S, layout: Layout, checkpoint_bytes: u64) -> Result<Self, S::Error> {
        let (current_slot, cp) = match checkpoint::newest(store, &layout)? {
            Some((i, cp)) => (Some(i), cp),
            None => (None, Checkpoint::empty(&layout)),
        };
        let mut d = Self {
            layout,
            cp,
            current_slot,
            fetch: None,
            room: None,
            cut_by_room: false,
            checkpoint_bytes: checkpoint_bytes.max(1),
            unsynced: 0,
            checkpoints: 0,
        };
        d.start_fragment(store)?;
        Ok(d)
    }

    /// A fresh fetch of the fragment in progress (`None` when complete).
    fn fresh_fetch(&self) -> Option<FragmentFetch> {
        let i = self.cp.verified as usize;
        match &self.layout.fragments {
            Fragments::Signed(f) => f.get(i).map(|e| FragmentFetch::new(e.size, e.sha256)),
            Fragments::Unsigned { count, max_total } => {
                (i < *count as usize).then(|| FragmentFetch::unsigned(max_total.saturating_sub(self.cp.start)))
            }
        }
    }

    /// Set up the fetch of the fragment in progress from its durable prefix.
    fn start_fragment<S: BlockStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        let Some(mut fetch) = self.fresh_fetch() else {
            self.fetch = None;
            return Ok(());
        };
        let start = self.cp.start;
        if fetch.is_signed() {
            let mut buf = vec![0u8; 64 * 1024];
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
        } else {
            // No digest to feed: the bytes the journal calls durable are
            // counted, as far as the file holds them.
            let len = match store.len(ARCHIVE) {
                Ok(n) => n,
                Err(e) if outpost_hal::Error::kind(&e) == outpost_hal::ErrorKind::NotFound => 0,
                Err(e) => return Err(e),
            };
            fetch.resume_unsigned(len.saturating_sub(start).min(self.cp.offset));
        }
        self.cp.offset = fetch.have();
        self.fetch = Some(fetch);
        Ok(())
    }

    /// The layout this download follows.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether every fragment is verified and durable.
    pub fn is_complete(&self) -> bool {
        self.cp.verified as usize == self.layout.count()
    }

    /// Leading fragments verified and durable.
    pub fn verified(&self) -> u32 {
        self.cp.verified
    }

    /// Bytes held: complete fragments plus the durable prefix of the next.
    pub fn have(&self) -> u64 {
        self.cp.start + self.fetch.as_ref().map_or(0, FragmentFetch::have)
    }

    /// Size of the whole archive, when it is signed.
    pub fn total(&self) -> Option<u64> {
        self.layout.total()
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

    /// Bound the next answer to `room` more bytes (`None`: no bound but the
    /// fragment's own): the free disk space, for an unsigned fragment.
    pub fn set_room(&mut self, room: Option<u64>) {
        self.room = room;
    }

    /// The response head of the current request.
    pub fn handle_head(&mut self, status: u16, content_range: Option<&str>) -> Result<(), FetchError> {
        let Some(f) = self.fetch.as_mut() else { return Err(FetchError::TooLong) };
        self.cut_by_room = false;
        f.handle_head(status, content_range)?;
        if let Some(room) = self.room {
            self.cut_by_room = f.limit(room);
        }
        Ok(())
    }

    /// Whether the room set by [`Self::set_room`] cut the current answer
    /// short: a body refused as too long then means the disk is full.
    pub fn cut_by_room(&self) -> bool {
        self.cut_by_room
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
        let start = self.cp.start;
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
        let Some(fetch) = self.fetch.as_mut() else { return Ok(None) };
        match fetch.finish() {
            Ok(()) => {
                let len = fetch.have();
                store.sync(ARCHIVE)?;
                self.cp.verified += 1;
                self.cp.start += len;
                self.cp.offset = 0;
                // An unsigned archive ends with its last fragment: nothing
                // past it (a longer answer of an earlier try) stays.
                if self.is_complete() && self.layout.total().is_none() {
                    store.truncate(ARCHIVE, self.cp.start)?;
                    store.sync(ARCHIVE)?;
                }
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
        if let Some(f) = self.fresh_fetch() {
            self.fetch = Some(f);
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
        let slot = self.current_slot.map_or(0, |s| 1 - s);
        checkpoint::write(store, slot, &self.cp)?;
        self.current_slot = Some(slot);
        self.unsynced = 0;
        self.checkpoints += 1;
        Ok(())
    }
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
            expires: None,
            release: None,
            tree: None,
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
        assert_eq!(durable_bytes(&mut s, &Layout::signed(&m)).unwrap(), 0, "nothing yet");
        let mut d = Download::open(&mut s, &m, 300).unwrap();
        d.request().unwrap();
        d.handle_head(200, None).unwrap();
        d.handle_body(&mut s, &data[..1024]).unwrap();
        d.handle_end(&mut s).unwrap();
        d.request().unwrap();
        d.handle_head(200, None).unwrap();
        d.handle_body(&mut s, &data[1024..1024 + 700]).unwrap();
        // Fragment 1 verified, and checkpoints every 300 bytes of fragment 2.
        assert_eq!(durable_bytes(&mut s, &Layout::signed(&m)).unwrap(), 1024 + 600);
        let other = manifest(&data[..4000], 1024);
        assert_eq!(
            durable_bytes(&mut s, &Layout::signed(&other)).unwrap(),
            0,
            "another archive's journal counts nothing"
        );
        while let Some((n, _)) = d.request() {
            let f = &data[(n - 1) * 1024..(n * 1024).min(data.len())];
            d.handle_head(200, None).unwrap();
            d.handle_body(&mut s, f).unwrap();
            d.handle_end(&mut s).unwrap();
        }
        assert_eq!(durable_bytes(&mut s, &Layout::signed(&m)).unwrap(), data.len() as u64);
    }
}
