//! OCS mode's fragment fetch, through the same download engine as the
//! Outpost protocol ([`crate::engine::download`]): one `archive` file and its
//! two-slot journal, byte-level resume across kill -9 and power cuts,
//! checkpoints every `checkpoint_bytes`. What differs is the [`Layout`]: an
//! OCS info file gives no fragment sizes or digests, so each fragment ends
//! where its answer says, all of them within the bound of a package whose
//! size nobody signed ([`crate::engine::limits::MAX_UNPACKED_BYTES`]), and
//! each answer within the free space less a headroom
//! ([`plan::space_margin`]). Past the package bound the try fails (what was
//! written stays, so a full package fails each later try at once, until the
//! OCS scheduler gives up on it). Past the free space the disk is full:
//! `ERR_OUT_OF_SPACE` is reported once, what is cached stays, and the
//! download goes on at a later run once there is room (as in the Outpost
//! protocol). The archive's digest (from the info file, fetched over
//! verified TLS) checks the bytes once they are all here.
//! A mismatch of the whole archive is the lifecycle's to handle
//! ([`crate::engine::deploy`]: fetched again until a deadline).

use std::io;

use outpost_hal::linux::{DirBlocks, IoError, LinuxDisk};
use outpost_hal::storage::DiskSpace;

use super::super::agent::AgentError;
use super::super::http::Url;
use super::super::store::StoreError;
use super::{BodySink, OcsAgent, OcsEnv};
use crate::engine::deploy::Fetched;
use crate::engine::download::{ARCHIVE, BodyError, Download, Layout};
use crate::engine::fetch::FetchError;
use crate::engine::info::{Info, Proto};
use crate::engine::limits::MIN_RESUME_PROGRESS;
use crate::engine::plan;

impl<E: OcsEnv> OcsAgent<E> {
    /// Fetch the next fragment of `info`'s package (its info file is
    /// `info_file`), resuming what the journal holds; or say that all are here.
    pub(super) fn fetch_next(&mut self, info: &Info, info_file: &[u8], pack_loc: &str) -> Result<Fetched, AgentError> {
        let id = info.id;
        let dir = self.store.package_dir(id);
        let archive = dir.join(ARCHIVE);
        let store_err = |e: IoError| AgentError::Store(StoreError::Io(archive.clone(), e.0));
        let mut blocks = DirBlocks::open(&dir).map_err(|e| AgentError::Store(StoreError::Io(dir.clone(), e)))?;
        let layout = Layout::ocs(id, info_file, info.frags);
        let mut dl = Download::open_layout(&mut blocks, layout, self.cfg.agent.checkpoint_bytes).map_err(store_err)?;
        let Some((n, range)) = dl.request() else { return Ok(Fetched::Complete) };
        if dl.have() > 0 && range.is_some() {
            log::info!(target: "outpost", "package {id}: resuming fragment {n} at byte {} of the archive", dl.have());
        }
        let url = match Url::from_location(info.proto == Proto::Https, pack_loc, &format!("{id}/{id}-{n}")) {
            Ok(u) => u,
            Err(e) => return Ok(Fetched::Failed(e.to_string())),
        };
        let room = self.room();
        if room.is_some_and(|r| r < MIN_RESUME_PROGRESS) {
            return Ok(Fetched::OutOfSpace(format!("fragment {n}: no room left above the headroom")));
        }
        dl.set_room(room);
        let mut sink = DownloadSink { dl: &mut dl, blocks: &mut blocks, store: None, fetch: None };
        let got = self.env.get(&url, range.as_deref(), &mut sink);
        let (store, fetch) = (sink.store.take(), sink.fetch.take());
        if let Some(e) = store {
            // The engine fell back to its last checkpoint.
            return if e.0.kind() == io::ErrorKind::StorageFull {
                Ok(Fetched::OutOfSpace(format!("{}: {}", archive.display(), e.0)))
            } else {
                Err(store_err(e))
            };
        }
        let why = match got {
            Ok(()) => match dl.handle_end(&mut blocks).map_err(store_err)? {
                None => return Ok(Fetched::Progress(Some(dl.verified()))),
                Some(e) => e.to_string(),
            },
            Err(e) => {
                dl.handle_abort(&mut blocks).map_err(store_err)?;
                if let Some(FetchError::BadContentRange) = fetch {
                    dl.restart_fragment(&mut blocks).map_err(store_err)?;
                }
                e.to_string()
            }
        };
        let why = match fetch {
            // The answer filled the room: the disk is full, not the try failed.
            Some(FetchError::TooLong) if dl.cut_by_room() => {
                return Ok(Fetched::OutOfSpace(format!("fragment {n}: the free space less its headroom is used up")));
            }
            Some(FetchError::TooLong) => format!("{why}: past the bound of a package without signed sizes"),
            _ => why,
        };
        Ok(Fetched::Failed(format!("fragment {n}: {why}")))
    }

    /// Bytes the next answer may take: the free space less the headroom
    /// (`None`: the disk cannot be asked; the writes will tell).
    fn room(&self) -> Option<u64> {
        let free = LinuxDisk::new(self.store.root()).space().ok()?.available;
        Some(free.saturating_sub(plan::space_margin(0)))
    }
}

/// Feeds an answer into the download engine, keeping the first error of
/// each side for the caller.
struct DownloadSink<'a> {
    dl: &'a mut Download,
    blocks: &'a mut DirBlocks,
    store: Option<IoError>,
    fetch: Option<FetchError>,
}

impl BodySink for DownloadSink<'_> {
    fn head(&mut self, status: u16, content_range: Option<&str>) -> Result<(), String> {
        self.dl.handle_head(status, content_range).map_err(|e| {
            self.fetch = Some(e);
            e.to_string()
        })
    }

    fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self.dl.handle_body(self.blocks, chunk) {
            Ok(()) => Ok(()),
            Err(BodyError::Fetch(e)) => {
                self.fetch = Some(e);
                Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
            }
            Err(BodyError::Store(e)) => {
                let err = io::Error::new(e.0.kind(), e.0.to_string());
                self.store = Some(e);
                Err(err)
            }
        }
    }
}
