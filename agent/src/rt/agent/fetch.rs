//! One transfer of a package's next fragment through the download engine,
//! told to the lifecycle as a [`Fetched`]: progress, a digest mismatch, a
//! failed try, the disk full. Retries and backoff are the lifecycle's
//! ([`crate::engine::deploy`]).

use outpost_hal::linux::DirBlocks;

use super::super::http::{self, Url};
use super::drive::storage;
use super::{Agent, StoreError};
use crate::engine::deploy::Fetched;
use crate::engine::download::{ARCHIVE, BodyError, Download};
use crate::engine::fetch::FetchError;
use crate::engine::info::{Info, Proto};
use crate::engine::limits::MIN_RESUME_PROGRESS;

impl Agent {
    /// Fetch from where `dl` stands: one request.
    pub(super) fn fetch_once(
        &self,
        info: &Info,
        pack_loc: &str,
        dl: &mut Download,
        blocks: &mut DirBlocks,
    ) -> Result<Fetched, StoreError> {
        let id = info.id;
        let Some((n, range)) = dl.request() else { return Ok(Fetched::Complete) };
        let url = match Url::from_location(info.proto == Proto::Https, pack_loc, &format!("{id}/{id}-{n}")) {
            Ok(u) => u,
            Err(e) => {
                log::error!(target: "outpost", "package {id}: unusable fragment location: {e}");
                return Ok(Fetched::BadLocation(e.to_string()));
            }
        };
        let before = dl.have();
        let failed = match self.transfer(&url, range.as_deref(), dl, blocks) {
            Ok(f) => f,
            Err(e) => return storage(e),
        };
        Ok(match failed {
            None if dl.verified() as usize >= n => {
                log::info!(target: "outpost", "package {id}: fragment {n}/{} verified", info.frags);
                if dl.is_complete() { Fetched::Complete } else { Fetched::Progress(Some(dl.verified())) }
            }
            None => Fetched::Progress(None),
            Some(Failed { error: FetchError::Corrupt, .. }) => {
                log::warn!(target: "outpost", "package {id}: fragment {n} failed its digest, fetching it again");
                Fetched::Corrupt
            }
            Some(Failed { error, why }) => {
                if dl.have() >= before.saturating_add(MIN_RESUME_PROGRESS) {
                    // Real progress (e.g. a truncated response): go on at once.
                    log::debug!(target: "outpost", "package {id}: {why}; resuming at byte {}", dl.have());
                    return Ok(Fetched::Progress(None));
                }
                // Little or nothing arrived: a failed try, with backoff.
                if matches!(error, FetchError::BadContentRange | FetchError::TooLong) {
                    let path = blocks.path(ARCHIVE);
                    dl.restart_fragment(blocks).map_err(|e| StoreError::Io(path, e.0))?;
                }
                Fetched::Failed(why)
            }
        })
    }

    /// One request. `None` when the body ended normally and the engine took
    /// it (a fragment may now be verified); `Some` for what went wrong.
    pub(super) fn transfer(
        &self,
        url: &Url,
        range: Option<&str>,
        dl: &mut Download,
        blocks: &mut DirBlocks,
    ) -> Result<Option<Failed>, StoreError> {
        let path = blocks.path(ARCHIVE);
        let store_err = |e: outpost_hal::linux::IoError| StoreError::Io(path.clone(), e.0);
        let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
        let window = self.pacer.borrow_mut().begin(url);
        let mut resp = match self.client.request_with_window("GET", url, &headers, &[], window) {
            Ok(r) => r,
            Err(e) => {
                if let http::Error::Tls(m) = &e {
                    log::error!(target: "outpost", "{m}");
                }
                // The HTTP error itself (a head too large, a stall…), not
                // "server answered 0": the caller logs it once per try.
                return Ok(Some(Failed { error: FetchError::Status(0), why: format!("{url}: {e}") }));
            }
        };
        let cr = resp.header("content-range").map(str::to_owned);
        let failed = |error: FetchError| Some(Failed { why: format!("{url}: {error}"), error });
        if let Err(e) = dl.handle_head(resp.status, cr.as_deref()) {
            return Ok(failed(e));
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let k = match self.pacer.borrow_mut().read(&mut resp, &mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) => {
                    dl.handle_abort(blocks).map_err(store_err)?;
                    return Ok(Some(Failed { error: FetchError::Short, why: format!("{url}: body read failed: {e}") }));
                }
            };
            match dl.handle_body(blocks, &buf[..k]) {
                Ok(()) => {}
                Err(BodyError::Store(e)) => return Err(store_err(e)),
                Err(BodyError::Fetch(e)) => {
                    dl.handle_abort(blocks).map_err(store_err)?;
                    return Ok(failed(e));
                }
            }
        }
        resp.release();
        Ok(dl.handle_end(blocks).map_err(store_err)?.and_then(failed))
    }
}

/// A request that went wrong: what the engine makes of it, and what to log.
pub(super) struct Failed {
    error: FetchError,
    why: String,
}
