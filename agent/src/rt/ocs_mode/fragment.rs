//! OCS mode's fragment fetch, through the same download engine and the
//! same transfer ([`super::super::fragment`]) as the Outpost protocol
//! ([`crate::engine::download`]): one `archive` file and its
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

use outpost_hal::linux::{DirBlocks, LinuxDisk};
use outpost_hal::storage::DiskSpace;

use super::super::agent::AgentError;
use super::super::env::Env;
use super::super::fragment;
use super::super::store::StoreError;
use super::OcsAgent;
use crate::engine::deploy::Fetched;
use crate::engine::download::{ARCHIVE, Download, Layout};
use crate::engine::info::Info;
use crate::engine::plan;

impl<E: Env> OcsAgent<E> {
    /// Fetch the next fragment of `info`'s package (its info file is
    /// `info_file`), resuming what the journal holds; or say that all are here.
    pub(super) fn fetch_next(&mut self, info: &Info, info_file: &[u8], pack_loc: &str) -> Result<Fetched, AgentError> {
        let id = info.id;
        let dir = self.store.package_dir(id);
        let mut blocks = DirBlocks::open(&dir).map_err(|e| AgentError::Store(StoreError::Io(dir.clone(), e)))?;
        let layout = Layout::ocs(id, info_file, info.frags);
        let mut dl = Download::open_layout(&mut blocks, layout, self.cfg.agent.checkpoint_bytes)
            .map_err(|e| AgentError::Store(StoreError::Io(dir.join(ARCHIVE), e.0)))?;
        if let Some((n, Some(_))) = dl.request().filter(|_| dl.have() > 0) {
            log::info!(target: "outpost", "package {id}: resuming fragment {n} at byte {} of the archive", dl.have());
        }
        let room = self.room();
        Ok(fragment::fetch_next(&mut self.env, info, pack_loc, &mut dl, &mut blocks, room, None)?)
    }

    /// Bytes the next answer may take: the free space less the headroom
    /// (`None`: the disk cannot be asked; the writes will tell).
    fn room(&self) -> Option<u64> {
        let free = LinuxDisk::new(self.store.root()).space().ok()?.available;
        Some(free.saturating_sub(plan::space_margin(0)))
    }
}
