//! OCS mode's fragment fetch, and what a digest mismatch of the whole
//! archive does: the payload is fetched again at a later run (the runs back
//! off), until the mismatches outlast [`crate::engine::refetch`]'s deadline.

use std::fs::{self, OpenOptions};
use std::io;

use outpost_hal::linux::sync_dir;

use super::super::agent::AgentError;
use super::super::http::Url;
use super::super::store::StoreError;
use super::{OcsAgent, OcsEnv, PartSink, SlotResult};
use crate::engine::info::{Info, Proto};
use crate::engine::journal::PackageRecord;
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
        let range = (have > 0).then(|| format!("bytes={have}-"));
        let mut sink = PartSink { file, have, status: 0 };
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
